"""A byte relay between two connections: a CONNECT tunnel's today, a TCP listener's later.

Each connection has a `RelaySide` as its protocol; what one side reads is written to the other
side's transport at once, so the only buffers are asyncio's (and the kernel's). Back-pressure as
Envoy's TCP proxy: when a transport's write buffer passes its high-water mark (`pause_writing`),
the other side stops reading until it drains (`resume_writing`). Half-close: a FIN from one side
goes on to the other (`write_eof`) and the relay ends once both sides have sent theirs; a transport
that cannot half-close (TLS) ends the relay at the first FIN. When either connection is lost, the
other is closed after what it still has to write (`transport.close()` flushes).

The relay counts the bytes each side read and tells its `RelayOwner` once, when it ends (the owner
reports telemetry and closes what the relay could not flush: `abort`).
"""

from __future__ import annotations

import asyncio
from typing import cast

from mypy_extensions import trait


@trait
class RelayOwner:
    """Who a relay reports to (a tunnel): its first bytes from downstream, and its end."""

    def relay_first_bytes(self, data: bytes) -> None:
        raise NotImplementedError

    def relay_ended(self, relay: Relay, error: bool) -> None:
        raise NotImplementedError


class RelaySide(asyncio.Protocol):
    """One connection of a relay. Bytes read before the peer is linked (a tunnel's client while
    its upstream connects) are held, and reading is paused by the owner until then."""

    __slots__ = ("eof", "held", "lost", "peer", "reading", "received", "relay", "sniff", "transport")

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.peer: RelaySide | None = None
        self.transport: asyncio.Transport | None = None
        self.received = 0  # bytes read from this connection
        self.eof = False  # this connection sent its FIN
        self.lost = False
        self.reading = True
        self.sniff = False  # hand the first bytes read to the owner (the tunnel reads an SNI there)
        self.held: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # (cast: uvloop's are not subclasses)

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        if self.sniff:
            self.sniff = False
            self.relay.owner.relay_first_bytes(data)
        peer = self.peer
        if peer is not None and peer.transport is not None and not peer.lost:
            peer.transport.write(data)
        elif peer is None:
            self.held.append(data)

    def eof_received(self) -> bool | None:
        self.eof = True
        peer = self.peer
        if peer is None or peer.lost or peer.transport is None:
            return True  # the owner decides once the peer is linked (or the relay ends)
        if peer.eof or not peer.transport.can_write_eof():
            self.relay.end(False)
            return True
        peer.transport.write_eof()
        return True  # keep this transport: it still writes what the peer sends

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.relay.end(exc is not None)

    def pause_writing(self) -> None:
        peer = self.peer
        if peer is not None:
            peer.set_reading(False)

    def resume_writing(self) -> None:
        peer = self.peer
        if peer is not None:
            peer.set_reading(True)

    def set_reading(self, reading: bool) -> None:
        transport = self.transport
        if reading == self.reading or transport is None or self.lost or self.eof:
            return
        self.reading = reading
        if reading:
            transport.resume_reading()
        else:
            transport.pause_reading()

    def close(self, abort: bool) -> None:
        transport = self.transport
        if transport is not None and not self.lost:
            if abort:
                transport.abort()
            else:
                transport.close()


class Relay:
    """Two sides, linked once both connections exist (`link`); `end` runs once."""

    __slots__ = ("downstream", "ended", "owner", "upstream")

    def __init__(self, owner: RelayOwner) -> None:
        self.owner = owner
        self.downstream = RelaySide(self)
        self.upstream = RelaySide(self)
        self.ended = False

    def link(self) -> None:
        """Both connections are open: pass on what either sent meanwhile, and read both."""
        down, up = self.downstream, self.upstream
        down.peer, up.peer = up, down
        for side in (down, up):
            held, side.held = side.held, []
            peer = side.peer
            if held and peer is not None and peer.transport is not None:
                peer.transport.write(b"".join(held))
        for side in (down, up):
            if side.eof and not self.ended:
                side.eof = False
                side.eof_received()  # a FIN that came before the link
        down.set_reading(True)

    def end(self, error: bool) -> None:
        """Either side was lost or both half-closed: close both (after what they still have to
        write), and tell the owner once."""
        if self.ended:
            return
        self.ended = True
        self.downstream.close(False)
        self.upstream.close(False)
        self.owner.relay_ended(self, error)

    def abort(self) -> None:
        """Close both connections now, dropping what they have not written."""
        self.downstream.close(True)
        self.upstream.close(True)

    @property
    def closed(self) -> bool:
        """Both connections are gone (or never opened)."""
        down, up = self.downstream, self.upstream
        return (down.lost or down.transport is None) and (up.lost or up.transport is None)
