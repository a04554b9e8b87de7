"""Downstream side of the data path: the HTTP/1.1 listeners (outbound 15001, inbound 15006).

`DownstreamConnection` parses requests with httptools, turns each head into a `RequestHead`, asks
the listener's router for a `RouteDecision` and hands both to an `Exchange` (forwarder.py), which
streams the body up and the response back. Requests on one connection are answered in order
(HTTP/1.1 pipelining): a request whose predecessor is still being answered waits, body buffered,
and reading pauses while one waits.

Edges, as Envoy: a malformed request gets 400 and the connection closes; request headers over
`max_request_headers_kb` (Envoy's default 60 KiB) get 431 and close; a client that starts a request
and does not finish its headers within `header_timeout` gets 408 and is cut off (Envoy's
request_headers_timeout); a connection idle longer than `idle_timeout` is closed. One timer per
listener sweeps the deadlines, so a request costs no timer of its own.

A listener with `tunnels` (the sidecar's outbound one, which apps reach as HTTPS_PROXY) answers
`CONNECT host:port` with a TCP tunnel: once llhttp stops at the CONNECT head (HttpParserUpgrade)
and the requests before it are answered, the connection's transport and the bytes after the head go
to tunnel.py. A CONNECT whose authority is not `host:port` gets 400. Other listeners pass CONNECT
on as a request, as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import httptools

from sandbox.proxy import http1
from sandbox.proxy.accept import Acceptor, original_destination
from sandbox.proxy.decision import RequestHead, RouteDecision
from sandbox.proxy.downstream import Downstream
from sandbox.proxy.filterchain import PLAINTEXT, Accepted, ChainSelector
from sandbox.proxy.forwarder import Exchange, ForwardContext
from sandbox.proxy.record import RequestRecord
from sandbox.proxy.tcproute import parse_authority
from sandbox.proxy.tls import matches_names, peer_certificate, spiffe_ids, xfcc_element
from sandbox.proxy.tunnel import Tunnels
from sandbox.proxy.writes import Outbox, WriteBatch

_CHUNKED = "chunked"
_METHODS = {m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT")}

Router = Callable[[RequestHead], RouteDecision]

# Raw header name -> its lowercase text: clients send the same few names over and over. Names are client
# input, so the cache stops growing at a bound.
_HEADER_NAMES: dict[bytes, str] = {}


def _header_name(raw: bytes) -> str:
    name = raw.decode("latin-1").lower()
    if len(_HEADER_NAMES) < 4096:
        _HEADER_NAMES[raw] = name
    return name


@dataclass(frozen=True, slots=True)
class ListenerSettings:
    header_timeout: float = 10.0  # seconds to finish a request's headers once it started
    idle_timeout: float = 3600.0  # Envoy's HTTP connection manager default (1 h)
    max_request_headers_kb: int = 60  # Envoy's default max_request_headers_kb
    default_port: int = 80  # destination port when neither the URL, Host nor SO_ORIGINAL_DST says
    original_dst: bool = False  # read SO_ORIGINAL_DST (transparent capture) on accepted sockets


class _HeadersTooLarge(Exception):
    pass


def _merged(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """Headers with repeats joined: `,` as RFC 9110 allows, `; ` for cookie (RFC 6265)."""
    headers: dict[str, str] = {}
    for name, value in raw:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        old = headers.get(key)
        if old is None:
            headers[key] = text
        else:
            headers[key] = f"{old}; {text}" if key == "cookie" else f"{old},{text}"
    return headers


class DownstreamConnection(asyncio.Protocol, Downstream):
    """One client connection: HTTP/1.1 parsed with httptools, each request an Exchange."""

    __slots__ = (
        "accepted",
        "chunk_len",
        "client_cert",
        "closed",
        "connect_to",
        "deadline",
        "exchanges",
        "http10",
        "in_head",
        "keep_alive",
        "listener",
        "local_address",
        "mtls",
        "no_more",
        "original_dst",
        "outbox",
        "parser",
        "paused",
        "peer_ip",
        "peer_principal",
        "raw",
        "raw_size",
        "reading",
        "remote_address",
        "sni",
        "tls",
        "too_large",
        "transport",
        "tunnel_data",
        "url",
        "write_paused",
    )

    def __init__(self, listener: Listener, accepted: Accepted | None = None) -> None:
        self.listener = listener
        self.accepted = accepted  # what the listener learnt before us (None: a plain listener's)
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.outbox = Outbox(listener.writes)  # writes go at the end of the loop's pass
        self.url = b""
        self.raw: list[tuple[bytes, bytes]] = []
        self.chunk_len = 0
        self.raw_size = 0
        self.in_head = False
        self.keep_alive = True
        self.http10 = False
        # Answered in order; [0] is being answered. A list, not a deque: reading pauses while one
        # waits, so it holds two at most, and compiled, list operations are inlined.
        self.exchanges: list[Exchange] = []
        self.reading: Exchange | None = None  # whose request body is arriving
        self.closed = False
        self.no_more = False  # an upgrade or an error: no further requests on this connection
        self.paused = False
        self.peer_ip = ""
        self.remote_address = ""
        self.local_address = ""
        self.peer_principal = ""
        self.mtls = False
        self.tls = False
        self.sni = ""
        self.client_cert = ""
        self.original_dst: tuple[str, int] | None = None
        self.deadline = 0.0
        self.too_large = False
        self.write_paused = False  # the client reads slower than we write: upstreams must wait
        # A CONNECT the listener tunnels (host, port), and the bytes after its head while the requests
        # before it are still being answered
        self.connect_to: tuple[str, int] | None = None
        self.tunnel_data = b""

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (cast: uvloop's transports are not subclasses)
        self.transport = self.outbox.transport = cast(asyncio.Transport, transport)
        listener = self.listener
        listener.connections.add(self)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple):
            self.peer_ip = peer[0]
            self.remote_address = f"{peer[0]}:{peer[1]}"
        local = transport.get_extra_info("sockname")
        if isinstance(local, tuple):
            self.local_address = f"{local[0]}:{local[1]}"
        accepted = self.accepted
        if accepted is not None:
            self.original_dst = accepted.original_dst
            self.sni = accepted.sni
            self.tls = accepted.chain.context is not None
            if accepted.chain.mutual and not self._peer_identity(accepted, transport.get_extra_info("ssl_object")):
                self.no_more = True  # a certificate the chain verifies but whose names it refuses
                self.transport.abort()
                return
        elif listener.settings.original_dst:
            self.original_dst = original_destination(transport.get_extra_info("socket"))
        self.deadline = listener.loop.time() + listener.settings.idle_timeout

    def _peer_identity(self, accepted: Accepted, ssl_object: Any) -> bool:
        """Mutual TLS: the client's certificate passed the chain's CA (the handshake requires it);
        its SPIFFE ID is the source principal, never anything the client could say in a header.
        False when the chain wants names (a Gateway's subjectAltNames) the certificate lacks."""
        cert = peer_certificate(ssl_object)
        if not cert:
            return True
        names = accepted.chain.client_names
        if names and not matches_names(cert, names):
            return False
        self.mtls = True
        ids = spiffe_ids(cert)
        self.peer_principal = ids[0] if ids else ""
        self.client_cert = xfcc_element(accepted.chain.own_id, ssl_object)
        return True

    def data_received(self, data: bytes) -> None:
        if self.no_more:
            return
        self.chunk_len = len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            if self.connect_to is not None:  # a CONNECT: what follows its head is the tunnel's
                self._tunnel(data[int(upgrade.args[0]) :])
                return
            # Upgrade: the head went out as a plain request (upgrades are not proxied yet); nothing
            # after it is HTTP we can parse.
            self.no_more = True
            self.keep_alive = False
        except httptools.HttpParserError:
            self._reject(431 if self.too_large else 400)
            return
        if self.in_head:
            # Still inside a head: these bytes are all head. llhttp buffers a header in progress,
            # so this bounds memory even before a header completes.
            self.raw_size += len(data)
            if self.raw_size > self.listener.max_head_bytes + 8192:
                self._reject(431)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.outbox.close(flush=False)
        self.listener.connections.discard(self)
        exchanges = list(self.exchanges)
        self.exchanges.clear()
        self.reading = None
        for exchange in exchanges:
            exchange.downstream_lost()

    def pause_writing(self) -> None:
        # Remembered: the exchange answering next may not have its upstream yet (upstream_connected).
        self.write_paused = True
        if self.exchanges:
            self.exchanges[0].downstream_paused(True)

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.exchanges:
            self.exchanges[0].downstream_paused(False)

    # ------------------------------------------------------------------ httptools callbacks

    def on_message_begin(self) -> None:
        self.in_head = True
        self.raw_size = 0
        self.url = b""
        self.raw = []
        self.deadline = self.listener.loop.time() + self.listener.settings.header_timeout

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.raw.append((name, value))

    def on_headers_complete(self) -> None:
        self.in_head = False
        self.deadline = 0.0
        parser = self.parser
        raw = self.raw
        listener = self.listener
        # Envoy's max_request_headers_kb counts names and values; the head's own bytes bound that sum,
        # so the exact count is only needed for heads that could be over.
        limit = listener.max_head_bytes
        if self.raw_size + self.chunk_len > limit and sum(len(n) + len(v) for n, v in raw) > limit:
            self.too_large = True
            raise _HeadersTooLarge
        names = _HEADER_NAMES
        headers = {(names.get(name) or _header_name(name)): value.decode("latin-1") for name, value in raw}
        if len(headers) != len(raw):
            headers = _merged(raw)
        self.keep_alive = keep_alive = parser.should_keep_alive() and not self.no_more
        # An HTTP/1.0 client either closes or says `connection: keep-alive`: ask the (slow) version only then.
        self.http10 = (not keep_alive or "connection" in headers) and parser.get_http_version() == "1.0"
        raw_method = parser.get_method()
        method = _METHODS.get(raw_method) or raw_method.decode("latin-1")
        url = self.url
        if method == "CONNECT" and listener.tunnels is not None:
            self._connect_head(url)
            return
        port = 0
        if url[:1] == b"/" or url == b"*":
            path = url.decode("latin-1")
            authority = headers.get("host", "")
        else:
            # Any: httptools' stub types query and port as never None, and compiled code checks it
            parsed: Any
            try:
                parsed = httptools.parse_url(url)
            except httptools.HttpParserInvalidURLError:
                parsed = None
            if parsed is None or not parsed.host:
                if method != "CONNECT":
                    self._reject(400)
                    return
                path, authority = "", url.decode("latin-1")
            else:
                path = (parsed.path or b"/").decode("latin-1")
                if parsed.query is not None:
                    path = f"{path}?{parsed.query.decode('latin-1')}"
                host = parsed.host.decode("latin-1")
                if ":" in host:
                    host = f"[{host}]"
                authority = host if parsed.port is None else f"{host}:{parsed.port}"
                headers["host"] = authority  # RFC 9112 §3.2.2: the absolute-form target wins over Host
                port = parsed.port or 0
        if not port:
            port = listener.ports.get(authority, 0)
            if not port:
                port = http1.split_authority(authority, 0)[1]
                if len(listener.ports) < 4096:  # authorities are client input: bound the cache
                    listener.ports[authority] = port
            if not port:
                port = self.original_dst[1] if self.original_dst else listener.settings.default_port
        te = headers.get("transfer-encoding")
        chunked = te is not None and _CHUNKED in te.lower()
        has_body = chunked or headers.get("content-length", "0") not in ("0", "")
        if has_body and headers.get("expect", "").lower() == "100-continue":
            self.write(http1.CONTINUE)  # Envoy answers 100-continue itself and drops the expectation
        head = RequestHead(method, path, authority, headers, port)
        exchange = Exchange(self, listener.ctx, head, has_body, chunked, self.original_dst)
        if self.http10:
            exchange.http10 = True
        self.reading = exchange
        self.exchanges.append(exchange)
        if len(self.exchanges) == 1:
            self._dispatch(exchange)
        else:
            self.pause_reading(True)  # pipelined: answer the one before first

    def on_body(self, body: bytes) -> None:
        exchange = self.reading
        if exchange is not None:
            exchange.request_body(body)

    def on_message_complete(self) -> None:
        exchange = self.reading
        if exchange is not None:
            self.reading = None
            exchange.request_complete()

    # ------------------------------------------------------------------ CONNECT

    def _connect_head(self, url: bytes) -> None:
        """A CONNECT on a listener that tunnels: its authority must be `host:port`, else 400."""
        target = parse_authority(url.decode("latin-1"))
        if target is None:
            self._reject(400)
            return
        self.connect_to = target
        self.no_more = True  # nothing after this head is HTTP
        self.keep_alive = False

    def _tunnel(self, data: bytes) -> None:
        """The CONNECT head is complete: the connection becomes a tunnel once the requests before it
        are answered (reading waits meanwhile; `exchange_done` hands it over)."""
        if self.exchanges:
            self.tunnel_data = data
            self.pause_reading(True)
            return
        self._hand_over(data)

    def _hand_over(self, data: bytes) -> None:
        target = self.connect_to
        transport = self.transport
        tunnels = self.listener.tunnels
        if target is None or transport is None or tunnels is None or self.closed:
            return
        self.outbox.close(flush=True)  # the answers before the CONNECT go first
        self.closed = True  # this protocol is done: the transport is the tunnel's now
        self.transport = None
        self.listener.connections.discard(self)
        tunnels.open(transport, target[0], target[1], data, self.remote_address, self.local_address, self.paused)

    # ------------------------------------------------------------------ used by the exchange

    def _dispatch(self, exchange: Exchange) -> None:
        filters = self.listener.ctx.filters
        if filters is not None:  # authentication and authorization come before the router (filters.py)
            filters.run(exchange, self.listener.router)
            return
        try:
            decision = self.listener.router(exchange.head)
        except Exception:  # a routing bug must cost one request, not the connection or the process
            exchange.local_reply(500, "internal routing error", (), "internal_error")
            return
        exchange.start(decision)

    def write(self, data: bytes) -> None:
        self.outbox.write(data)

    def close(self) -> None:
        """Close after what was written (the transport sends what it holds, then closes)."""
        if self.transport is not None:
            self.outbox.close(flush=True)
            self.transport.close()

    def abort(self) -> None:
        """End the connection after an upstream reset mid-response (what was written still goes)."""
        if not self.closed:
            self.no_more = True
            self.close()

    def pause_reading(self, paused: bool) -> None:
        if paused == self.paused or self.closed or self.transport is None:
            return
        self.paused = paused
        if paused:
            self.transport.pause_reading()
        else:
            self.transport.resume_reading()

    def exchange_done(self, exchange: RequestRecord) -> None:
        """`exchange` has sent its whole response (and, unless closing, read its whole request)."""
        exchanges = self.exchanges
        if not exchanges or exchanges[0] is not exchange or self.closed:
            return
        exchanges.pop(0)
        if exchange.resp_close or (self.no_more and not exchanges):
            if self.connect_to is not None and not exchange.resp_close and not exchanges:
                self._hand_over(self.tunnel_data)  # a CONNECT waited for the requests before it
                return
            self.no_more = True
            self.close()
            return
        if exchanges:
            self._dispatch(exchanges[0])
            if len(exchanges) <= 1:
                self.pause_reading(False)
        else:
            self.pause_reading(False)
            self.deadline = self.listener.loop.time() + self.listener.settings.idle_timeout

    # ------------------------------------------------------------------ edges

    def _reject(self, status: int) -> None:
        """A request we cannot parse: answer `status` (if nothing else is being answered) and close."""
        self.no_more = True
        self.in_head = False
        if self.closed or self.transport is None:
            return
        exchanges = self.exchanges
        if not exchanges:
            self.write(http1.local_reply(status, close=True, server=self.listener.ctx.server_name))
            self.listener.protocol_error(self, status)
        elif len(exchanges) == 1 and not exchanges[0].resp_started:
            exchanges[0].downstream_error(status, "http1.codec_error")  # its body was malformed: answer, close
            return
        self.close()

    def drain(self) -> None:
        """No further requests on this connection: close it now if idle, else after the response."""
        self.no_more = True
        if not self.exchanges:
            self.close()
        else:
            for exchange in self.exchanges:
                exchange.resp_close = True

    def expire(self, now: float) -> None:
        """The sweep found this connection past its deadline."""
        if self.closed or self.transport is None:
            return
        self.deadline = 0.0
        if self.in_head and not self.exchanges:
            self.no_more = True
            self.write(
                http1.local_reply(408, "request header timeout", close=True, server=self.listener.ctx.server_name)
            )
            self.listener.protocol_error(self, 408)
            self.close()
        elif not self.exchanges:
            self.close()  # idle keep-alive connection


class Listener:
    """One listening socket and its connections; a single timer sweeps their deadlines.

    With `chains`, the listener may serve TLS: an Acceptor (accept.py) looks at each connection's
    first bytes and the selector chooses its transport before the HTTP codec reads anything."""

    def __init__(
        self,
        ctx: ForwardContext,
        router: Router,
        settings: ListenerSettings,
        loop: asyncio.AbstractEventLoop,
        writes: WriteBatch,
        on_protocol_error: Callable[[DownstreamConnection, int], None] | None = None,
        chains: ChainSelector | None = None,
        tunnels: Tunnels | None = None,
    ) -> None:
        self.ctx = ctx
        self.tunnels = tunnels  # CONNECT becomes a tunnel (the sidecar's outbound listener)
        self.chains = chains
        self.acceptor: Acceptor | None = None
        self.loop = loop
        self.writes = writes
        self.router = router
        self.settings = settings
        self.max_head_bytes = settings.max_request_headers_kb * 1024
        self.ports: dict[str, int] = {}  # authority -> its explicit port (0: none)
        self.connections: set[DownstreamConnection] = set()
        self.server: asyncio.Server | None = None
        self._on_protocol_error = on_protocol_error
        self._sweeper: asyncio.TimerHandle | None = None
        self._sweep_every = max(0.05, min(1.0, settings.header_timeout / 4))

    async def start(self, host: str, port: int) -> int:
        """Listen; returns the bound port (useful with port 0)."""
        if self.chains is not None:
            self.acceptor = Acceptor(
                self.loop,
                self.chains,
                lambda accepted: DownstreamConnection(self, accepted),
                self.settings.header_timeout,
                self.settings.original_dst,
            )
            bound = self.acceptor.start(host, port)
            self._sweeper = self.loop.call_later(self._sweep_every, self._sweep)
            return bound
        self.server = await self.loop.create_server(
            lambda: DownstreamConnection(self), host, port, reuse_address=True, backlog=1024
        )
        self._sweeper = self.loop.call_later(self._sweep_every, self._sweep)
        # Any: typeshed says a tuple, uvloop returns a list, and compiled code checks declared types
        server: Any = self.server
        return int(server.sockets[0].getsockname()[1])

    def _sweep(self) -> None:
        now = self.loop.time()
        for conn in list(self.connections):
            if conn.deadline and conn.deadline < now:
                conn.expire(now)
        self._sweeper = self.loop.call_later(self._sweep_every, self._sweep)

    def drain(self, keep: Callable[[Accepted], bool]) -> int:
        """Close the connections `keep` refuses now (a changed filter chain, as Envoy drains it):
        idle ones at once, busy ones after their current response. Returns how many."""
        drained = 0
        for conn in list(self.connections):
            if not keep(conn.accepted or Accepted(PLAINTEXT)):
                drained += 1
                conn.drain()
        return drained

    def protocol_error(self, conn: DownstreamConnection, status: int) -> None:
        if self._on_protocol_error is not None:
            self._on_protocol_error(conn, status)

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        if self.acceptor is not None:
            self.acceptor.close()
            self.acceptor = None
        if self.server is not None:
            self.server.close()
        for conn in list(self.connections):
            conn.close()
        if self.tunnels is not None:
            self.tunnels.close()
        if self.server is not None:
            await self.server.wait_closed()
            self.server = None
