"""Metrics as Kiali's dashboards and health read them (business/metrics_definitions.go,
business/health.go). Pure: PromQL strings in, Kiali's JSON shapes out.

Dashboards (`.../NAME/metrics?direction=inbound|outbound`): request volume, errors, duration
(average and the asked quantiles, milliseconds) and request/response sizes, each as
`[{name, labels, datapoints: [[t, v]...], stat}]`. Health: request rates per app, workload or
service and per protocol and response code, over the rate interval.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sandbox.console.prom import Sample, Series

DEFAULT_QUANTILES = ("0.5", "0.95", "0.99")
KINDS = ("app", "workload", "service")


def _q(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def selector(kind: str, namespace: str, name: str, direction: str) -> str:
    """The label selector of one entity's inbound (destination reporter) or outbound (source) traffic."""
    ns, nm = _q(namespace), _q(name)
    if direction == "outbound":
        field = {"app": "source_canonical_service", "workload": "source_workload"}.get(kind, "source_canonical_service")
        return f'reporter="source",source_workload_namespace="{ns}",{field}="{nm}"'
    if kind == "service":
        return f'reporter="destination",destination_service_namespace="{ns}",destination_service_name="{nm}"'
    field = "destination_canonical_service" if kind == "app" else "destination_workload"
    return f'reporter="destination",destination_workload_namespace="{ns}",{field}="{nm}"'


def dashboard_queries(sel: str, rate: str, quantiles: Iterable[str]) -> list[tuple[str, str, str]]:
    """(metric name, stat, PromQL) for every chart of a metrics dashboard."""
    out = [
        ("request_count", "", f"sum(rate(istio_requests_total{{{sel}}}[{rate}]))"),
        ("request_error_count", "", f'sum(rate(istio_requests_total{{{sel},response_code=~"[45].."}}[{rate}]))'),
    ]
    for name, metric in (
        ("request_duration_millis", "istio_request_duration_milliseconds"),
        ("request_size", "istio_request_bytes"),
        ("response_size", "istio_response_bytes"),
    ):
        out.append(
            (name, "avg", f"sum(rate({metric}_sum{{{sel}}}[{rate}])) / sum(rate({metric}_count{{{sel}}}[{rate}]))")
        )
        for q in quantiles:
            out.append((name, q, f"histogram_quantile({q}, sum(rate({metric}_bucket{{{sel}}}[{rate}])) by (le))"))
    return out


def dashboard_json(results: Iterable[tuple[str, str, list[Series]]]) -> dict[str, list[dict[str, Any]]]:
    """(name, stat, series) -> Kiali's MetricsMap."""
    out: dict[str, list[dict[str, Any]]] = {}
    for name, stat, series in results:
        for labels, points in series:
            out.setdefault(name, []).append(
                {"name": name, "labels": dict(labels), "stat": stat, "datapoints": [[int(t), v] for t, v in points]}
            )
        out.setdefault(name, [])
    return out


# ---------------------------------------------------------------------------------------- health

HEALTH_LABELS = "request_protocol,response_code,grpc_response_status,response_flags"


def health_queries(namespace: str, rate: str) -> tuple[str, str]:
    """Inbound (destination reporter) and outbound (source reporter) request rates of a namespace,
    by every label an app, workload or service is found by."""
    ns = _q(namespace)
    inbound = (
        f'sum(rate(istio_requests_total{{reporter="destination",destination_workload_namespace="{ns}"}}[{rate}])) '
        f"by (destination_canonical_service,destination_workload,destination_service_name,{HEALTH_LABELS})"
    )
    outbound = (
        f'sum(rate(istio_requests_total{{reporter="source",source_workload_namespace="{ns}"}}[{rate}])) '
        f"by (source_canonical_service,source_workload,{HEALTH_LABELS})"
    )
    return inbound, outbound


def response_code(labels: Mapping[str, str]) -> tuple[str, str]:
    """(protocol, code) as Kiali's health counts it: gRPC by grpc status, no response as "-"."""
    protocol = labels.get("request_protocol", "http") or "http"
    if protocol == "grpc":
        code = labels.get("grpc_response_status", "") or labels.get("response_code", "-")
    else:
        protocol = "http"
        code = labels.get("response_code", "-")
    if code in ("", "0"):
        code = "-"
    return protocol, code


def request_rates(
    inbound: Iterable[Sample], outbound: Iterable[Sample], kind: str
) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    """name -> {"inbound"|"outbound": {protocol: {code: rate}}} for apps, workloads or services."""
    in_label = {"app": "destination_canonical_service", "workload": "destination_workload"}.get(
        kind, "destination_service_name"
    )
    out_label = {"app": "source_canonical_service", "workload": "source_workload"}.get(kind)
    out: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    for direction, samples, label in (("inbound", inbound, in_label), ("outbound", outbound, out_label)):
        if label is None:  # a service's health is its inbound requests alone
            continue
        for labels, value in samples:
            name = labels.get(label, "")
            if not name or name == "unknown":
                continue
            protocol, code = response_code(labels)
            codes = out.setdefault(name, {}).setdefault(direction, {}).setdefault(protocol, {})
            codes[code] = codes.get(code, 0.0) + value
    return out
