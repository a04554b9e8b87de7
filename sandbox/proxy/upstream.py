"""Upstream side of the data path: connections and one connection pool per endpoint.

Cluster logic (hosts, balancer, circuit breaker, outlier detection) is cluster.py's; this module
adds the pools: one `EndpointPool` per (cluster, host). The pool follows Envoy's HTTP/1 pool
(circuitbreaker.py explains the order): reuse an idle connection, else wait as a pending request
while a connection opens. Requests never pipeline on one upstream connection; a connection goes
back to the idle list only after a complete exchange. Idle connections close after the cluster's
idleTimeout, and a connection older than maxConnectionDuration takes no new request.

Three seams keep the sockets apart, each a base class (compiled, calls through them are direct):
- `UpstreamConnection`: what the exchange and the pool use of a connection; `Http1Connection` is
  HTTP/1.1 over a socket, parsing responses with httptools.
- `UpstreamSink`: who uses a connection now (the exchange, or a mirror); response bytes reach the
  downstream connection in the same callback, with no task switch.
- `Connector`: how a pool gets a new connection; `SocketConnector` opens a TCP connection, with
  TLS when the endpoint's transport asks for it (tls.py's `Credentials`: auto mTLS, ISTIO_MUTUAL,
  SIMPLE, MUTUAL). A failed handshake or a server whose certificate names the wrong identity is a
  connection failure with a transport failure reason, as in Envoy.
Sans-io tests give the pools a fake connector and fake connections, and a manual clock (timers.py).
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from typing import cast

import httptools
from mypy_extensions import mypyc_attr, trait

from sandbox.proxy.balancing import Host
from sandbox.proxy.cluster import ClusterState
from sandbox.proxy.timers import Timer, Timers
from sandbox.proxy.tls import Credentials, OriginationError, tls_error
from sandbox.proxy.tlsstream import TlsStream
from sandbox.proxy.writes import Outbox, WriteBatch

# Failure reasons, worded as Envoy's reset reasons in local reply bodies. A connection failure may
# go on to say why the transport failed: TRANSPORT_FAILURE % reason.
CONNECTION_FAILURE = "connection failure"
TRANSPORT_FAILURE = CONNECTION_FAILURE + ", transport failure reason: %s"
CONNECTION_TERMINATION = "connection termination"
PROTOCOL_ERROR = "protocol error"
OVERFLOW = "overflow"
MAX_IDLE = 86400.0 * 365  # idleTimeout 0: never idle out


HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"te", b"trailer", b"upgrade", b"expect"}
)


# Raw response header name -> lowercase: upstreams send the same few names over and over. Names are
# upstream input, so the cache stops growing at a bound.
_LOWER: dict[bytes, bytes] = {}


def _lower(name: bytes) -> bytes:
    lower = name.lower()
    if len(_LOWER) < 4096:
        _LOWER[name] = lower
    return lower


@trait
class UpstreamSink:
    """The user of an upstream connection: the exchange being forwarded, or a mirror.

    A trait, not a Protocol: compiled, a call through it is a native call, and these run several
    times per request (a trait, as the exchange is a RequestRecord too)."""

    def upstream_connected(self, conn: UpstreamConnection) -> None:
        raise NotImplementedError

    def upstream_failed(self, reason: str) -> None:
        raise NotImplementedError

    def upstream_head(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        raise NotImplementedError

    def upstream_body(self, data: bytes) -> None:
        raise NotImplementedError

    def upstream_done(self) -> None:
        raise NotImplementedError

    def upstream_paused(self, paused: bool) -> None:
        raise NotImplementedError


@mypyc_attr(allow_interpreted_subclasses=True)
class UpstreamConnection:
    """A connection to one endpoint, as its pool and its current sink see it.

    The contract with the sink, for each request `start`ed on it: `upstream_head(status, headers)`
    once (headers lowercased, without those in `drop`), `upstream_body(data)` for each piece, then
    `upstream_done()` (the connection is free again: the sink releases it to the pool) or, instead,
    `upstream_failed(reason)` at any point."""

    pool: EndpointPool
    sink: UpstreamSink | None
    requests: int  # completed exchanges, for maxRequestsPerConnection
    closed: bool
    got_data: bool  # any response byte for the current request
    has_length: bool  # the current response has a content-length
    opened_at: float  # monotonic, for maxConnectionDuration
    idle_since: float  # monotonic, while parked in its pool's idle list
    mtls: bool  # mesh mutual TLS (ISTIO_MUTUAL): the request's telemetry says so

    def start(self, sink: UpstreamSink, head_request: bool, drop: frozenset[bytes] = HOP_BY_HOP) -> None:
        raise NotImplementedError

    def write(self, data: bytes) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Drop the connection (never flushing half a request); the sink hears nothing more."""
        raise NotImplementedError

    def pause_reading(self, paused: bool) -> None:
        raise NotImplementedError

    def keep_alive(self) -> bool:
        """The last response allows reusing the connection."""
        raise NotImplementedError


class Http1Connection(asyncio.Protocol, UpstreamConnection):
    """One HTTP/1.1 client connection; parses responses with httptools and feeds its sink.

    The response headers reach the sink lowercased and already without those in `drop` (hop-by-hop
    ones, and whatever else the sink replaces), filtered as llhttp hands them over."""

    __slots__ = (
        "chunked",
        "closed",
        "counted",
        "drop",
        "got_data",
        "has_length",
        "head_request",
        "headers",
        "idle_since",
        "informational",
        "mtls",
        "opened_at",
        "outbox",
        "parser",
        "pool",
        "requests",
        "sink",
        "transport",
        "until_close",
    )

    def __init__(self, pool: EndpointPool, writes: WriteBatch) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.outbox = Outbox(writes)
        self.opened_at = self.idle_since = pool.timers.now()
        self.parser = httptools.HttpResponseParser(self)
        self.sink: UpstreamSink | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.requests = 0  # completed exchanges, for maxRequestsPerConnection
        self.closed = False
        self.got_data = False  # any response byte for the current request
        self.has_length = False  # the current response has a content-length
        self.until_close = False  # ... or neither length nor chunks: it ends when the connection does
        self.head_request = False  # a HEAD response ends at its head
        self.informational = False
        self.chunked = False  # the current response said transfer-encoding
        self.drop: frozenset[bytes] = HOP_BY_HOP
        self.counted = False  # the pool counts it as open (from `connected`; not while it handshakes)
        self.mtls = False

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (cast: uvloop's transports are not subclasses)
        self.transport = self.outbox.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self.sink is None:  # nobody asked: a stray byte on an idle connection makes it unusable
            self.close()
            return
        self.got_data = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.fail(PROTOCOL_ERROR)

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.outbox.close(flush=False)
        if self.counted:
            self.pool.connection_closed(self)
        sink = self.sink
        if sink is not None:
            self.sink = None
            if self.until_close and exc is None:
                sink.upstream_done()  # a body delimited by the connection's end ends here
            else:
                sink.upstream_failed(CONNECTION_TERMINATION)

    def pause_writing(self) -> None:
        if self.sink is not None:
            self.sink.upstream_paused(True)

    def resume_writing(self) -> None:
        if self.sink is not None:
            self.sink.upstream_paused(False)

    # -- httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        name = _LOWER.get(name) or _lower(name)
        if name in self.drop:
            if name == b"transfer-encoding":
                self.chunked = True
        else:
            if name == b"content-length":
                self.has_length = True
            self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        headers = self.headers
        self.headers = []
        if status < 200:  # 100 Continue and friends: wait for the real response
            self.informational = True
            self.has_length = self.chunked = False
            return
        if not self.has_length and not self.chunked and status != 204 and status != 304 and not self.head_request:
            self.until_close = True
        sink = self.sink
        if sink is not None:
            sink.upstream_head(status, headers)
        if self.head_request and self.sink is not None:
            # llhttp cannot be told a response answers HEAD; end the message here and start afresh.
            self.parser = httptools.HttpResponseParser(self)
            self.on_message_complete()

    def on_body(self, body: bytes) -> None:
        sink = self.sink
        if sink is not None:
            sink.upstream_body(body)

    def on_message_complete(self) -> None:
        if self.informational:
            self.informational = False
            return
        sink = self.sink
        if sink is not None:
            self.sink = None
            sink.upstream_done()

    # -- used by the exchange
    def start(self, sink: UpstreamSink, head_request: bool, drop: frozenset[bytes] = HOP_BY_HOP) -> None:
        self.sink = sink
        self.got_data = False
        self.has_length = self.until_close = self.chunked = False
        self.head_request = head_request
        self.drop = drop

    def write(self, data: bytes) -> None:
        self.outbox.write(data)  # at the end of the loop's pass (writes.py)

    def fail(self, reason: str) -> None:
        """Drop the connection after a protocol error; the sink hears `reason`."""
        sink = self.sink
        self.sink = None
        self.close()
        if sink is not None:
            sink.upstream_failed(reason)

    def close(self) -> None:
        self.sink = None
        if self.transport is not None and not self.closed:
            self.closed = True
            self.outbox.close(flush=False)
            self.transport.abort()  # abort: never flush half a request to an upstream we gave up on

    def pause_reading(self, paused: bool) -> None:
        if self.transport is not None and not self.closed:
            if paused:
                self.transport.pause_reading()
            else:
                self.transport.resume_reading()

    def keep_alive(self) -> bool:
        return bool(self.parser.should_keep_alive())


@mypyc_attr(allow_interpreted_subclasses=True)
class Connector:
    """How a pool gets a new connection: `connect(pool)` later calls `pool.connected(conn)` or
    `pool.connect_failed(timed_out, reason)`."""

    def connect(self, pool: EndpointPool) -> None:
        raise NotImplementedError


class SocketConnector(Connector):
    """TCP connections from the event loop, with the cluster's connectTimeout (covering the TLS
    handshake too); writes batched per pass. `tls`: the proxy's credentials, None for plaintext only."""

    __slots__ = ("loop", "tls", "writes")

    def __init__(self, loop: asyncio.AbstractEventLoop, writes: WriteBatch, tls: Credentials | None = None) -> None:
        self.loop = loop
        self.writes = writes
        self.tls = tls

    def connect(self, pool: EndpointPool) -> None:
        self.loop.create_task(self._connect(pool))

    async def _connect(self, pool: EndpointPool) -> None:
        host = pool.host
        config = pool.state.config
        timeout = config.traffic_policy.connection_pool.connect_timeout
        writes = self.writes
        try:
            origination = self.tls.origination(config, host.endpoint) if self.tls is not None else None
        except OriginationError as exc:
            pool.connect_failed(False, TRANSPORT_FAILURE % exc)
            return
        conn: Http1Connection | None = None
        stream: TlsStream | None = None
        timed_out = False
        reason = CONNECTION_FAILURE
        try:
            async with asyncio.timeout(timeout):
                if origination is None:
                    _, conn = await self.loop.create_connection(
                        lambda: Http1Connection(pool, writes), host.ip, host.port
                    )
                else:
                    ready: asyncio.Future[None] = self.loop.create_future()
                    made = Http1Connection(pool, writes)
                    stream = TlsStream(origination.context, False, origination.server_name, lambda: made, ready)
                    await self.loop.create_connection(lambda: cast(asyncio.Protocol, stream), host.ip, host.port)
                    await ready
                    conn = made
        except ssl.SSLError as exc:
            reason = TRANSPORT_FAILURE % tls_error(exc.reason or type(exc).__name__)
        except (OSError, TimeoutError, ValueError, UnicodeError) as exc:
            timed_out = isinstance(exc, TimeoutError)
        except asyncio.CancelledError:  # the loop shuts down mid-handshake
            if stream is not None:
                stream.abort()
            raise
        if conn is None and stream is not None:
            stream.abort()  # a handshake that failed or ran out of time
        if conn is not None and origination is not None and conn.transport is not None:
            failure = origination.verify(conn.transport.get_extra_info("ssl_object"))
            if failure:
                conn.close()
                conn, reason = None, TRANSPORT_FAILURE % failure
        if conn is None or conn.closed:
            pool.connect_failed(timed_out, reason)
        else:
            conn.counted = True
            conn.mtls = origination is not None and origination.mesh
            pool.connected(conn)


class EndpointPool:
    """Connections to one host of one cluster: idle ones (reused last-in first-out) and waiters.

    Limits come from the cluster's circuit breaker (cluster-wide, as in Envoy); `state` is the
    cluster's current ClusterState, refreshed on every acquire so a new snapshot takes effect.
    """

    __slots__ = (
        "connecting",
        "connector",
        "host",
        "idle",
        "open",
        "retired",
        "state",
        "sweep_timer",
        "timers",
        "waiters",
    )

    def __init__(self, state: ClusterState, host: Host, timers: Timers, connector: Connector) -> None:
        self.state = state
        self.host = host
        self.timers = timers
        self.connector = connector
        self.sweep_timer: Timer | None = None
        self.idle: list[UpstreamConnection] = []
        self.waiters: deque[UpstreamSink] = deque()
        self.connecting = 0
        self.open = 0
        self.retired = False  # the snapshot dropped this (cluster, host): close connections as they free up

    def acquire(self, waiter: UpstreamSink) -> UpstreamConnection | str | None:
        """An idle connection; None when `waiter` now waits for one; OVERFLOW when it may not wait."""
        idle = self.idle
        while idle:
            conn = idle.pop()
            if not conn.closed:
                return conn
        if not self.state.breaker.try_pending():
            return OVERFLOW
        self.waiters.append(waiter)
        if self.connecting < len(self.waiters):
            self._open_connection()
        return None

    def release(self, conn: UpstreamConnection, reusable: bool) -> None:
        """An exchange finished with `conn`: hand it to a waiter, park it idle, or close it."""
        conn.requests += 1
        conn.sink = None
        max_duration = self.state.config.traffic_policy.connection_pool.max_connection_duration
        now = self.timers.now()
        if (
            not reusable
            or conn.closed
            or self.retired
            or self.state.breaker.connection_exhausted(conn.requests)
            or (max_duration is not None and now - conn.opened_at >= max_duration)
        ):
            conn.close()
            return
        conn.idle_since = now
        if self.waiters:
            waiter = self.waiters.popleft()
            self.state.breaker.release_pending()
            # Not inline: we are inside the previous exchange's parser callback.
            self.timers.call_soon(_HandOver(waiter, conn).run)
            return
        self._park(conn)

    def _park(self, conn: UpstreamConnection) -> None:
        """Idle until reused, or closed by the sweep after the cluster's idleTimeout (Envoy's
        idle_timeout) or maxConnectionDuration. One timer per pool, not per connection: a busy
        pool's connections are parked and taken many times a second, and its timer stays put."""
        self.idle.append(conn)
        if self.sweep_timer is None:
            self.sweep_timer = self.timers.call_later(self._next_deadline(conn) - self.timers.now(), self.sweep)

    def _next_deadline(self, conn: UpstreamConnection) -> float:
        policy = self.state.config.traffic_policy.connection_pool
        deadline = conn.idle_since + (policy.idle_timeout or MAX_IDLE)
        if policy.max_connection_duration is not None:
            deadline = min(deadline, conn.opened_at + policy.max_connection_duration)
        return deadline

    def sweep(self) -> None:
        """Close the idle connections past their deadline; come back for the next one."""
        self.sweep_timer = None
        now = self.timers.now()
        expired = [conn for conn in self.idle if self._next_deadline(conn) <= now]
        for conn in expired:
            self.idle.remove(conn)
            conn.close()
        if self.idle:
            deadline = min(self._next_deadline(conn) for conn in self.idle)
            self.sweep_timer = self.timers.call_later(max(0.0, deadline - now), self.sweep)

    def cancel(self, waiter: UpstreamSink) -> None:
        """`waiter` gave up (timeout, downstream gone) before it got a connection."""
        try:
            self.waiters.remove(waiter)
        except ValueError:
            return
        self.state.breaker.release_pending()

    def connection_closed(self, conn: UpstreamConnection) -> None:
        """`conn` is gone (either side closed it): its slot frees up for a waiter."""
        self.open -= 1
        self.state.breaker.release_connection()
        if conn in self.idle:
            self.idle.remove(conn)
        if self.waiters and self.connecting < len(self.waiters):
            self._open_connection()

    def close_idle(self) -> None:
        for conn in self.idle[:]:
            conn.close()
        self.idle.clear()
        timer = self.sweep_timer
        if timer is not None:
            self.sweep_timer = None
            timer.cancel()

    def _open_connection(self) -> None:
        breaker = self.state.breaker
        if not breaker.try_connection():
            if self.open or self.connecting:
                return  # waiters keep waiting for a busy connection to free up (upstream_cx_overflow)
            # Envoy's tryCreateNewConnection: at the cluster's limit because of other hosts' connections,
            # a pool with none of its own still opens one, or its waiters could never be served.
            breaker.connections += 1
        self.connecting += 1
        self.connector.connect(self)

    def connected(self, conn: UpstreamConnection) -> None:
        """The connector opened `conn` for this pool."""
        self.connecting -= 1
        self.open += 1
        if self.waiters:
            waiter = self.waiters.popleft()
            self.state.breaker.release_pending()
            waiter.upstream_connected(conn)
        elif not conn.closed:
            self._park(conn)

    def connect_failed(self, timed_out: bool, reason: str = CONNECTION_FAILURE) -> None:
        """The connector could not connect (refused, unreachable, connectTimeout passed, or the TLS
        handshake failed: `reason` then says why, TRANSPORT_FAILURE)."""
        self.connecting -= 1
        self.state.breaker.release_connection()
        self.state.connect_failed(self.host, timed_out)
        # As Envoy's pool: a failed connect fails the waiters that no other connection will serve.
        while self.waiters and len(self.waiters) > self.connecting + (self.open - len(self.idle)):
            waiter = self.waiters.popleft()
            self.state.breaker.release_pending()
            waiter.upstream_failed(reason)


class _HandOver:
    """A freed connection for a waiter, on the next turn of the loop."""

    __slots__ = ("conn", "waiter")

    def __init__(self, waiter: UpstreamSink, conn: UpstreamConnection) -> None:
        self.waiter = waiter
        self.conn = conn

    def run(self) -> None:
        if self.conn.closed:
            self.waiter.upstream_failed(CONNECTION_TERMINATION)
        else:
            self.waiter.upstream_connected(self.conn)


class Upstreams:
    """Every endpoint pool of the proxy, keyed by (cluster, host address).

    Pools outlive snapshots: a cluster that keeps its name and host keeps its warm connections.
    """

    def __init__(self, timers: Timers, connector: Connector) -> None:
        self.timers = timers
        self.connector = connector
        self.pools: dict[tuple[str, str], EndpointPool] = {}

    def pool(self, state: ClusterState, host: Host) -> EndpointPool:
        key = (state.name, host.address)
        pool = self.pools.get(key)
        if pool is None:
            if len(self.pools) > 4096:  # passthrough destinations are open-ended
                self._drop_unused()
            pool = self.pools[key] = EndpointPool(state, host, self.timers, self.connector)
        elif pool.state is not state:
            pool.state = state
        return pool

    def retain(self, live: set[tuple[str, str]]) -> None:
        """After a snapshot update: close idle connections of pools no cluster uses any more."""
        for key in list(self.pools):
            if key not in live:
                pool = self.pools.pop(key)
                pool.retired = True
                pool.close_idle()

    def _drop_unused(self) -> None:
        for key, pool in list(self.pools.items()):
            if not pool.waiters and not pool.connecting and pool.open == len(pool.idle):
                pool.close_idle()
                del self.pools[key]

    def close(self) -> None:
        for pool in self.pools.values():
            pool.close_idle()
        self.pools.clear()
