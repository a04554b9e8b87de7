"""The push server: one long-lived WebSocket per sidecar, xDS-style ACK/NACK per nonce.

The messages are sandbox/xds/messages.py's (the client side is sandbox/proxy/subscription.py):
a Hello, then a SnapshotPush whenever this proxy's snapshot version changes and a CertificatePush
on connect and before the certificate's half-life, each answered by an Ack or a Nack.

A hello whose token does not match the identity it claims is refused: the socket closes with code
4401 and a reason naming the identity, and `refused` counts it. As in xDS, a NACK leaves the
sidecar on its previous version and the server does not resend the rejected version; the next
change supersedes it. Per-proxy state (sent, acked, last ACK, NACK reason) feeds proxy-status.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from aiohttp import WSMsgType, web

from sandbox.control.ca import rotation_time
from sandbox.xds import messages
from sandbox.xds.certificate import WorkloadCertificate
from sandbox.xds.identity import ProxyIdentity
from sandbox.xds.messages import (
    CLOSE_BAD_HELLO,
    CLOSE_SUPERSEDED,
    CLOSE_UNAUTHENTICATED,
    PUSH_PATH,
    Ack,
    CertificatePush,
    Hello,
    Nack,
    SnapshotPush,
    Welcome,
)

log = logging.getLogger(__name__)

HELLO_TIMEOUT = 10.0
HEARTBEAT = 5.0  # WebSocket pings: a dead peer is noticed within ~2 heartbeats
MAX_DISCONNECTED = 256

# (identity, node) -> (version, the snapshot as data or as its JSON text), or None for "nothing to send"
Payload = dict[str, Any] | str
SnapshotSource = Callable[[ProxyIdentity, str], "tuple[str, Payload] | None"]
CertificateSource = Callable[[ProxyIdentity], WorkloadCertificate]
Authenticator = Callable[[ProxyIdentity, str], bool]


class SyncState(StrEnum):
    SYNCED = "SYNCED"
    STALE = "STALE"  # sent but not acknowledged yet, or not sent yet
    NACK = "NACK"
    DISCONNECTED = "DISCONNECTED"


@dataclass
class ProxyStatus:
    node: str
    identity: ProxyIdentity
    connected: bool = True
    connected_at: float = 0.0  # wall-clock seconds
    version_current: str = ""  # what this proxy should run now
    version_sent: str = ""
    nonce_sent: str = ""
    version_acked: str = ""
    last_ack: float | None = None  # wall-clock seconds
    nack_version: str = ""
    nack_reason: str = ""
    pushes: int = 0
    cert_serial: str = ""
    cert_expiry: str = ""
    pending_since: float | None = field(default=None, repr=False)  # monotonic: earliest unacked change

    @property
    def state(self) -> SyncState:
        if not self.connected:
            return SyncState.DISCONNECTED
        if self.version_current and self.version_acked == self.version_current:
            return SyncState.SYNCED
        if self.nack_version and self.nack_version == self.version_sent:
            return SyncState.NACK
        return SyncState.STALE

    def to_json(self, now: float | None = None) -> dict[str, Any]:
        now = time.time() if now is None else now
        return {
            "proxy": self.node,
            "workload": self.identity.workload,
            "namespace": self.identity.namespace,
            "serviceAccount": self.identity.service_account,
            "state": self.state.value,
            "connected": self.connected,
            "versionCurrent": self.version_current,
            "versionSent": self.version_sent,
            "versionAcked": self.version_acked,
            "sinceLastAck": None if self.last_ack is None else round(now - self.last_ack, 3),
            "nackVersion": self.nack_version,
            "nackReason": self.nack_reason,
            "pushes": self.pushes,
            "certSerial": self.cert_serial,
            "certExpiry": self.cert_expiry,
        }


@dataclass
class PushStats:
    connections: int = 0  # accepted, ever
    refused: int = 0  # bad hello or wrong token
    pushes: int = 0
    acks: int = 0
    nacks: int = 0
    certificates: int = 0


@dataclass
class _Connection:
    ws: web.WebSocketResponse
    status: ProxyStatus
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    cert_due: bool = True
    cert_nonce: str = ""
    latest: tuple[str, Payload] | None = None
    changed_at: float | None = None
    rotation: asyncio.TimerHandle | None = None


class PushServer:
    def __init__(
        self,
        snapshots: SnapshotSource,
        authenticate: Authenticator,
        certificates: CertificateSource | None = None,
        *,
        on_converged: Callable[[float], None] | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        heartbeat: float = HEARTBEAT,
    ) -> None:
        self._snapshots = snapshots
        self._authenticate = authenticate
        self._certificates = certificates
        self._on_converged = on_converged
        self._rng = rng or random.Random()
        self._clock, self._wall = clock, wall
        self._heartbeat = heartbeat
        self._connections: dict[str, _Connection] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self.proxies: dict[str, ProxyStatus] = {}
        self.stats = PushStats()
        self.ack_listeners: list[Callable[[ProxyStatus], None]] = []  # e.g. `sandbox wait --synced`
        # called when a change turns out not to concern a proxy: it is current without a push
        self.current_listeners: list[Callable[[ProxyStatus], None]] = []
        self._messages: dict[str, tuple[bytes, str]] = {}  # version -> (push frame, nonce), this change
        self._refreshing: asyncio.Task[None] | None = None
        self._refresh_since = 0.0

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get(PUSH_PATH, self.handle)
        app.on_shutdown.append(self._shutdown)

    @property
    def connected(self) -> int:
        return len(self._connections)

    def push_all(self, changed_at: float | None = None) -> None:
        """The config changed (first seen at `changed_at`, monotonic): re-check every proxy's version.

        Every connected proxy turns STALE here, synchronously, so proxy-status never calls a proxy
        SYNCED on a version that is already outdated. The new versions are then computed one
        workload at a time, yielding to the event loop in between, so the first workload's
        sidecars get their push (and decode it, in their own processes) while the next workloads
        compile; the sends happen in each connection's task.
        """
        changed_at = self._clock() if changed_at is None else changed_at
        if self._refreshing is not None and not self._refreshing.done():
            self._refreshing.cancel()  # superseded: this round re-checks every proxy anyway
            changed_at = min(changed_at, self._refresh_since)
        self._refresh_since = changed_at
        self._messages.clear()  # a new change: fresh nonces
        connections = sorted(self._connections.values(), key=lambda c: (c.status.identity.workload, c.status.node))
        for conn in connections:
            conn.status.version_current = ""
        self._refreshing = asyncio.get_running_loop().create_task(self._refresh_all(connections, changed_at))

    async def _refresh_all(self, connections: list[_Connection], changed_at: float) -> None:
        workload = None
        for conn in connections:
            if conn.status.identity.workload != workload:
                if workload is not None:
                    await asyncio.sleep(0)  # let the sends for the workload just compiled go out
                workload = conn.status.identity.workload
            if self._connections.get(conn.status.node) is conn:
                self._refresh(conn, changed_at)

    def _refresh(self, conn: _Connection, changed_at: float) -> None:
        try:
            found = self._snapshots(conn.status.identity, conn.status.node)
        except Exception:  # one proxy's broken snapshot must not stop the others' pushes
            log.exception("%s: building the snapshot failed; it keeps the one it has", conn.status.node)
            found = None
        if found is not None and found[0] != conn.status.version_sent and conn.changed_at is None:
            conn.changed_at = changed_at  # the earliest change this proxy has not been sent yet
        conn.latest = found
        status = conn.status
        status.version_current = found[0] if found else ""
        conn.wake.set()
        if status.state is SyncState.SYNCED:  # nothing new for this proxy: it is current already
            for listener in self.current_listeners:
                listener(status)

    def sync_status(self) -> list[dict[str, Any]]:
        now = self._wall()
        return [self.proxies[node].to_json(now) for node in sorted(self.proxies)]

    # -- one connection --------------------------------------------------------------------------
    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=self._heartbeat, max_msg_size=16 * 1024 * 1024)
        await ws.prepare(request)
        hello = await self._read_hello(ws)
        if hello is None:
            return ws
        identity, node, version = hello.identity, hello.node, hello.version
        old = self._connections.pop(node, None)
        if old is not None:  # closing waits for the peer's reply: not on this handler's path
            log.warning("%s: a new connection replaces the current one (two sidecars with one node name?)", node)
            closing = asyncio.create_task(
                old.ws.close(code=CLOSE_SUPERSEDED, message=b"superseded by a newer connection")
            )
            self._background.add(closing)
            closing.add_done_callback(self._background.discard)
        status = ProxyStatus(node, identity, connected_at=self._wall())
        if version:  # a sidecar that kept its snapshot across our restart: nothing to resend if current
            status.version_sent = status.version_acked = version
            status.last_ack = status.connected_at
        self.proxies[node] = status
        conn = _Connection(ws, status, cert_due=self._certificates is not None)
        self._connections[node] = conn
        self.stats.connections += 1
        sender = asyncio.create_task(self._sender(conn), name=f"push:{node}")
        try:
            await ws.send_str(messages.encode(Welcome(status.version_sent)))
            self._refresh(conn, self._clock())
            await self._receive(conn)
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sender
            if conn.rotation:
                conn.rotation.cancel()
            if self._connections.get(node) is conn:
                del self._connections[node]
                status.connected = False
                self._forget_old_proxies()
        return ws

    def _forget_old_proxies(self) -> None:
        """Keep the last MAX_DISCONNECTED gone proxies for proxy-status; nodes that churn must not leak."""
        gone = [s for s in self.proxies.values() if not s.connected]
        for status in sorted(gone, key=lambda s: s.connected_at)[: max(0, len(gone) - MAX_DISCONNECTED)]:
            del self.proxies[status.node]

    async def _read_hello(self, ws: web.WebSocketResponse) -> Hello | None:
        try:
            msg = await ws.receive(timeout=HELLO_TIMEOUT)
            hello = messages.from_proxy(msg.data) if msg.type is WSMsgType.TEXT else None
            if not isinstance(hello, Hello):
                raise ValueError("the first message must be a hello")
        except (TimeoutError, ValueError) as exc:
            self.stats.refused += 1
            await ws.close(code=CLOSE_BAD_HELLO, message=f"bad hello: {exc}".encode()[:120])
            return None
        me = hello.identity
        if not self._authenticate(me, hello.token):
            self.stats.refused += 1
            reason = f"bootstrap token does not match {me.workload} ({me.namespace}/{me.service_account})"
            log.warning("refused a sidecar: %s", reason)
            await ws.close(code=CLOSE_UNAUTHENTICATED, message=reason.encode()[:120])
            return None
        return hello

    async def _sender(self, conn: _Connection) -> None:
        """Wakes on every change; sends only what differs from what this proxy was last sent."""
        try:
            while not conn.ws.closed:
                await conn.wake.wait()
                conn.wake.clear()
                if conn.cert_due and self._certificates is not None:
                    conn.cert_due = False
                    await self._send_certificate(conn)
                await self._send_snapshot(conn)
        except ConnectionError as exc:  # the peer went away mid-send; the receive loop ends the connection
            log.info("%s: send failed: %s", conn.status.node, exc)

    async def _send_snapshot(self, conn: _Connection) -> None:
        status = conn.status
        if conn.latest is None or conn.latest[0] == status.version_sent:
            return
        version, payload = conn.latest
        message, nonce = self._message(version, payload)
        status.version_sent, status.nonce_sent = version, nonce
        if status.pending_since is None:
            status.pending_since = conn.changed_at if conn.changed_at is not None else self._clock()
        conn.changed_at = None
        status.pushes += 1
        self.stats.pushes += 1
        await conn.ws.send_frame(message, WSMsgType.TEXT)

    def _message(self, version: str, payload: Payload) -> tuple[bytes, str]:
        """The push frame of `version`, built and UTF-8 encoded once per change for every proxy on it:
        with many proxies, copying and encoding the same snapshot per connection dominates a push.
        The proxies of one change share its nonce (replies are matched per connection)."""
        found = self._messages.get(version)
        if found is None:
            if len(self._messages) >= 4096:
                self._messages.clear()
            nonce = secrets.token_hex(8)
            found = self._messages[version] = (messages.encode(SnapshotPush(version, nonce, payload)).encode(), nonce)
        return found

    async def _send_certificate(self, conn: _Connection) -> None:
        assert self._certificates is not None
        try:
            cert = self._certificates(conn.status.identity)
        except Exception:  # no certificate this time; the proxy keeps the one it has
            log.exception("%s: issuing a certificate failed", conn.status.node)
            return
        conn.cert_nonce = secrets.token_hex(8)
        conn.status.cert_serial = cert.serial_hex
        conn.status.cert_expiry = cert.not_after.isoformat()
        self.stats.certificates += 1
        await conn.ws.send_str(messages.encode(CertificatePush(conn.cert_nonce, cert)))
        due = rotation_time(cert.issued_at, cert.not_after, self._rng)
        delay = max(0.0, (due - dt.datetime.now(dt.UTC)).total_seconds())
        conn.rotation = asyncio.get_running_loop().call_later(delay, self._rotate, conn)

    def _rotate(self, conn: _Connection) -> None:
        conn.cert_due = True
        conn.wake.set()

    async def _receive(self, conn: _Connection) -> None:
        status = conn.status
        async for msg in conn.ws:
            if msg.type is not WSMsgType.TEXT:
                continue
            try:
                reply = messages.from_proxy(msg.data)
            except ValueError as exc:
                log.warning("%s: ignoring a malformed message (%s)", status.node, exc)
                continue
            if isinstance(reply, Hello):
                continue  # only the first message may be a hello
            if reply.nonce == conn.cert_nonce:
                if isinstance(reply, Nack):
                    log.warning("%s rejected its certificate: %s", status.node, reply.error)
                continue
            if reply.nonce != status.nonce_sent:
                continue  # a reply to a push that a newer one superseded
            if isinstance(reply, Ack):
                self.stats.acks += 1
                status.version_acked, status.last_ack = status.version_sent, self._wall()
                status.nack_version = status.nack_reason = ""
                if status.pending_since is not None and self._on_converged is not None:
                    self._on_converged(max(0.0, self._clock() - status.pending_since))
                status.pending_since = None
                for listener in self.ack_listeners:
                    listener(status)
            else:
                self.stats.nacks += 1
                status.nack_version, status.nack_reason = status.version_sent, reply.error
                status.pending_since = None
                log.warning("%s rejected version %s: %s", status.node, status.version_sent, status.nack_reason)

    async def _shutdown(self, _app: web.Application) -> None:
        if self._refreshing is not None:
            self._refreshing.cancel()
        for conn in list(self._connections.values()):
            await conn.ws.close(code=1001, message=b"control plane shutting down")
