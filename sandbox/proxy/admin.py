"""The sidecar's admin (15000), Prometheus (15020) and readiness (15021) endpoints, in aiohttp.

What `istioctl proxy-config`, Prometheus and probes expect of Envoy and the Istio agent:
- 15000 `/config_dump`: the snapshot as JSON; `/certs`: the workload certificate in use and the
  mesh root it trusts (serial, SANs, validity, the root's SHA-256 fingerprint; never a key) when the
  source has one (`certificate_in_use`); `/stats/prometheus` as on 15020 (Envoy's admin serves it
  too); `/clusters`: per host health (healthy or
  failed_outlier_check), ejections, active requests, request counts, plus each cluster's
  circuit-breaker limits, gauges and overflow counters; Envoy's `name::host::stat::value` text, or
  `?format=json`; `/stats`: plain `name: value` counters (`?filter=<regex>`, `?format=json`);
  `/ready`: LIVE.
- 15020 `/stats/prometheus`: the istio_* metrics and the per-proxy registry, in Prometheus text format.
- 15021 `/healthz/ready`: 200 once a snapshot is loaded, 503 before.

The endpoints only read through `AdminSource`, which the sidecar process implements.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable, Iterator
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from sandbox.proxy.cluster import ClusterState
from sandbox.proxy.tracing import SpanReporter
from sandbox.xds.certificate import WorkloadCertificate
from sandbox.xds.snapshot import ProxySnapshot


class AdminTelemetry(Protocol):
    def prometheus_text(self) -> str: ...

    @property
    def spans(self) -> SpanReporter | None: ...


class AdminOptions(Protocol):
    @property
    def bind(self) -> str: ...

    @property
    def admin_port(self) -> int | None: ...

    @property
    def stats_port(self) -> int | None: ...

    @property
    def ready_port(self) -> int | None: ...


class AdminSource(Protocol):
    """What the admin endpoints read: the current snapshot (None until one is loaded), the live
    cluster states and the telemetry (its Prometheus text and span reporter)."""

    @property
    def snapshot(self) -> ProxySnapshot | None: ...

    @property
    def clusters(self) -> Iterable[ClusterState]: ...

    @property
    def telemetry(self) -> AdminTelemetry: ...


# --------------------------------------------------------------------------- views (pure)


def _host_stats(state: ClusterState) -> Iterator[tuple[str, list[tuple[str, Any]]]]:
    for host in state.hosts.hosts:
        yield (
            host.address,
            [
                ("rq_active", host.active_requests),
                ("rq_total", host.rq_total),
                ("rq_success", host.rq_success),
                ("rq_error", host.rq_error),
                ("cx_connect_fail", host.cx_connect_fail),
                ("outlier_ejections", host.times_ejected),
                ("health_flags", host.health),
                ("weight", host.weight),
            ],
        )


def clusters_text(clusters: Iterable[ClusterState]) -> str:
    """Envoy's /clusters text: `<cluster>::<host or section>::<stat>::<value>` lines."""
    lines = []
    for state in sorted(clusters, key=lambda s: s.name):
        name = state.name
        lim = state.breaker.limits
        for key, value in (
            ("max_connections", lim.max_connections),
            ("max_pending_requests", lim.max_pending_requests),
            ("max_requests", lim.max_requests),
            ("max_retries", lim.max_retries),
        ):
            lines.append(f"{name}::default_priority::{key}::{value}")
        lines.append(f"{name}::added_via_api::true")
        for key, value in (*state.breaker.gauges().items(), *state.breaker.counters().items()):
            lines.append(f"{name}::circuit_breakers::{key}::{value}")
        if state.outlier is not None:
            for key, value in state.outlier.stats().items():
                lines.append(f"{name}::outlier_detection::{key}::{value}")
        for address, stats in _host_stats(state):
            for key, value in stats:
                lines.append(f"{name}::{address}::{key}::{value}")
    return "\n".join(lines) + ("\n" if lines else "")


def clusters_json(clusters: Iterable[ClusterState]) -> dict[str, Any]:
    """Envoy's /clusters?format=json shape, with the breaker and detector state added."""
    out = []
    for state in sorted(clusters, key=lambda s: s.name):
        lim = state.breaker.limits
        hosts = []
        for host, (_, stats) in zip(state.hosts.hosts, _host_stats(state), strict=True):
            hosts.append(
                {
                    "address": {"socket_address": {"address": host.ip, "port_value": host.port}},
                    "stats": [{"name": k, "value": str(v)} for k, v in stats if k not in ("health_flags", "weight")],
                    "health_status": {"eds_health_status": "HEALTHY", "failed_outlier_check": host.ejected},
                    "weight": host.weight,
                    "ejection_count": host.times_ejected,
                    "workload": host.endpoint.workload if host.endpoint else "",
                }
            )
        entry: dict[str, Any] = {
            "name": state.name,
            "added_via_api": True,
            "circuit_breakers": {
                "thresholds": [
                    {
                        "priority": "DEFAULT",
                        "max_connections": lim.max_connections,
                        "max_pending_requests": lim.max_pending_requests,
                        "max_requests": lim.max_requests,
                        "max_retries": lim.max_retries,
                    }
                ],
                "state": state.breaker.gauges(),
                "stats": state.breaker.counters(),
            },
            "host_statuses": hosts,
        }
        if state.outlier is not None:
            entry["outlier_detection"] = state.outlier.stats()
        out.append(entry)
    return {"cluster_statuses": out}


def stats(source: AdminSource) -> list[tuple[str, int]]:
    """Envoy-named counters and gauges, sorted by name."""
    out: list[tuple[str, int]] = []
    for state in source.clusters:
        prefix = f"cluster.{state.name}."
        out.append((prefix + "upstream_rq_total", state.upstream_rq_total))
        out.append((prefix + "membership_total", len(state.hosts.hosts)))
        out.append((prefix + "membership_healthy", len(state.hosts.healthy)))
        out.extend((prefix + k, v) for k, v in state.breaker.counters().items())
        out.extend((prefix + "circuit_breakers.default." + k, v) for k, v in state.breaker.gauges().items())
        if state.outlier is not None:
            out.extend((prefix + "outlier_detection." + k, v) for k, v in state.outlier.stats().items())
    out.extend(getattr(source, "filter_stats", ()))  # http.<prefix>.rbac.denied, jwt_authn.*, ext_authz.*
    spans = source.telemetry.spans
    if spans is not None:
        out.append(("tracing.zipkin.spans_sent", spans.spans_sent))
        out.append(("tracing.zipkin.spans_dropped", spans.spans_dropped))
        out.append(("tracing.zipkin.reports_failed", spans.send_failures))
    return sorted(out)


# --------------------------------------------------------------------------- handlers


def certs_json(cert: WorkloadCertificate | None, now: dt.datetime | None = None) -> dict[str, Any]:
    """Envoy's /certs shape for the SDS secrets in use: the workload certificate (`cert_chain`, the
    secret `default`) and the mesh root it trusts (`ca_cert`, `ROOTCA`), each with its serial, SANs,
    validity and days until expiration, plus (beyond Envoy) the SHA-256 fingerprint of each root.
    Never key material."""
    if cert is None:
        return {"certificates": []}
    now = now or dt.datetime.now(dt.UTC)
    chain = {
        "path": "<inline>",
        "serial_number": cert.serial_hex,
        "subject_alt_names": [{"uri": cert.spiffe_id}],
        "days_until_expiration": _days_until(cert.not_after, now),
        "valid_from": _timestamp(cert.not_before),
        "expiration_time": _timestamp(cert.not_after),
    }
    return {"certificates": [{"name": "default", "cert_chain": [chain], "ca_cert": ca_details(cert.root_cert, now)}]}


def ca_details(pem: str, now: dt.datetime) -> list[dict[str, Any]]:
    """Each root certificate in `pem` as Envoy's CertificateDetails (a CA rotation trusts two)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    try:
        roots = x509.load_pem_x509_certificates(pem.encode())
    except ValueError:
        return [{"name": "ROOTCA", "path": "<inline>", "error": "not a PEM certificate"}]
    details = []
    for root in roots:
        try:
            san = root.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            names = [{"uri": str(v)} for v in san.get_values_for_type(x509.UniformResourceIdentifier)]
            names += [{"dns": str(v)} for v in san.get_values_for_type(x509.DNSName)]
        except x509.ExtensionNotFound:
            names = []
        details.append(
            {
                "name": "ROOTCA",
                "path": "<inline>",
                "serial_number": f"{root.serial_number:x}",
                "subject": root.subject.rfc4514_string(),
                "subject_alt_names": names,
                "days_until_expiration": _days_until(root.not_valid_after_utc, now),
                "valid_from": _timestamp(root.not_valid_before_utc),
                "expiration_time": _timestamp(root.not_valid_after_utc),
                "sha256_fingerprint": root.fingerprint(hashes.SHA256()).hex(":").upper(),
            }
        )
    return details


def _timestamp(moment: dt.datetime) -> str:
    """A protobuf Timestamp in JSON, as Envoy writes it: UTC with a Z."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _days_until(moment: dt.datetime, now: dt.datetime) -> str:
    """Envoy's days_until_expiration: whole days left, 0 once expired (a uint64: a JSON string)."""
    return str(max(0, (moment - now).days))


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(data, indent=2, sort_keys=True), status=status, content_type="application/json")


def admin_app(source: AdminSource) -> web.Application:
    async def config_dump(request: web.Request) -> web.Response:
        snapshot = source.snapshot
        if snapshot is None:
            return _json({"error": "no snapshot loaded yet"}, status=503)
        return _json(snapshot.to_data())

    async def clusters(request: web.Request) -> web.Response:
        if request.query.get("format") == "json":
            return _json(clusters_json(source.clusters))
        return web.Response(text=clusters_text(source.clusters))

    async def stats_handler(request: web.Request) -> web.Response:
        values = stats(source)
        pattern = request.query.get("filter")
        if pattern:
            try:
                regex = re.compile(pattern)
            except re.error as exc:
                return web.Response(status=400, text=f"invalid regex: {exc}\n")
            values = [(k, v) for k, v in values if regex.search(k)]
        if request.query.get("format") == "json":
            return _json({"stats": [{"name": k, "value": v} for k, v in values]})
        return web.Response(text="".join(f"{k}: {v}\n" for k, v in values))

    async def certs(request: web.Request) -> web.Response:
        return _json(certs_json(getattr(source, "certificate_in_use", None)))

    async def prometheus(request: web.Request) -> web.Response:
        return _prometheus_response(source)

    async def ready(request: web.Request) -> web.Response:
        loaded = source.snapshot is not None
        return web.Response(text="LIVE\n" if loaded else "PRE_INITIALIZING\n", status=200 if loaded else 503)

    async def index(request: web.Request) -> web.Response:
        return web.Response(
            text="/clusters  upstream clusters, hosts, breakers (?format=json)\n"
            "/certs  the workload certificate and the mesh root (no key)\n"
            "/config_dump  the current snapshot\n/ready  readiness\n/stats  counters (?filter=, ?format=json)\n"
            "/stats/prometheus  the istio_* metrics (as on the stats port)\n"
        )

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_get("/config_dump", config_dump)
    app.router.add_get("/clusters", clusters)
    app.router.add_get("/certs", certs)
    app.router.add_get("/stats", stats_handler)
    app.router.add_get("/stats/prometheus", prometheus)
    app.router.add_get("/ready", ready)
    return app


def _prometheus_response(source: AdminSource) -> web.Response:
    body = source.telemetry.prometheus_text().encode()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def stats_app(source: AdminSource) -> web.Application:
    async def prometheus(request: web.Request) -> web.Response:
        return _prometheus_response(source)

    app = web.Application()
    app.router.add_get("/stats/prometheus", prometheus)
    return app


def ready_app(source: AdminSource) -> web.Application:
    async def healthz_ready(request: web.Request) -> web.Response:
        if source.snapshot is None:
            return web.Response(status=503, text="no snapshot loaded\n")
        return web.Response(status=200, text="")

    app = web.Application()
    app.router.add_get("/healthz/ready", healthz_ready)
    return app


# --------------------------------------------------------------------------- serving


class AdminServers:
    """The running admin listeners; `ports` has the bound port of each (0 in options picks one)."""

    def __init__(self) -> None:
        self.runners: list[web.AppRunner] = []
        self.ports: dict[str, int] = {}

    async def add(self, name: str, app: web.Application, host: str, port: int) -> None:
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        self.runners.append(runner)
        site = web.TCPSite(runner, host, port, reuse_address=True)
        await site.start()
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        self.ports[name] = sockets[0].getsockname()[1] if sockets else port

    async def close(self) -> None:
        for runner in reversed(self.runners):
            await runner.cleanup()
        self.runners.clear()


async def start_admin(source: AdminSource, options: AdminOptions | None = None) -> AdminServers:
    """Start the listeners `options` (default: `source.options`) asks for; None ports stay off."""
    opts: Any = options if options is not None else getattr(source, "options", None)
    bind = getattr(opts, "bind", "127.0.0.1")
    servers = AdminServers()
    try:
        for name, factory, port in (
            ("admin", admin_app, getattr(opts, "admin_port", 15000)),
            ("stats", stats_app, getattr(opts, "stats_port", 15020)),
            ("ready", ready_app, getattr(opts, "ready_port", 15021)),
        ):
            if port is not None:
                await servers.add(name, factory(source), bind, port)
    except BaseException:
        await servers.close()
        raise
    ports = getattr(source, "ports", None)
    if isinstance(ports, dict):
        ports.update(servers.ports)
    return servers
