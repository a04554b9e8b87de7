"""HTTPS from apps in proxy interception mode: the outbound listener's CONNECT tunnels.

An app whose HTTPS_PROXY is its sidecar opens `CONNECT host:port HTTP/1.1`; the listener's codec
(server.py) hands the connection over to `Tunnels.open` with whatever bytes followed the head.
The mesh's egress rules govern the tunnel as they govern a plain request: tcproute.py says which
cluster the destination belongs to (a mesh service, a ServiceEntry host, PassthroughCluster under
ALLOW_ANY, BlackHoleCluster under REGISTRY_ONLY), the cluster's balancer picks the endpoint (the
requested address for PassthroughCluster and resolution NONE) and its transport (auto mTLS to a
sidecar, a DestinationRule's TLS) is used as for HTTP. Answers as Envoy's: `200` (no body) once
the upstream connection is open; BlackHoleCluster 502 (the status block_all gives HTTP), no
healthy host 503 UH, refused or connectTimeout passed 503 UF, the cluster's maxConnections reached
503 UO; each refusal closes the connection. Then relay.py carries the bytes until either side
ends, no byte passes either way for the cluster's TCP idleTimeout, or its maxConnectionDuration
passes (flag DT).

Telemetry as Istio reports a TCP connection through a sidecar (reporter=source, request_protocol
"tcp"): istio_tcp_connections_opened_total when the upstream connection opens,
istio_tcp_connections_closed_total when the tunnel ends (a refused tunnel only counts closed),
istio_tcp_received/sent_bytes_total (from/to the app) every 5 s (Istio's tcp_reporting_duration)
and at the end; unknown destinations are labelled destination_service_name PassthroughCluster or
BlackHoleCluster. One access log line when the tunnel ends, Envoy's TCP proxy line ("- - -" 0 ...),
with the CONNECT's authority as %REQ(:AUTHORITY)% (so a refused tunnel names what it asked for) and
the server name of the app's TLS ClientHello, when its first bytes are one, as %REQUESTED_SERVER_NAME%.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any, cast

from sandbox.proxy import http1
from sandbox.proxy.balancing import Host
from sandbox.proxy.clienthello import Verdict, inspect
from sandbox.proxy.cluster import ClusterState
from sandbox.proxy.context import ForwardContext
from sandbox.proxy.metrics import Edge
from sandbox.proxy.record import RequestRecord
from sandbox.proxy.relay import Relay, RelayOwner
from sandbox.proxy.tcproute import TcpRoutes, TcpTarget
from sandbox.proxy.timers import Timer
from sandbox.proxy.tls import Credentials, Origination, OriginationError, tls_error
from sandbox.xds.snapshot import BLACKHOLE_CLUSTER, PASSTHROUGH_CLUSTER

REPORT_INTERVAL = 5.0  # Istio's tcp_reporting_duration: bytes are reported this often, and at the close
SWEEP_INTERVAL = 1.0  # how often open tunnels are checked (idle timeout, duration, byte reports)
OK_HEAD = b"HTTP/1.1 200 OK\r\n"


class Tunnel(RequestRecord, RelayOwner):
    """One CONNECT, from the head to the end of its relay; also its own access-log record."""

    def __init__(self, tunnels: Tunnels, target: TcpTarget, remote: str, local: str) -> None:
        ctx = tunnels.ctx
        self.start_time = ctx.timers.wall()
        self.tunnels = tunnels
        self.target = target
        self.relay = Relay(self)
        self.started = ctx.timers.now()
        self.method = self.path = self.protocol = ""  # Envoy's TCP proxy line: "- - -"
        self.authority = target.address
        self.downstream_remote_address = remote
        self.downstream_local_address = local
        self.upstream_cluster = target.cluster
        self.state: ClusterState | None = None
        self.host: Host | None = None
        self.task: asyncio.Task[None] | None = None
        self.counted = False  # holds one of the cluster's maxConnections
        self.connected = False
        self.finished = False
        self.mtls = False
        self.opened = 0.0
        self.last_active = 0.0
        self.last_total = 0
        self.next_report = 0.0
        self.reported_sent = 0
        self.reported_received = 0

    # ------------------------------------------------------------------ opening

    def start(self, transport: asyncio.Transport, leftover: bytes, paused: bool) -> None:
        """Take the client's connection over (reading stops until the upstream is open)."""
        down = self.relay.downstream
        down.reading = not paused
        transport.set_protocol(down)
        down.connection_made(transport)
        down.set_reading(False)
        if leftover:  # bytes the client sent after the head, before our answer: the upstream's
            down.received += len(leftover)
            down.held.append(leftover)
            self.relay_first_bytes(leftover)
        else:
            down.sniff = True
        target = self.target
        if target.blocked:
            self._refuse(502, "UH", b"")  # BlackHoleCluster: Istio logs UH, block_all answers 502
            return
        ctx = self.tunnels.ctx
        state = ctx.clusters.get(target.cluster)
        if state is None:
            self._refuse(503, "NC", b"")
            return
        self.state = state
        if target.passthrough or state.passthrough:  # ORIGINAL_DST (also resolution NONE): where the app asked
            host = ctx.passthrough.pick_original(target.host, target.port)
        else:
            host = state.pick(None, self.downstream_remote_address.rpartition(":")[0])
        if host is None:
            self._refuse(503, "UH", http1.BODY_NO_HEALTHY.encode())
            return
        self.host = host
        self.upstream_host = host.address
        if not state.breaker.try_connection():
            self._refuse(503, "UO", http1.BODY_OVERFLOW.encode())
            return
        self.counted = True
        credentials = self.tunnels.credentials
        try:
            origination = credentials.origination(state.config, host.endpoint) if credentials is not None else None
        except OriginationError as exc:
            self.upstream_transport_failure_reason = str(exc)
            self._refuse(503, "UF", http1.BODY_CONNECT_FAILURE.encode())
            return
        self.mtls = origination is not None and origination.mesh
        timeout = state.config.traffic_policy.connection_pool.connect_timeout
        self.task = self.tunnels.loop.create_task(self._connect(host, origination, timeout))

    async def _connect(self, host: Host, origination: Origination | None, timeout: float) -> None:
        up = self.relay.upstream
        loop = self.tunnels.loop
        failure = ""
        timed_out = False
        try:
            try:
                async with asyncio.timeout(timeout):
                    if origination is None:
                        await loop.create_connection(lambda: up, host.ip, host.port)
                    else:
                        await loop.create_connection(
                            lambda: up,
                            host.ip,
                            host.port,
                            ssl=origination.context,
                            server_hostname=origination.server_name or "",
                            ssl_handshake_timeout=max(timeout, 0.001),
                        )
            except ssl.SSLError as exc:
                failure = tls_error(exc.reason or type(exc).__name__)
            except (OSError, TimeoutError, ValueError, UnicodeError) as exc:
                timed_out = isinstance(exc, TimeoutError)
                failure = "-"
            if not failure and origination is not None and up.transport is not None:
                failure = origination.verify(up.transport.get_extra_info("ssl_object"))
                if failure:
                    up.close(True)
        finally:
            if self.finished and up.transport is not None:
                up.close(True)  # the client left while we connected (or the listener closed)
        if self.finished:
            return
        if failure or up.transport is None or up.lost:
            state, self.counted = self.state, False
            if state is not None:
                state.breaker.release_connection()
                state.connect_failed(host, timed_out)
            if failure and failure != "-":
                self.upstream_transport_failure_reason = failure
            self._refuse(503, "UF", http1.BODY_CONNECT_FAILURE.encode())
            return
        self._opened(up.transport)

    def _opened(self, upstream: asyncio.Transport) -> None:
        tunnels = self.tunnels
        ctx = tunnels.ctx
        local = upstream.get_extra_info("sockname")
        if isinstance(local, tuple):
            self.upstream_local_address = f"{local[0]}:{local[1]}"
        self.connected = True
        self.opened = self.last_active = ctx.timers.now()
        self.next_report = self.opened + tunnels.report_interval
        telemetry = ctx.telemetry
        if telemetry is not None:
            edge = self._edge()
            telemetry.tcp_opened(edge)
        relay = self.relay
        down = relay.downstream.transport
        if down is not None and not relay.downstream.lost:
            extra = b"date: " + http1.http_date() + b"\r\n" + ctx.server_line + b"\r\n"
            down.write(OK_HEAD + extra)
        relay.link()

    def _refuse(self, status: int, flag: str, body: bytes) -> None:
        """Answer the CONNECT ourselves and close (what was written goes first)."""
        self.response_flags = flag
        down = self.relay.downstream
        if down.transport is not None and not down.lost:
            server = self.tunnels.ctx.server_name
            down.transport.write(http1.local_reply(status, body, close=True, server=server))
        self.relay.end(False)

    # ------------------------------------------------------------------ the relay's events

    def relay_first_bytes(self, data: bytes) -> None:
        verdict, sni = inspect(data)
        if verdict is Verdict.TLS:
            self.requested_server_name = sni

    def relay_ended(self, relay: Relay, error: bool) -> None:
        if not self.connected and not self.response_flags:
            # before the tunnel opened: the client left (DC), or the upstream closed at once (UC)
            self.response_flags = "DC" if relay.downstream.lost else "UC"
        task = self.task
        if task is not None and not self.connected and not task.done():
            task.cancel()
        self._finish()

    def tick(self, now: float) -> None:
        """The sweep: report bytes every REPORT_INTERVAL; end an idle or too old tunnel."""
        if not self.connected or self.finished:
            return
        relay = self.relay
        total = relay.downstream.received + relay.upstream.received
        if total != self.last_total:
            self.last_total = total
            self.last_active = now
        if now >= self.next_report:
            self.next_report = now + self.tunnels.report_interval
            self._report_bytes()
        state = self.state
        if state is None:
            return
        pool = state.config.traffic_policy.connection_pool
        if pool.max_connection_duration is not None and now - self.opened >= pool.max_connection_duration:
            self.response_flags = "DT"
            relay.end(False)
        elif pool.tcp_idle_timeout and now - self.last_active >= pool.tcp_idle_timeout:
            relay.end(False)  # Envoy's TCP proxy idle_timeout: closed without a flag

    # ------------------------------------------------------------------ the end

    def _edge(self) -> Edge:
        telemetry = self.tunnels.ctx.telemetry
        assert telemetry is not None
        edge = self.edge
        if edge is None:
            target = self.target
            host = self.host
            endpoint = host.endpoint if host is not None else None
            if target.service:
                edge = telemetry.tcp_edge(endpoint, target.service, self.mtls)
            else:
                name = BLACKHOLE_CLUSTER if target.blocked else PASSTHROUGH_CLUSTER
                edge = telemetry.tcp_edge(endpoint, target.host, False, name)
            self.edge = edge
        return edge

    def _report_bytes(self) -> None:
        telemetry = self.tunnels.ctx.telemetry
        if telemetry is None:
            return
        relay = self.relay
        sent, received = relay.upstream.received, relay.downstream.received
        telemetry.tcp_bytes(
            self._edge(), sent - self.reported_sent, received - self.reported_received, self.response_flags
        )
        self.reported_sent, self.reported_received = sent, received

    def _finish(self) -> None:
        if self.finished:
            return
        self.finished = True
        tunnels = self.tunnels
        tunnels.ended(self)
        ctx = tunnels.ctx
        relay = self.relay
        self.duration = ctx.timers.now() - self.started
        self.bytes_received = relay.downstream.received
        self.bytes_sent = relay.upstream.received
        state = self.state
        if self.counted and state is not None:
            self.counted = False
            state.breaker.release_connection()
        telemetry = ctx.telemetry
        if telemetry is not None:
            self._report_bytes()
            telemetry.finish_tcp(self)
        if ctx.on_complete is not None:
            ctx.on_complete(self)


class Tunnels:
    """The CONNECT tunnels of one listener: open ones, and ended ones still flushing."""

    def __init__(
        self, ctx: ForwardContext, loop: asyncio.AbstractEventLoop, credentials: Credentials | None = None
    ) -> None:
        self.ctx = ctx
        self.loop = loop
        self.credentials = credentials
        self.routes: TcpRoutes | None = None  # the sidecar sets it with each snapshot
        self.active: set[Tunnel] = set()
        # Ended relays whose connections still flush what they hold: aborted when that takes
        # longer than the cluster's idle timeout (deadline, relay)
        self.draining: list[tuple[float, Relay]] = []
        self.sweeper: Timer | None = None
        self.report_interval = REPORT_INTERVAL
        self.sweep_interval = SWEEP_INTERVAL

    def open(
        self, transport: Any, host: str, port: int, leftover: bytes, remote: str, local: str, paused: bool
    ) -> None:
        """A CONNECT to `host:port` (parsed by tcproute.parse_authority) on `transport`, which is
        now the tunnel's; `paused`: the codec had paused reading."""
        routes = self.routes  # (None: no snapshot yet, nothing is known)
        target = routes.target(host, port) if routes is not None else TcpTarget(BLACKHOLE_CLUSTER, "", host, port)
        tunnel = Tunnel(self, target, remote, local)
        self.active.add(tunnel)
        if self.sweeper is None:
            self.sweeper = self.ctx.timers.call_later(self.sweep_interval, self._sweep)
        tunnel.start(cast(asyncio.Transport, transport), leftover, paused)

    def ended(self, tunnel: Tunnel) -> None:
        self.active.discard(tunnel)
        if not tunnel.relay.closed:
            state = tunnel.state
            grace = state.config.traffic_policy.connection_pool.tcp_idle_timeout if state is not None else 0.0
            self.draining.append((self.ctx.timers.now() + (grace or self.report_interval), tunnel.relay))

    def _sweep(self) -> None:
        self.sweeper = None
        now = self.ctx.timers.now()
        for tunnel in list(self.active):
            tunnel.tick(now)
        draining = []
        for deadline, relay in self.draining:
            if relay.closed:
                continue
            if deadline <= now:
                relay.abort()
            else:
                draining.append((deadline, relay))
        self.draining = draining
        if self.active or self.draining:
            self.sweeper = self.ctx.timers.call_later(self.sweep_interval, self._sweep)

    def close(self) -> None:
        """The listener closes: every tunnel ends now."""
        for tunnel in list(self.active):
            tunnel.relay.end(False)
        for _, relay in self.draining:
            relay.abort()
        self.draining = []
        sweeper = self.sweeper
        if sweeper is not None:
            self.sweeper = None
            sweeper.cancel()
