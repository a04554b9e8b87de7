"""Sans-io fakes for the data path: a manual clock, a client that records what it is sent, upstream
connections the test answers by hand, and a connector that opens them when told.

Each fake implements the seam it stands in for (timers.Timers, downstream.Downstream,
upstream.UpstreamConnection, upstream.Connector), so the exchange, the pools, the circuit breaker
and the outlier detector run as they do over sockets, written out as a conversation (mitmproxy's
playbook habit): the test says what the client sends, sees what goes upstream, answers, advances
the clock, and reads what the client got and what the access log says.
"""

from __future__ import annotations

import asyncio
import heapq
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dataplane_support import mesh_snapshot

from sandbox.proxy.accesslog import AccessLog
from sandbox.proxy.cluster import ClusterManager
from sandbox.proxy.context import ForwardContext, ListenerClass
from sandbox.proxy.decision import RequestHead, RouteDecision
from sandbox.proxy.downstream import Downstream
from sandbox.proxy.forwarder import Exchange
from sandbox.proxy.record import RequestRecord
from sandbox.proxy.routing import OutboundRouter, RouteTable
from sandbox.proxy.sidecar import ProxyOptions, Sidecar
from sandbox.proxy.telemetry import Telemetry
from sandbox.proxy.timers import Timers
from sandbox.proxy.tracing import SpanBuilder, SpanReporter
from sandbox.proxy.upstream import (
    CONNECTION_TERMINATION,
    HOP_BY_HOP,
    PROTOCOL_ERROR,
    Connector,
    EndpointPool,
    UpstreamConnection,
    Upstreams,
    UpstreamSink,
)
from sandbox.xds.snapshot import ProxySnapshot

EPOCH = 1_750_000_000.0  # wall clock at the manual clock's zero


class ManualTimer:
    def __init__(self, when: float, callback: Callable[[], object]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class ManualTimers(Timers):
    """Time stands still until `advance`; `call_soon` callbacks run when the test lets them."""

    def __init__(self) -> None:
        self.t = 0.0
        self._seq = 0
        self._heap: list[tuple[float, int, ManualTimer]] = []
        self._soon: list[Callable[[], object]] = []

    def now(self) -> float:
        return self.t

    def wall(self) -> float:
        return EPOCH + self.t

    def call_later(self, delay: float, callback: Callable[[], object]) -> ManualTimer:
        timer = ManualTimer(self.t + delay, callback)
        self._seq += 1
        heapq.heappush(self._heap, (timer.when, self._seq, timer))
        return timer

    def call_soon(self, callback: Callable[[], object]) -> None:
        self._soon.append(callback)

    def run_soon(self) -> None:
        while self._soon:
            callback = self._soon.pop(0)
            callback()

    def pending(self) -> list[float]:
        """When the live timers are due, soonest first."""
        return sorted(when for when, _, timer in self._heap if not timer.cancelled)

    def advance(self, seconds: float) -> None:
        """Move time forward, firing every timer that falls due, in order."""
        end = self.t + seconds
        self.run_soon()
        while self._heap and self._heap[0][0] <= end + 1e-9:
            when, _, timer = heapq.heappop(self._heap)
            if timer.cancelled:
                continue
            self.t = max(self.t, when)
            timer.callback()
            self.run_soon()
        self.t = end


class FakeDownstream(Downstream):
    """A client connection that keeps what it was sent."""

    def __init__(self, keep_alive: bool = True, peer: str = "127.0.0.1:40000") -> None:
        self.keep_alive = keep_alive
        self.write_paused = False
        self.closed = False
        self.peer_ip = peer.rpartition(":")[0]
        self.remote_address = peer
        self.local_address = "127.0.0.1:15001"
        self.peer_principal = ""
        self.mtls = False
        self.tls = False
        self.sni = ""
        self.client_cert = ""
        self.sent = bytearray()
        self.aborted = False
        self.paused = False
        self.done: list[RequestRecord] = []

    def write(self, data: bytes) -> None:
        self.sent += data

    def pause_reading(self, paused: bool) -> None:
        self.paused = paused

    def abort(self) -> None:
        self.aborted = True

    def exchange_done(self, exchange: RequestRecord) -> None:
        self.done.append(exchange)

    def response(self) -> Response:
        return Response.parse(bytes(self.sent))


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    @classmethod
    def parse(cls, data: bytes) -> Response:
        head, sep, body = data.partition(b"\r\n\r\n")
        assert sep, f"no complete response head in {data!r}"
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            key = name.strip().lower()
            headers[key] = f"{headers[key]},{value.strip()}" if key in headers else value.strip()
        if headers.get("transfer-encoding") == "chunked":
            decoded = b""
            while body:
                size_text, _, rest = body.partition(b"\r\n")
                size = int(size_text, 16)
                if size == 0:
                    break
                decoded += rest[:size]
                body = rest[size + 2 :]
            body = decoded
        return cls(status, headers, body)


class FakeUpstream(UpstreamConnection):
    """An upstream connection the test answers by hand (UpstreamConnection's contract)."""

    def __init__(self, pool: EndpointPool, now: float) -> None:
        self.pool = pool
        self.sink: UpstreamSink | None = None
        self.requests = 0
        self.closed = False
        self.got_data = False
        self.has_length = False
        self.opened_at = self.idle_since = now
        self.mtls = False
        self.sent = bytearray()
        self._keep_alive = True

    # the seam
    def start(self, sink: UpstreamSink, head_request: bool, drop: frozenset[bytes] = HOP_BY_HOP) -> None:
        self.sink = sink
        self.got_data = self.has_length = False
        self.drop = drop

    def write(self, data: bytes) -> None:
        self.sent += data

    def close(self) -> None:
        self.sink = None
        if not self.closed:
            self.closed = True
            self.pool.connection_closed(self)

    def pause_reading(self, paused: bool) -> None:
        pass

    def keep_alive(self) -> bool:
        return self._keep_alive

    # the test's side
    def request_heads(self) -> list[dict[str, str]]:
        """The request heads sent on this connection, as header dicts (plus `:line`)."""
        heads = []
        for raw in bytes(self.sent).split(b"\r\n\r\n")[:-1]:
            lines = raw.decode("latin-1").split("\r\n")
            head = {":line": lines[0]}
            for line in lines[1:]:
                name, _, value = line.partition(": ")
                head[name] = value
            heads.append(head)
        return heads

    def respond(
        self, status: int = 200, body: bytes = b"ok", headers: tuple[tuple[str, str], ...] = (), keep_alive: bool = True
    ) -> None:
        sink = self.sink
        assert sink is not None, "nobody is waiting on this connection"
        self.got_data = True
        self.has_length = True
        self._keep_alive = keep_alive
        pairs = [(b"content-length", str(len(body)).encode())]
        pairs += [(k.lower().encode(), v.encode()) for k, v in headers if k.lower().encode() not in self.drop]
        sink.upstream_head(status, pairs)
        if self.sink is not sink:
            return  # the sink retried on this status: it has let go of the connection
        if body:
            sink.upstream_body(body)
        self.sink = None
        sink.upstream_done()

    def respond_head_then_reset(self, status: int = 200) -> None:
        sink = self.sink
        assert sink is not None
        self.got_data = self.has_length = True
        sink.upstream_head(status, [(b"content-length", b"100")])
        self._reset(CONNECTION_TERMINATION)

    def reset(self) -> None:
        """The upstream closed the connection."""
        self._reset(CONNECTION_TERMINATION)

    def garbage(self) -> None:
        """The upstream sent something that is not HTTP."""
        self.got_data = True
        self._reset(PROTOCOL_ERROR)

    def _reset(self, reason: str) -> None:
        sink = self.sink
        self.close()
        if sink is not None:
            sink.upstream_failed(reason)


class FakeConnector(Connector):
    """Connections open when the test says so."""

    def __init__(self, timers: ManualTimers) -> None:
        self.timers = timers
        self.waiting: list[EndpointPool] = []
        self.opened: list[FakeUpstream] = []

    def connect(self, pool: EndpointPool) -> None:
        self.waiting.append(pool)

    def _take(self, address: str | None) -> EndpointPool:
        index = 0 if address is None else [p.host.address for p in self.waiting].index(address)
        return self.waiting.pop(index)

    def accept(self, address: str | None = None) -> FakeUpstream:
        """Open the oldest connection asked for (or the one to `address`)."""
        pool = self._take(address)
        conn = FakeUpstream(pool, self.timers.now())
        self.opened.append(conn)
        pool.connected(conn)
        return conn

    def refuse(self, timed_out: bool = False, address: str | None = None) -> None:
        self._take(address).connect_failed(timed_out)


@dataclass
class Playbook:
    """One sidecar's outbound (or inbound, or gateway) side, with nothing real under it."""

    snapshot: ProxySnapshot
    listener: ListenerClass = ListenerClass.SIDECAR_OUTBOUND
    seed: int = 7
    timers: ManualTimers = field(default_factory=ManualTimers)
    lines: list[str] = field(default_factory=list)

    router: Callable[[RequestHead], RouteDecision] | None = None  # default: the snapshot's outbound routes
    clusters: ClusterManager | None = None  # default: the snapshot's clusters
    sidecar: Sidecar | None = None  # the Sidecar an inbound playbook was built from

    def __post_init__(self) -> None:
        rng = random.Random(self.seed)
        self.connector = FakeConnector(self.timers)
        if self.clusters is None:
            self.clusters = ClusterManager(clock=self.timers.now, rng=rng)
            self.clusters.update(self.snapshot)
        self.upstreams = Upstreams(self.timers, self.connector)
        self.access_log = AccessLog(self.lines.append)
        self.span_bodies: list[bytes] = []

        async def post(body: bytes) -> None:
            self.span_bodies.append(body)

        self.spans = SpanReporter(SpanBuilder(self.snapshot.identity), post=post)
        telemetry = Telemetry(self.snapshot.identity, access_log=self.access_log, spans=self.spans, rng=rng)
        telemetry.configure(self.snapshot.telemetry)
        self.records: list[RequestRecord] = []
        self.ctx = ForwardContext(
            self.timers, self.clusters, self.upstreams, self.listener, telemetry, self.records.append, rng
        )
        self.route = self.router or OutboundRouter(RouteTable(self.snapshot), rng)

    @classmethod
    def inbound(
        cls,
        compose: str,
        proxy: str,
        app_address: str,
        istio: str = "",
        snapshot: ProxySnapshot | None = None,
        addresses: dict[str, str] | None = None,
    ) -> Playbook:
        """The inbound side of `proxy`'s sidecar (or a gateway's listener), routed, clustered and
        filtered (authentication, authorization) by the real Sidecar."""
        if snapshot is None:
            snapshot = mesh_snapshot(compose, istio, proxy, addresses or {}, app_address=app_address)
        off = {name: None for name in ("outbound_port", "inbound_port", "admin_port", "stats_port", "ready_port")}
        loop = asyncio.new_event_loop()
        try:
            sidecar = Sidecar(snapshot, ProxyOptions(access_log=None, **off), loop=loop)  # type: ignore[arg-type]
        finally:
            loop.close()
        gateway = snapshot.identity.kind == "router"
        playbook = cls(
            sidecar.snapshot,
            listener=ListenerClass.GATEWAY if gateway else ListenerClass.SIDECAR_INBOUND,
            router=sidecar.route_outbound if gateway else sidecar.route_inbound,
            clusters=sidecar.clusters,
        )
        playbook.ctx.filters = sidecar.filters
        playbook.sidecar = sidecar
        return playbook

    @classmethod
    def of(cls, compose: str, istio: str, proxy: str, addresses: dict[str, str], **kwargs: object) -> Playbook:
        return cls(mesh_snapshot(compose, istio, proxy, addresses), **kwargs)  # type: ignore[arg-type]

    def send(
        self,
        path: str = "/",
        host: str = "reviews:9080",
        method: str = "GET",
        headers: dict[str, str] | None = None,
        body: bytes = b"",
        down: FakeDownstream | None = None,
    ) -> tuple[Exchange, FakeDownstream]:
        """A request as the listener hands it over: head, then body, then its end."""
        down = down or FakeDownstream()
        all_headers = {"host": host, **(headers or {})}
        if body:
            all_headers["content-length"] = str(len(body))
        head = RequestHead(method, path, host, all_headers, int(host.rpartition(":")[2] or 80))
        exchange = Exchange(down, self.ctx, head, bool(body), False, None)
        filters = self.ctx.filters
        if filters is not None:  # as the listener dispatches (server.py): the filters route it
            filters.run(exchange, self.route)
        else:
            exchange.start(self.route(head))
        if body:
            exchange.request_body(body)
        exchange.request_complete()
        return exchange, down

    def log(self) -> list[str]:
        self.access_log.flush()
        lines = [line for chunk in self.lines for line in chunk.splitlines()]
        self.lines.clear()
        return lines

    def sent_spans(self) -> list[dict[str, Any]]:
        """The spans queued so far, as the reporter sends them."""
        asyncio.run(self.spans.flush())
        spans = [span for body in self.span_bodies for span in json.loads(body)]
        self.span_bodies.clear()
        return spans
