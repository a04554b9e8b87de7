"""The graph's PromQL, as Kiali writes it (graph/telemetry/istio/istio.go and its responseTime
appender; docs/reference/kiali-console.md §3.2): per requested namespace, instant queries of
`rate(...[duration])`, summed by the labels that identify both ends of an edge, idle series
dropped with `> 0`.

    inbound   reporter="destination", destination_workload_namespace="NS"
    outbound  reporter="source", source_workload_namespace="NS"
    unserviced reporter="source", requests from elsewhere that never reached a workload of NS

The same three shapes run over istio_tcp_sent_bytes_total, and the response-time appender's
histogram_quantile over istio_request_duration_milliseconds_bucket (destination reporter first).

One departure, for speed on big meshes: the outbound query leaves out what the inbound query
already holds, requests to a workload of the same namespace that has a sidecar (its destination
reporter saw them). Kiali fetches both and drops the duplicates; the graph is the same, from half
the series. Workloads without a sidecar (`inject: false`) report nothing, so requests to them
stay in the outbound query.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

HTTP_GROUP_BY = (
    "source_cluster,source_workload_namespace,source_workload,source_canonical_service,source_canonical_revision,"
    "destination_cluster,destination_service_namespace,destination_service,destination_service_name,"
    "destination_workload_namespace,destination_workload,destination_canonical_service,"
    "destination_canonical_revision,request_protocol,response_code,grpc_response_status,response_flags"
)
# the security-policy appender's labels ride on the same queries (one query instead of two)
SECURITY_LABELS = ",connection_security_policy"
TCP_GROUP_BY = (
    "source_cluster,source_workload_namespace,source_workload,source_canonical_service,source_canonical_revision,"
    "destination_cluster,destination_service_namespace,destination_service,destination_service_name,"
    "destination_workload_namespace,destination_workload,destination_canonical_service,"
    "destination_canonical_revision,response_flags"
)
RT_GROUP_BY = (
    "le,source_cluster,source_workload_namespace,source_workload,source_canonical_service,source_canonical_revision,"
    "destination_cluster,destination_service_namespace,destination_service_name,"
    "destination_workload_namespace,destination_workload,destination_canonical_service,destination_canonical_revision"
)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


@dataclass(frozen=True)
class NamespaceQueries:
    """Every query the graph runs for one namespace; `kind` says how to read each answer."""

    namespace: str
    queries: tuple[tuple[str, str], ...]  # (kind: http|tcp|rt, promql)


def _outbound(metric: str, ns: str, d: str, uninjected: Sequence[str]) -> str:
    """rate() of the source reporter's series that the destination reporter did not see."""
    source = f'reporter="source",source_workload_namespace="{ns}"'
    elsewhere = f'rate({metric}{{{source},destination_workload_namespace!="{ns}"}}[{d}])'
    if not uninjected:
        return elsewhere
    names = _escape("|".join(re.escape(w) for w in sorted(uninjected)))
    here = f'rate({metric}{{{source},destination_workload_namespace="{ns}",destination_workload=~"{names}"}}[{d}])'
    return f"({elsewhere} or {here})"


def namespace_queries(
    namespace: str,
    duration_s: int,
    quantile: float = 0.95,
    response_time: bool = True,
    uninjected: Sequence[str] = (),
) -> NamespaceQueries:
    """The namespace's queries; the response-time appender's two only when `response_time` (Kiali
    runs an appender when the request names it, or when it names none). `uninjected`: the
    namespace's workloads without a sidecar."""
    ns = _escape(namespace)
    d = f"{duration_s}s"
    http_by = HTTP_GROUP_BY + SECURITY_LABELS
    queries: list[tuple[str, str]] = []
    for metric, kind, by in (
        ("istio_requests_total", "http", http_by),
        ("istio_tcp_sent_bytes_total", "tcp", TCP_GROUP_BY),
    ):
        queries += [
            (
                kind,
                f'sum(rate({metric}{{reporter="source",source_workload_namespace!="{ns}",'
                f'destination_workload_namespace="unknown",destination_workload="unknown",'
                f'destination_service=~"^.+\\\\.{ns}\\\\..+$"}}[{d}])) by ({by}) > 0',
            ),
            (
                kind,
                f'sum(rate({metric}{{reporter="destination",destination_workload_namespace="{ns}"}}[{d}]))'
                f" by ({by}) > 0",
            ),
            (kind, f"sum({_outbound(metric, ns, d, uninjected)}) by ({by}) > 0"),
        ]
    bucket = "istio_request_duration_milliseconds_bucket"
    if response_time:
        for rates in (
            f'rate({bucket}{{reporter="destination",destination_workload_namespace="{ns}"}}[{d}])',
            _outbound(bucket, ns, d, uninjected),
        ):
            queries.append(("rt", f"histogram_quantile({quantile:g}, sum({rates}) by ({RT_GROUP_BY})) > 0"))
    return NamespaceQueries(namespace, tuple(queries))
