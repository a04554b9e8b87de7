"""One sidecar's telemetry: Istio metrics, spans and access log fed from one RequestRecord.

The data path, per request (the Exchange is its own RequestRecord, see record.py):
    trace = tel.trace_ids.outbound(head.headers)          # or .inbound(); send trace.header_lines()
    edge = tel.outbound_edge(host.endpoint, service, mtls)   # cached; or inbound_edge(...)
    ... forward ...
    tel.finish(rec)          # counters, the access log line, the span queued
A TCP connection (tunnel.py) reports with tcp_edge, tcp_opened, tcp_bytes (every 5 s and at the
end) and finish_tcp (closed, and its access log line; no span).
Background tasks (`await tel.run()`) flush the access log and send spans; the records' text and
JSON are made there, in batches.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Mapping

from prometheus_client import CollectorRegistry, generate_latest

from sandbox.proxy.accesslog import AccessLog
from sandbox.proxy.metrics import UNKNOWN, Edge, IstioMetrics, Peer
from sandbox.proxy.record import RequestRecord
from sandbox.proxy.tracecontext import TraceIds
from sandbox.proxy.tracing import SpanBuilder, SpanReporter
from sandbox.xds.identity import ProxyIdentity
from sandbox.xds.snapshot import Endpoint, TelemetryPolicy

__all__ = ["Telemetry"]


class Telemetry:
    def __init__(
        self,
        identity: ProxyIdentity,
        registry: CollectorRegistry | None = None,
        *,
        access_log: AccessLog | None = None,
        spans: SpanReporter | None = None,
        zipkin_url: str | None = None,
        sampling: float = 100.0,
        rng: random.Random | None = None,
        trust_domain: str = "cluster.local",
    ) -> None:
        self.identity = identity
        # Other collectors may join `registry`; the istio_* metrics write their own text (see
        # IstioMetrics.exposition) and are not registered in it, so nothing is exposed twice.
        self.registry = registry or CollectorRegistry(auto_describe=False)
        self.metrics = IstioMetrics()
        self.access_log = access_log
        if spans is None and zipkin_url:
            spans = SpanReporter(SpanBuilder(identity), url=zipkin_url)
        self.spans = spans
        self.trace_ids = TraceIds(rng, sampling)
        self.default_sampling = sampling
        # The Telemetry API's switches (configure): the defaults until a snapshot says otherwise
        self.log_outbound = self.log_inbound = self.report_spans = True
        self.header_tags: tuple[tuple[str, str, str], ...] = ()  # (tag, header, default)
        self.trust_domain = trust_domain
        self._self_peer = {mtls: Peer.from_identity(identity, mtls) for mtls in (False, True)}
        self._edges: dict[tuple[object, ...], Edge] = {}

    def outbound_edge(self, endpoint: Endpoint | None, service: str, mtls: bool, protocol: str = "http") -> Edge:
        """reporter=source: we are the client; the destination is the picked endpoint (if any)."""
        key = ("o", endpoint.address if endpoint else None, endpoint.workload if endpoint else None, service, mtls)
        edge = self._edges.get(key)
        if edge is None:
            destination = Peer.from_endpoint(endpoint, self.trust_domain, mtls) if endpoint is not None else Peer()
            edge = self._edges[key] = Edge(
                "source", self._self_peer[mtls], destination, service or UNKNOWN, protocol, UNKNOWN
            )
        return edge

    def tcp_edge(self, endpoint: Endpoint | None, service: str, mtls: bool, service_name: str = "") -> Edge:
        """reporter=source for a TCP connection (a tunnel): `service_name` is PassthroughCluster or
        BlackHoleCluster when the registry does not know the destination (Istio's labels then)."""
        address, workload = (endpoint.address, endpoint.workload) if endpoint is not None else (None, None)
        key = ("t", address, workload, service, mtls, service_name)
        edge = self._edges.get(key)
        if edge is None:
            if len(self._edges) > 10_000:  # destinations of passthrough tunnels are client input
                self._edges.clear()
            destination = Peer.from_endpoint(endpoint, self.trust_domain, mtls) if endpoint is not None else Peer()
            edge = self._edges[key] = Edge(
                "source", self._self_peer[mtls], destination, service or UNKNOWN, "tcp", UNKNOWN, service_name
            )
        return edge

    def inbound_edge(
        self, peer_header: str | None, peer_principal: str | None, service: str, mtls: bool, protocol: str = "http"
    ) -> Edge:
        """reporter=destination: we are the server; the source comes from the peer metadata header
        and, under mTLS, its verified principal."""
        key = ("i", peer_header, peer_principal, service, mtls)
        edge = self._edges.get(key)
        if edge is None:
            if len(self._edges) > 10_000:  # peer headers are client input: keep the cache bounded
                self._edges.clear()
            source = Peer.from_header(peer_header, peer_principal if mtls else None)
            policy = "mutual_tls" if mtls else "none"
            edge = self._edges[key] = Edge(
                "destination", source, self._self_peer[mtls], service or UNKNOWN, protocol, policy
            )
        return edge

    def prometheus_text(self) -> str:
        """Everything for /stats/prometheus: the istio_* metrics, then the registry's collectors."""
        return self.metrics.exposition() + generate_latest(self.registry).decode()

    def peer_header(self) -> str:
        """This proxy's metadata header value, for the requests it sends."""
        return self._self_peer[False].to_header()

    def configure(self, policy: TelemetryPolicy, environ: Mapping[str, str] = os.environ) -> None:
        """Apply the snapshot's Telemetry policy: access logs per side, sampling, spans, custom tags."""
        self.log_outbound = policy.access_log_client
        self.log_inbound = policy.access_log_server
        self.trace_ids.sampling = self.default_sampling if policy.sampling is None else policy.sampling
        self.report_spans = policy.span_reporting
        fixed: dict[str, str] = {}
        headers: list[tuple[str, str, str]] = []
        for tag in policy.custom_tags:
            if tag.header is not None:
                headers.append((tag.name, tag.header, tag.default))
            elif tag.environment is not None:
                fixed[tag.name] = environ.get(tag.environment, tag.default)
            else:
                fixed[tag.name] = tag.literal or ""
        self.header_tags = tuple(headers)
        if self.spans is not None:
            self.spans.builder.set_custom_tags(fixed)

    def header_tag_values(self, headers: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
        """The custom tags read from this request's headers (their default when absent)."""
        return tuple((name, headers.get(header, default)) for name, header, default in self.header_tags)

    def finish(self, rec: RequestRecord, outbound: bool = True) -> None:
        """Count `rec` in the metrics, queue its span, log it: every finished request comes here
        (`outbound`: the client side, whose access log the Telemetry API switches apart)."""
        edge = rec.edge
        if edge is not None:
            self.metrics.record_http(
                edge,
                rec.response_code,
                rec.response_flags,
                rec.duration * 1000.0,
                rec.bytes_received,
                rec.bytes_sent,
                rec.grpc_status,
            )
        trace = rec.trace
        if trace is not None and trace.sampled and self.spans is not None and self.report_spans:
            self.spans.submit(rec)
        access_log = self.access_log
        if access_log is not None and (self.log_outbound if outbound else self.log_inbound):
            access_log.log(rec)

    def tcp_opened(self, edge: Edge) -> None:
        """A TCP connection through this proxy reached its upstream."""
        self.metrics.tcp_opened(edge)

    def tcp_bytes(self, edge: Edge, sent: int, received: int, flags: str = "-") -> None:
        """Bytes a TCP connection sent to / received from its downstream since the last report
        (Istio reports them every tcp_reporting_duration, and at the close)."""
        if sent or received:
            self.metrics.tcp_bytes(edge, sent, received, flags)

    def finish_tcp(self, rec: RequestRecord) -> None:
        """A TCP connection ended: counted closed (with the bytes not reported yet, which the caller
        passes through `tcp_bytes` first) and logged as Envoy's TCP proxy logs it. No span: Istio
        traces HTTP only."""
        edge = rec.edge
        if edge is not None:
            self.metrics.tcp_closed(edge, rec.response_flags)
        access_log = self.access_log
        if access_log is not None and self.log_outbound:
            access_log.log(rec)

    async def run(self) -> None:
        """Run the access-log flusher and the span sender until cancelled."""
        tasks = []
        if self.access_log is not None:
            tasks.append(self.access_log.run())
        if self.spans is not None:
            tasks.append(self.spans.run())
        if tasks:
            await asyncio.gather(*tasks)
