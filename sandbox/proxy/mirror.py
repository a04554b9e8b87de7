"""Mirrors: a fire-and-forget shadow copy of a request (Istio `mirror`/`mirrors`).

The copy goes to the mirror cluster with `-shadow` appended to its Host, after the whole request
is buffered; its response is read and dropped and its failures are ignored, so the primary never
waits for it. A mirror that cannot get a connection at once (circuit breaker) is skipped.
"""

from __future__ import annotations

from sandbox.proxy.balancing import Host
from sandbox.proxy.cluster import ClusterState
from sandbox.proxy.decision import shadow_authority
from sandbox.proxy.timers import Timer, Timers
from sandbox.proxy.upstream import OVERFLOW, EndpointPool, UpstreamConnection, Upstreams, UpstreamSink

MIRROR_TIMEOUT = 30.0  # a shadow request never lives longer than this


def shadow_request(up_head: bytes, authority: str, body: list[bytes] | None, chunked: bool) -> bytes:
    """The whole shadow request: the primary's upstream head with the Host shadowed (and a chunked
    body sent with its length, as it is all here), then the body."""
    original = up_head.decode("latin-1")
    shadow = original.replace(f"\r\nhost: {authority}\r\n", f"\r\nhost: {shadow_authority(authority)}\r\n", 1)
    data = b"".join(body or ())
    if chunked:
        shadow = shadow.replace("transfer-encoding: chunked\r\n", f"content-length: {len(data)}\r\n", 1)
    return shadow.encode("latin-1") + b"x-envoy-attempt-count: 1\r\n\r\n" + data


class Mirror(UpstreamSink):
    """A fire-and-forget shadow copy of a request: response discarded, failures ignored."""

    def __init__(
        self, cluster: ClusterState, upstreams: Upstreams, timers: Timers, request: bytes, timeout: float | None
    ) -> None:
        self.cluster = cluster
        self.upstreams = upstreams
        self.request = request
        self.conn: UpstreamConnection | None = None
        self.pool: EndpointPool | None = None
        self.host: Host | None = None
        self.timer: Timer | None = timers.call_later(timeout or MIRROR_TIMEOUT, self._expire)

    def start(self) -> None:
        host = self.cluster.pick(None, "")
        if host is None:
            self._end()
            return
        self.host = host
        pool = self.upstreams.pool(self.cluster, host)
        got = pool.acquire(self)
        if got is None:
            self.pool = pool
        elif got is OVERFLOW:
            self._end()
        else:
            assert isinstance(got, UpstreamConnection)
            self.upstream_connected(got)

    def upstream_connected(self, conn: UpstreamConnection) -> None:
        self.pool = None
        if self.timer is None:
            conn.pool.release(conn, True)
            return
        self.conn = conn
        conn.start(self, False)
        conn.write(self.request)

    def upstream_head(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        pass

    def upstream_body(self, data: bytes) -> None:
        pass

    def upstream_done(self) -> None:
        conn = self.conn
        self.conn = None
        if conn is not None:
            conn.pool.release(conn, conn.keep_alive())
        self._end()

    def upstream_failed(self, reason: str) -> None:
        self.conn = None
        self.pool = None
        self._end()

    def upstream_paused(self, paused: bool) -> None:
        pass

    def _expire(self) -> None:
        self.timer = None
        if self.pool is not None:
            self.pool.cancel(self)
            self.pool = None
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def _end(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
