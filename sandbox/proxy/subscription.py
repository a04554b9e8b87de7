"""The sidecar's side of the push protocol (messages: sandbox/xds/messages.py; server: control/push.py).

One WebSocket to the control plane, opened with this sidecar's Hello (identity and bootstrap
token). Each snapshot is handed to the sink; if the sink raises, the snapshot is NACKed with the
error and the sink keeps serving the previous one (xDS semantics). Certificates arrive on the same
connection and stay in memory. When the control plane goes away the sink keeps its last snapshot
and the subscription reconnects with jittered exponential backoff (0.1 s doubling to 5 s),
reporting the version it has so a restarted control plane resends only what changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random
from collections.abc import Awaitable
from typing import Any, Protocol

import aiohttp

from sandbox.xds import messages
from sandbox.xds.certificate import WorkloadCertificate
from sandbox.xds.messages import (
    CLOSE_BAD_HELLO,
    CLOSE_UNAUTHENTICATED,
    Ack,
    CertificatePush,
    Hello,
    MessageError,
    Nack,
    SnapshotPush,
    Welcome,
)

log = logging.getLogger(__name__)

BACKOFF_BASE, BACKOFF_CAP = 0.1, 5.0
HEARTBEAT = 5.0
REFUSED = (CLOSE_BAD_HELLO, CLOSE_UNAUTHENTICATED)  # no point hurrying back


class SnapshotSink(Protocol):
    """What the proxy process implements. Raise from `on_snapshot` to reject (NACK) a snapshot; it
    may be a coroutine (opening listeners is), and the ACK waits for it."""

    def on_snapshot(self, payload: dict[str, Any]) -> Awaitable[None] | None: ...

    def on_certificate(self, certificate: WorkloadCertificate) -> None: ...


def backoff_delay(attempt: int, rng: random.Random, base: float = BACKOFF_BASE, cap: float = BACKOFF_CAP) -> float:
    """Equal jitter: half the exponential step fixed, half random, so a fleet does not reconnect in step."""
    step = min(cap, base * 2.0 ** min(attempt, 30))
    return step / 2 + rng.random() * step / 2


class Subscription:
    def __init__(
        self,
        url: str,
        hello: Hello,
        sink: SnapshotSink,
        *,
        rng: random.Random | None = None,
        heartbeat: float = HEARTBEAT,
    ) -> None:
        self.url = url
        self.hello = hello  # its version is filled in on each connect
        self._sink = sink
        self._rng = rng or random.Random()
        self._heartbeat = heartbeat
        self.version = ""  # the applied snapshot's version
        self.connected = False
        self.last_error = ""  # why the last connection ended, e.g. the server's refusal reason
        self.connects = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> asyncio.Task[None]:
        self._task = asyncio.create_task(self.run(), name=f"subscription:{self.hello.node}")
        return self._task

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def run(self) -> None:
        """Stay subscribed until cancelled."""
        attempt = 0
        async with aiohttp.ClientSession() as session:
            while True:
                try:
                    if await self._session(session):
                        attempt = 0
                except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
                    self.last_error = f"{type(exc).__name__}: {exc}"
                except Exception as exc:  # a sidecar must never stop reconnecting; say why, try again
                    log.exception("subscription error")
                    self.last_error = f"{type(exc).__name__}: {exc}"
                finally:
                    self.connected = False
                delay = backoff_delay(attempt, self._rng)
                attempt += 1
                log.info("control plane unavailable (%s); retrying in %.2fs", self.last_error, delay)
                await asyncio.sleep(delay)

    async def _session(self, session: aiohttp.ClientSession) -> bool:
        """One connection; True if the server welcomed us (so backoff starts over)."""
        welcomed = False
        async with session.ws_connect(self.url, heartbeat=self._heartbeat, max_msg_size=0) as ws:
            hello = self.hello
            await ws.send_str(messages.encode(Hello(hello.node, hello.identity, hello.token, self.version)))
            reason = "connection lost"
            while True:
                msg = await ws.receive()
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    if msg.type is aiohttp.WSMsgType.CLOSE:
                        reason = str(msg.extra or "no reason given")
                    elif msg.type is aiohttp.WSMsgType.ERROR:
                        reason = str(msg.data)
                    break
                try:
                    message = messages.from_server(msg.data)
                except MessageError as exc:  # a certificate we cannot read: say so, keep the one we have
                    log.warning("rejected a certificate: %s", exc)  # the message, never the key
                    await ws.send_str(messages.encode(Nack(exc.nonce, "", str(exc))))
                    continue
                if isinstance(message, Welcome):
                    welcomed = self.connected = True
                    self.connects += 1
                elif isinstance(message, SnapshotPush):
                    await ws.send_str(messages.encode(await self._apply_snapshot(message)))
                elif isinstance(message, CertificatePush):
                    await ws.send_str(messages.encode(self._apply_certificate(message)))
            await ws.close()
            self.last_error = f"closed by the control plane ({ws.close_code}): {reason}"
            if ws.close_code in REFUSED:
                log.error("the control plane refused this sidecar: %s", reason)
        return welcomed

    async def _apply_snapshot(self, push: SnapshotPush) -> Ack | Nack:
        try:
            if not isinstance(push.snapshot, dict):
                raise ValueError("the snapshot is not a JSON object")
            applied = self._sink.on_snapshot(push.snapshot)
            if inspect.isawaitable(applied):
                await applied
        except Exception as exc:  # any rejection becomes a NACK; the sink keeps its previous snapshot
            error = str(exc) or type(exc).__name__
            log.warning("rejected snapshot %s: %s", push.version, error)
            return Nack(push.nonce, self.version, error)
        self.version = push.version
        return Ack(push.nonce, push.version)

    def _apply_certificate(self, push: CertificatePush) -> Ack | Nack:
        try:
            self._sink.on_certificate(push.certificate)
        except Exception as exc:
            error = str(exc) or type(exc).__name__
            log.warning("rejected a certificate: %s", error)  # the message, never the key
            return Nack(push.nonce, "", error)
        return Ack(push.nonce)
