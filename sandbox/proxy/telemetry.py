"""One sidecar's telemetry: Istio metrics, spans and access log fed from one LogRecord.

The data path, per request (the Exchange is its own LogRecord, see record.py):
    trace = tel.trace_ids.outbound(head.headers)          # or .inbound(); send trace.header_lines()
    edge = tel.outbound_edge(host.endpoint, service, mtls)   # cached; or inbound_edge(...)
    ... forward ...
    tel.finish(rec)          # O(1): counters + two list appends (Exchange._report writes it out)
Background tasks (`await tel.run()`) flush the access log and send spans; the records' text and
JSON are made there, in batches.
"""

from __future__ import annotations

import asyncio
import random

from prometheus_client import CollectorRegistry, generate_latest

from sandbox.control.snapshot import Endpoint, ProxyIdentity
from sandbox.proxy.accesslog import AccessLog
from sandbox.proxy.metrics import UNKNOWN, Edge, IstioMetrics, Peer
from sandbox.proxy.record import LogRecord, RequestRecord
from sandbox.proxy.tracecontext import TraceIds
from sandbox.proxy.tracing import SpanBuilder, SpanReporter

__all__ = ["RequestRecord", "Telemetry"]


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
        self.trust_domain = trust_domain
        self._self_peer = {mtls: Peer.from_identity(identity, mtls) for mtls in (False, True)}
        self._edges: dict[tuple[object, ...], Edge] = {}
        self._peers: dict[tuple[str | None, str | None], Peer] = {}

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

    def finish(self, rec: LogRecord) -> None:
        """Count `rec` in the metrics, queue its span, log it. (The data path's Exchange._report does
        the same against its own fields.)"""
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
        if trace is not None and trace.sampled and self.spans is not None:
            self.spans.submit(rec)
        access_log = self.access_log
        if access_log is not None:
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
