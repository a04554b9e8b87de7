"""Mirrors: a fire-and-forget shadow copy of a request (Istio `mirror`/`mirrors`).

The copy goes to the mirror cluster with `-shadow` appended to its Host, after the whole request
is buffered; its response is read and dropped and its failures are ignored, so the primary never
waits for it. A mirror that cannot get a connection at once (circuit breaker) is skipped.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from sandbox.proxy.balancing import Host
from sandbox.proxy.cluster import ClusterState
from sandbox.proxy.upstream import OVERFLOW, UpstreamConnection, UpstreamSink

if TYPE_CHECKING:
    from sandbox.proxy.forwarder import Exchange

MIRROR_TIMEOUT = 30.0  # a shadow request never lives longer than this


def shadow_authority(authority: str) -> str:
    """Envoy's mirror Host: `-shadow` appended to the host, before any port."""
    host, sep, port = authority.rpartition(":")
    if sep and port.isdigit() and not host.endswith(":"):
        return f"{host}-shadow:{port}"
    return f"{authority}-shadow"


class Mirror(UpstreamSink):
    """A fire-and-forget shadow copy of a request: response discarded, failures ignored."""

    __slots__ = ("cluster", "conn", "head", "host", "pool", "timer", "upstreams")

    def __init__(self, exchange: Exchange, cluster: ClusterState) -> None:
        self.cluster = cluster
        self.conn: UpstreamConnection | None = None
        self.pool: object | None = None
        self.host: Host | None = None
        self.timer: asyncio.TimerHandle | None = None
        decision = exchange.decision
        assert decision is not None
        original = exchange.up_head.decode("latin-1")
        authority = decision.authority or exchange.head.authority
        shadow = original.replace(f"\r\nhost: {authority}\r\n", f"\r\nhost: {shadow_authority(authority)}\r\n", 1)
        body = b"".join(exchange.body or ())
        if exchange.request_chunked:
            shadow = shadow.replace("transfer-encoding: chunked\r\n", f"content-length: {len(body)}\r\n", 1)
        self.head = shadow.encode("latin-1") + b"x-envoy-attempt-count: 1\r\n\r\n" + body
        self.timer = exchange.ctx.loop.call_later(decision.timeout or MIRROR_TIMEOUT, self._expire)
        self.upstreams = exchange.ctx.upstreams

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
        conn.write(self.head)

    def upstream_head(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        pass

    def upstream_body(self, data: bytes) -> None:
        pass

    def upstream_done(self) -> None:
        conn = self.conn
        self.conn = None
        if conn is not None:
            conn.pool.release(conn, conn.parser.should_keep_alive())
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
            self.pool.cancel(self)  # type: ignore[attr-defined]
            self.pool = None
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def _end(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
