"""The sidecar's side of the push protocol (server: sandbox/control/push.py).

One WebSocket to the control plane, opened with this sidecar's identity and bootstrap token. Each
snapshot is handed to the sink; if the sink raises, the snapshot is NACKed with the error and the
sink keeps serving the previous one (xDS semantics). Certificates arrive on the same connection
and stay in memory. When the control plane goes away the sink keeps its last snapshot and the
subscription reconnects with jittered exponential backoff (0.1 s doubling to 5 s), reporting the
version it has so a restarted control plane resends only what changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import os
import random
import ssl
import tempfile
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp

log = logging.getLogger(__name__)

BACKOFF_BASE, BACKOFF_CAP = 0.1, 5.0
HEARTBEAT = 5.0
PUSH_PATH = "/v1/push"  # the control plane's endpoint (sandbox/control/push.py)
REFUSED = (4400, 4401)  # close codes for a bad hello or a token that does not match (no point hurrying back)


@dataclass(frozen=True)
class CertificateBundle:
    """The workload's identity material, as delivered (the SDS secret). Never written, never logged."""

    spiffe_id: str
    cert_chain: str
    private_key: str = field(repr=False)
    root_cert: str
    serial: str
    not_before: str
    not_after: str

    def ssl_context(self, server_side: bool) -> ssl.SSLContext:
        """An mTLS context for this identity: presents the cert, requires the peer's, trusts the mesh root.

        The peer's SPIFFE ID (URI SAN) is for the caller to check (authorization), so no host name
        check. `ssl` loads keys only from a path: on Linux an anonymous memory file keeps the key
        off disk; elsewhere a 0600 temp file exists only while it loads.
        """
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server_side else ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # Istio's minimum
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cadata=self.root_cert)
        material = (self.cert_chain + self.private_key).encode()
        if hasattr(os, "memfd_create"):
            fd = os.memfd_create("workload-cert", os.MFD_CLOEXEC)
            try:
                os.write(fd, material)
                ctx.load_cert_chain(f"/proc/self/fd/{fd}")
            finally:
                os.close(fd)
        else:  # pragma: no cover - macOS
            with tempfile.NamedTemporaryFile() as f:  # created 0600
                f.write(material)
                f.flush()
                ctx.load_cert_chain(f.name)
        return ctx


class SnapshotSink(Protocol):
    """What the proxy process implements. Raise from `on_snapshot` to reject (NACK) a snapshot; it
    may be a coroutine (opening listeners is), and the ACK waits for it."""

    def on_snapshot(self, payload: dict[str, Any]) -> Awaitable[None] | None: ...

    def on_certificate(self, bundle: CertificateBundle) -> None: ...


def backoff_delay(attempt: int, rng: random.Random, base: float = BACKOFF_BASE, cap: float = BACKOFF_CAP) -> float:
    """Equal jitter: half the exponential step fixed, half random, so a fleet does not reconnect in step."""
    step = min(cap, base * 2.0 ** min(attempt, 30))
    return step / 2 + rng.random() * step / 2


@dataclass(frozen=True)
class Identity:
    node: str  # unique per sidecar (a workload may have replicas)
    workload: str
    namespace: str
    service_account: str
    token: str = field(repr=False)


class Subscription:
    def __init__(
        self,
        url: str,
        identity: Identity,
        sink: SnapshotSink,
        *,
        rng: random.Random | None = None,
        heartbeat: float = HEARTBEAT,
    ) -> None:
        self.url = url
        self.identity = identity
        self._sink = sink
        self._rng = rng or random.Random()
        self._heartbeat = heartbeat
        self.version = ""  # the applied snapshot's version
        self.connected = False
        self.last_error = ""  # why the last connection ended, e.g. the server's refusal reason
        self.connects = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> asyncio.Task[None]:
        self._task = asyncio.create_task(self.run(), name=f"subscription:{self.identity.node}")
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
            me = self.identity
            await ws.send_json(
                {
                    "type": "hello",
                    "node": me.node,
                    "workload": me.workload,
                    "namespace": me.namespace,
                    "service_account": me.service_account,
                    "token": me.token,
                    "version": self.version,
                }
            )
            reason = "connection lost"
            while True:
                msg = await ws.receive()
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    if msg.type is aiohttp.WSMsgType.CLOSE:
                        reason = str(msg.extra or "no reason given")
                    elif msg.type is aiohttp.WSMsgType.ERROR:
                        reason = str(msg.data)
                    break
                data = json.loads(msg.data)
                if not isinstance(data, dict):
                    raise ValueError("the control plane sent something that is not a message")
                kind = data.get("type")
                if kind == "hello":
                    welcomed = self.connected = True
                    self.connects += 1
                elif kind == "snapshot":
                    await ws.send_json(await self._apply_snapshot(data))
                elif kind == "certificate":
                    await ws.send_json(self._apply_certificate(data))
            await ws.close()
            self.last_error = f"closed by the control plane ({ws.close_code}): {reason}"
            if ws.close_code in REFUSED:
                log.error("the control plane refused this sidecar: %s", reason)
        return welcomed

    async def _apply_snapshot(self, data: dict[str, Any]) -> dict[str, Any]:
        nonce, version = data.get("nonce", ""), data.get("version", "")
        try:
            payload = data["snapshot"]
            if not isinstance(payload, dict):
                raise ValueError("the snapshot is not a JSON object")
            applied = self._sink.on_snapshot(payload)
            if inspect.isawaitable(applied):
                await applied
        except Exception as exc:  # any rejection becomes a NACK; the sink keeps its previous snapshot
            error = str(exc) or type(exc).__name__
            log.warning("rejected snapshot %s: %s", version, error)
            return {"type": "nack", "nonce": nonce, "version": self.version, "error": error}
        self.version = version
        return {"type": "ack", "nonce": nonce, "version": version}

    def _apply_certificate(self, data: dict[str, Any]) -> dict[str, Any]:
        nonce = data.get("nonce", "")
        try:
            bundle = CertificateBundle(
                data["spiffe_id"],
                data["cert_chain"],
                data["private_key"],
                data["root_cert"],
                data["serial"],
                data["not_before"],
                data["not_after"],
            )
            self._sink.on_certificate(bundle)
        except Exception as exc:
            error = str(exc) or type(exc).__name__
            log.warning("rejected a certificate: %s", error)  # the message, never the key
            return {"type": "nack", "nonce": nonce, "error": error}
        return {"type": "ack", "nonce": nonce}
