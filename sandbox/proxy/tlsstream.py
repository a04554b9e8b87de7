"""TLS over a plain event-loop transport, OpenSSL's memory BIOs driven directly (compiled).

The sidecar's TLS connections (mesh mTLS both ways, gateway termination, DestinationRule
origination) run through this class instead of the event loop's own TLS transport. uvloop's
SSLProtocol reads every record into a fresh 256 KiB buffer, checks its flow-control states around
each call and goes through generic calls for each step; here one read of the socket decrypts
what it holds into one bytes object for the protocol, and one write encrypts and sends at once.
On the mesh hop this is what lets mutual TLS cost a few microseconds per request over plaintext
(benchmarks/proxy_bench.py rows (d), (f) and (f0)).

One object plays two parts: the protocol of the TCP transport (`connection_made`,
`data_received`, ...) and the transport of the HTTP protocol above it (`write`, `close`,
`get_extra_info("ssl_object")`, ...). The HTTP protocol is made once the handshake is done, or
given up front and told then (`connection_made`); `ready` resolves with the handshake's outcome.

As uvloop's: a TCP EOF without close_notify closes the connection (no half-close in TLS; the app
sees connection_lost, not eof_received); a received close_notify is the app's eof_received, then
the connection closes. Closing sends our close_notify first (as Envoy does) and gives the peer
30 s to take what is still queued; aborting does not. A connection that ends on a TLS error tells
the app why (connection_lost(exc)), so a body delimited by the close is never taken as whole. A
write that OpenSSL cannot make before reading (a TLS 1.2 server renegotiating) waits for that read.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable
from typing import Any

READ_SIZE = 65536  # plaintext per read call; a socket read holds at most a few records
SHUTDOWN_TIMEOUT = 30.0  # seconds a closing connection may take to send what it holds (uvloop's)


class TlsStream:
    __slots__ = (
        "app",
        "app_factory",
        "closing",
        "decrypt",
        "drain",
        "encrypt",
        "error",
        "feed",
        "incoming",
        "lost",
        "outgoing",
        "raw",
        "ready",
        "send",
        "shutdown_timer",
        "sslobj",
        "unsent",
    )

    def __init__(
        self,
        context: ssl.SSLContext,
        server_side: bool,
        server_hostname: str | None,
        app_factory: Callable[[], Any],
        ready: asyncio.Future[None],
    ) -> None:
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.sslobj: Any = context.wrap_bio(
            self.incoming, self.outgoing, server_side=server_side, server_hostname=server_hostname or None
        )
        # Bound once: looked up per record, each was a method lookup by name (a mesh context's
        # DirectSSLObject hands out OpenSSL's C methods themselves: tls.py).
        self.decrypt: Callable[[int], bytes] = self.sslobj.read
        self.encrypt: Callable[[bytes], int] = self.sslobj.write
        self.feed: Callable[[bytes], int] = self.incoming.write
        self.drain: Callable[[], bytes] = self.outgoing.read
        self.send: Callable[[bytes], None] = _unconnected
        self.app_factory = app_factory
        self.app: Any = None  # the protocol above, once the handshake is done
        self.raw: Any = None
        self.ready = ready
        self.closing = False
        self.lost = False
        self.error: Exception | None = None  # why we aborted: the app's connection_lost says so
        self.unsent: list[bytes] = []  # writes waiting for a read (a TLS 1.2 renegotiation)
        self.shutdown_timer: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------------ the TCP transport's protocol

    def connection_made(self, transport: Any) -> None:
        self.raw = transport
        self.send = transport.write
        self._handshake()

    def data_received(self, data: bytes) -> None:
        self.feed(data)
        if self.app is None:
            self._handshake()
        else:
            self._records()

    def eof_received(self) -> bool:
        if self.app is None:
            self._handshake_failed(ConnectionResetError("the peer closed the connection during the TLS handshake"))
        return False  # close; the app hears connection_lost

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = self.closing = True
        if self.shutdown_timer is not None:
            self.shutdown_timer.cancel()
        app = self.app
        if app is None:
            self._handshake_failed(exc or ConnectionResetError("connection lost during the TLS handshake"))
        else:
            # A TLS failure is not a clean close: a body delimited by the close must not pass as whole.
            app.connection_lost(exc or self.error)

    def pause_writing(self) -> None:
        if self.app is not None:
            self.app.pause_writing()

    def resume_writing(self) -> None:
        if self.app is not None:
            self.app.resume_writing()

    # ------------------------------------------------------------------ TLS

    def _handshake(self) -> None:
        try:
            self.sslobj.do_handshake()
        except ssl.SSLWantReadError:
            self._flush()
            return
        except (ssl.SSLError, OSError, ValueError) as exc:
            self._flush()  # the alert, so the peer learns why
            self._handshake_failed(exc)
            return
        self._flush()
        if self.ready.done():  # timed out or cancelled meanwhile: nobody waits for this connection
            self.abort()
            return
        app = self.app = self.app_factory()
        self.ready.set_result(None)
        app.connection_made(self)
        if self.incoming.pending and not self.closing:  # the peer's first data came with its Finished
            self._records()

    def _handshake_failed(self, exc: BaseException) -> None:
        if not self.ready.done():
            self.ready.set_exception(exc)
        self.closing = True
        if self.raw is not None and not self.lost:
            self.raw.close()

    def _records(self) -> None:
        incoming = self.incoming
        decrypt = self.decrypt
        data = b""
        parts: list[bytes] | None = None
        eof = False
        try:
            # Read while the BIO holds ciphertext: a read that finds only part of a record raises
            # SSLWantReadError, which costs more than asking. A read takes a whole record (READ_SIZE
            # exceeds TLS's 16 KiB limit), so OpenSSL never holds plaintext back between reads.
            while incoming.pending:
                chunk = decrypt(READ_SIZE)
                if not chunk:  # close_notify
                    eof = True
                    break
                if not data:
                    data = chunk
                elif parts is None:
                    parts = [data, chunk]
                else:
                    parts.append(chunk)
        except ssl.SSLWantReadError:
            pass
        except (ssl.SSLError, OSError, ValueError) as exc:  # a record that does not decrypt, ...
            self._fail(exc)
            return
        if self.unsent:  # the read they waited for came
            unsent, self.unsent = self.unsent, []
            for chunk in unsent:
                self.write(chunk)
        if self.outgoing.pending:  # post-handshake messages (key updates) answered while reading
            self._flush()
        if data and not self.closing:
            self.app.data_received(b"".join(parts) if parts is not None else data)
        if eof and not self.closing:
            self.app.eof_received()
            self.close()

    def _flush(self) -> None:
        if self.outgoing.pending and not self.lost:
            self.send(self.drain())

    # ------------------------------------------------------------------ the app's transport

    def write(self, data: bytes) -> None:
        if self.closing:
            return
        if self.unsent:
            self.unsent.append(data)
            return
        try:
            self.encrypt(data)
        except ssl.SSLWantReadError:  # a TLS 1.2 server renegotiating: write once its answer is read
            self.unsent.append(data)
            self._flush()
            return
        except (ssl.SSLError, OSError, ValueError) as exc:
            self._fail(exc)
            return
        self.send(self.drain())

    def _fail(self, exc: Exception) -> None:
        self.error = exc
        self.abort()

    def close(self) -> None:
        if self.closing:
            return
        self.closing = True
        with contextlib.suppress(ssl.SSLError, OSError, ValueError):
            self.sslobj.unwrap()  # queues our close_notify; the peer's need not be waited for
        self._flush()
        self.raw.close()
        if not self.lost:  # a peer that stops reading must not hold the connection (uvloop's 30 s)
            self.shutdown_timer = self.ready.get_loop().call_later(SHUTDOWN_TIMEOUT, self.abort)

    def abort(self) -> None:
        self.closing = True
        if self.raw is not None:
            self.raw.abort()

    def is_closing(self) -> bool:
        return self.closing

    def pause_reading(self) -> None:
        self.raw.pause_reading()

    def resume_reading(self) -> None:
        self.raw.resume_reading()

    def can_write_eof(self) -> bool:
        return False  # TLS has no half-close

    def write_eof(self) -> None:
        raise NotImplementedError("TLS connections have no half-close")

    def get_write_buffer_size(self) -> int:
        return int(self.raw.get_write_buffer_size())

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.raw.set_write_buffer_limits(high, low)

    def set_protocol(self, protocol: Any) -> None:
        self.app = protocol

    def get_protocol(self) -> Any:
        return self.app

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "ssl_object":
            return self.sslobj
        if name == "peercert":
            return self.sslobj.getpeercert()
        if name == "cipher":
            return self.sslobj.cipher()
        if name == "sslcontext":
            return self.sslobj.context
        return self.raw.get_extra_info(name, default)


def _unconnected(_data: bytes) -> None:
    raise RuntimeError("TlsStream: no transport yet")
