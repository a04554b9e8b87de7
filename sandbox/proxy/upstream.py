"""Upstream side of the data path: HTTP/1.1 connections and one connection pool per endpoint.

Cluster logic (hosts, balancer, circuit breaker, outlier detection) is cluster.py's; this module
adds the sockets: one `EndpointPool` per (cluster, host). The pool follows Envoy's HTTP/1 pool
(circuitbreaker.py explains the order): reuse an idle connection, else wait as a pending request
while a connection opens. Requests never pipeline on one upstream connection; a connection goes
back to the idle list only after a complete exchange.

A connection talks to whoever currently uses it through the `UpstreamSink` callbacks, so response
bytes reach the downstream connection in the same callback, with no task switch. Both sides write
at the end of the loop's pass (writes.py).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import cast

import httptools

from sandbox.proxy.balancing import Host
from sandbox.proxy.cluster import ClusterState
from sandbox.proxy.writes import Outbox, WriteBatch

# Failure reasons, worded as Envoy's reset reasons in local reply bodies.
CONNECTION_FAILURE = "connection failure"
CONNECTION_TERMINATION = "connection termination"
PROTOCOL_ERROR = "protocol error"
OVERFLOW = "overflow"


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


class UpstreamSink:
    """The user of an upstream connection: the exchange being forwarded, or a mirror.

    A base class, not a Protocol: compiled, a call through a class is a direct (vtable) call, and
    these run several times per request."""

    __slots__ = ()

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


class UpstreamConnection(asyncio.Protocol):
    """One HTTP/1.1 client connection; parses responses with httptools and feeds its sink.

    The response headers reach the sink lowercased and already without those in `drop` (hop-by-hop
    ones, and whatever else the sink replaces), filtered as llhttp hands them over."""

    __slots__ = (
        "chunked",
        "closed",
        "drop",
        "got_data",
        "has_length",
        "head_request",
        "headers",
        "informational",
        "outbox",
        "parser",
        "pool",
        "requests",
        "sink",
        "transport",
        "until_close",
    )

    def __init__(self, pool: EndpointPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.outbox = Outbox(pool.writes)
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


class EndpointPool:
    """Connections to one host of one cluster: idle ones (reused last-in first-out) and waiters.

    Limits come from the cluster's circuit breaker (cluster-wide, as in Envoy); `state` is the
    cluster's current ClusterState, refreshed on every acquire so a new snapshot takes effect.
    """

    __slots__ = ("connecting", "host", "idle", "loop", "open", "retired", "state", "waiters", "writes")

    def __init__(self, state: ClusterState, host: Host, loop: asyncio.AbstractEventLoop, writes: WriteBatch) -> None:
        self.state = state
        self.host = host
        self.loop = loop
        self.writes = writes
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
        per_connection = self.state.breaker.limits.max_requests_per_connection  # 0: unlimited
        if not reusable or conn.closed or self.retired or (per_connection and conn.requests >= per_connection):
            conn.close()
            return
        if self.waiters:
            waiter = self.waiters.popleft()
            self.state.breaker.release_pending()
            # Not inline: we are inside the previous exchange's parser callback.
            self.loop.call_soon(_hand_over, waiter, conn)
            return
        self.idle.append(conn)

    def cancel(self, waiter: UpstreamSink) -> None:
        """`waiter` gave up (timeout, downstream gone) before it got a connection."""
        try:
            self.waiters.remove(waiter)
        except ValueError:
            return
        self.state.breaker.release_pending()

    def connection_closed(self, conn: UpstreamConnection) -> None:
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

    def _open_connection(self) -> None:
        breaker = self.state.breaker
        if not breaker.try_connection():
            if self.open or self.connecting:
                return  # waiters keep waiting for a busy connection to free up (upstream_cx_overflow)
            # Envoy's tryCreateNewConnection: at the cluster's limit because of other hosts' connections,
            # a pool with none of its own still opens one, or its waiters could never be served.
            breaker.connections += 1
        self.connecting += 1
        self.loop.create_task(self._connect())

    async def _connect(self) -> None:
        host = self.host
        timed_out = False
        conn: UpstreamConnection | None = None
        timeout = self.state.config.traffic_policy.connection_pool.connect_timeout
        try:
            async with asyncio.timeout(timeout):
                _, conn = await self.loop.create_connection(lambda: UpstreamConnection(self), host.ip, host.port)
        except (OSError, TimeoutError, ValueError, UnicodeError) as exc:
            timed_out = isinstance(exc, TimeoutError)
        self.connecting -= 1
        if conn is None:
            self.state.breaker.release_connection()
            self.state.connect_failed(host, timed_out)
            # As Envoy's pool: a failed connect fails the waiters that no other connection will serve.
            while self.waiters and len(self.waiters) > self.connecting + (self.open - len(self.idle)):
                waiter = self.waiters.popleft()
                self.state.breaker.release_pending()
                waiter.upstream_failed(CONNECTION_FAILURE)
            return
        self.open += 1
        if self.waiters:
            waiter = self.waiters.popleft()
            self.state.breaker.release_pending()
            waiter.upstream_connected(conn)
        elif not conn.closed:
            self.idle.append(conn)


def _hand_over(waiter: UpstreamSink, conn: UpstreamConnection) -> None:
    if conn.closed:
        waiter.upstream_failed(CONNECTION_TERMINATION)
    else:
        waiter.upstream_connected(conn)


class Upstreams:
    """Every endpoint pool of the proxy, keyed by (cluster, host address).

    Pools outlive snapshots: a cluster that keeps its name and host keeps its warm connections.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.writes = WriteBatch(loop)  # every connection's writes of this pass, upstream and downstream
        self.pools: dict[tuple[str, str], EndpointPool] = {}

    def pool(self, state: ClusterState, host: Host) -> EndpointPool:
        key = (state.name, host.address)
        pool = self.pools.get(key)
        if pool is None:
            if len(self.pools) > 4096:  # passthrough destinations are open-ended
                self._drop_unused()
            pool = self.pools[key] = EndpointPool(state, host, self.loop, self.writes)
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
