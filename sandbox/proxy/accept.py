"""Accepting connections as Envoy's listener filters do: look first, then choose the transport.

A listener that may serve TLS accepts each socket itself and peeks at its first bytes (MSG_PEEK:
they stay in the kernel for whoever reads next), as Envoy's tls_inspector does: a TLS ClientHello
and its SNI, or plaintext (clienthello.py). The listener's `ChainSelector` (filterchain.py) then
chooses a TLS context to handshake with, plaintext, or nothing (the connection is reset). The
socket then becomes an event-loop transport (with TLS when chosen) driving the codec's protocol. A
later codec (HTTP/2, raw TCP) is chosen at the same point: by ALPN after the handshake, or by the
first bytes.

Bounds, for hostile or broken clients: a client that sends nothing, or half a ClientHello, is closed
after `timeout` (Envoy's listener_filters_timeout), and the TLS handshake has the same bound. Bytes
that only start a TLS record are looked at again every few milliseconds rather than in a loop, as
they stay readable until read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import struct
from collections.abc import Callable
from typing import cast

from sandbox.proxy.clienthello import MAX_PEEK, Verdict, inspect
from sandbox.proxy.filterchain import Accepted, ChainSelector
from sandbox.proxy.tlsstream import TlsStream

log = logging.getLogger(__name__)

SO_ORIGINAL_DST = 80  # linux/netfilter_ipv4.h: the pre-REDIRECT destination of a captured socket
RECHECK = 0.005  # seconds between looks at a ClientHello that has not fully arrived
ACCEPTS_PER_WAKE = 64

ProtocolFactory = Callable[[Accepted], asyncio.Protocol]


def original_destination(sock: socket.socket | None) -> tuple[str, int] | None:
    """The address an iptables REDIRECT rewrote, or None when the socket was not redirected."""
    if sock is None or sock.family != socket.AF_INET:
        return None
    try:
        raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
    except OSError:
        return None
    port = struct.unpack_from("!H", raw, 2)[0]
    ip = socket.inet_ntoa(raw[4:8])
    local = sock.getsockname()
    if (ip, port) == (local[0], local[1]):
        return None  # not redirected: connected to us directly
    return ip, port


def reset(sock: socket.socket) -> None:
    """Close with a TCP RST (SO_LINGER 0): the client sees `connection reset by peer`."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class _Pending:
    """An accepted socket whose first bytes have not told us what it speaks yet."""

    __slots__ = ("deadline", "fd", "original_dst", "port", "recheck", "sock")

    def __init__(self, sock: socket.socket, port: int, original_dst: tuple[str, int] | None) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.port = port
        self.original_dst = original_dst
        self.deadline: asyncio.TimerHandle | None = None
        self.recheck: asyncio.TimerHandle | None = None


class Acceptor:
    """The accept side of one listening socket that inspects connections before their codec."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        selector: ChainSelector,
        factory: ProtocolFactory,
        timeout: float,
        original_dst: bool = False,
    ) -> None:
        self.loop = loop
        self.selector = selector
        self.factory = factory
        self.timeout = timeout
        self.original_dst = original_dst
        self.sock: socket.socket | None = None
        self.port = 0
        self.pending: dict[int, _Pending] = {}
        self.handshakes: set[asyncio.Task[None]] = set()
        # Counters, for the admin stats (Envoy's listener and ssl stats)
        self.refused = 0  # no filter chain matched (a plaintext client of a STRICT port)
        self.handshake_failures = 0
        self.timeouts = 0

    def start(self, host: str, port: int) -> int:
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(1024)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self.sock = sock
        self.port = sock.getsockname()[1]
        self.loop.add_reader(sock.fileno(), self._accept)
        return self.port

    def close(self) -> None:
        if self.sock is not None:
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None
        for pending in list(self.pending.values()):
            self._drop(pending)
        for task in self.handshakes:
            task.cancel()

    # ------------------------------------------------------------------ accept and look

    def _accept(self) -> None:
        assert self.sock is not None
        for _ in range(ACCEPTS_PER_WAKE):
            try:
                sock, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of descriptors, ...: the next wake tries again
                log.warning("accept failed on port %d: %s", self.port, exc)
                return
            sock.setblocking(False)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            dst = original_destination(sock) if self.original_dst else None
            pending = _Pending(sock, dst[1] if dst else self.port, dst)
            self.pending[pending.fd] = pending
            pending.deadline = self.loop.call_later(self.timeout, self._expire, pending)
            self.loop.add_reader(pending.fd, self._look, pending)

    def _look(self, pending: _Pending) -> None:
        try:
            data = pending.sock.recv(MAX_PEEK, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(pending)
            return
        if not data:  # closed before saying anything
            self._drop(pending)
            return
        verdict, sni = inspect(data)
        if verdict is Verdict.NEED_MORE:
            self.loop.remove_reader(pending.fd)
            pending.recheck = self.loop.call_later(RECHECK, self._watch, pending)
            return
        self._forget(pending)
        tls = verdict is Verdict.TLS
        chain = self.selector.select(tls, sni, pending.port)
        if chain is None:
            self.refused += 1
            reset(pending.sock)
            return
        accepted = Accepted(chain, sni, pending.original_dst)
        context = chain.context if tls else None
        task = self.loop.create_task(self._connect(pending.sock, accepted, context))
        self.handshakes.add(task)
        task.add_done_callback(self.handshakes.discard)

    def _watch(self, pending: _Pending) -> None:
        pending.recheck = None
        if pending.fd in self.pending:
            self.loop.add_reader(pending.fd, self._look, pending)

    def _expire(self, pending: _Pending) -> None:
        pending.deadline = None
        self.timeouts += 1
        self._drop(pending)

    def _forget(self, pending: _Pending) -> None:
        if self.pending.pop(pending.fd, None) is None:
            return
        if pending.recheck is None:
            self.loop.remove_reader(pending.fd)
        else:
            pending.recheck.cancel()
        if pending.deadline is not None:
            pending.deadline.cancel()

    def _drop(self, pending: _Pending) -> None:
        self._forget(pending)
        pending.sock.close()

    # ------------------------------------------------------------------ hand over

    async def _connect(self, sock: socket.socket, accepted: Accepted, context: ssl.SSLContext | None) -> None:
        factory = self.factory
        stream: TlsStream | None = None
        try:
            if context is None:
                await self.loop.connect_accepted_socket(lambda: factory(accepted), sock)
            else:
                ready: asyncio.Future[None] = self.loop.create_future()
                stream = TlsStream(context, True, None, lambda: factory(accepted), ready)
                await self.loop.connect_accepted_socket(lambda: cast(asyncio.Protocol, stream), sock)
                async with asyncio.timeout(self.timeout):
                    await ready
        except (OSError, TimeoutError, ValueError) as exc:  # ssl.SSLError is an OSError
            self.handshake_failures += 1
            log.debug("handshake failed on port %d: %s", self.port, exc)
            if stream is not None:
                stream.abort()
            sock.close()  # (the transport closed it already when it had taken it: then a no-op)
        except asyncio.CancelledError:  # the listener closes: so does a connection still handshaking
            if stream is not None:
                stream.abort()
            sock.close()
            raise
