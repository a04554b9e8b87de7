"""The push protocol's messages: JSON text frames over one WebSocket per proxy (xDS semantics).

    proxy  -> server  Hello {node, workload, namespace, service_account, token, version}
    server -> proxy   Welcome {version}  (sent as type "hello")
    server -> proxy   SnapshotPush {version, nonce, snapshot}, whenever the proxy's version changes
    server -> proxy   CertificatePush {nonce, <certificate fields>}, on connect and before half-life
    proxy  -> server  Ack {nonce, version} | Nack {nonce, version (still applied), error}

A NACK leaves the proxy on its previous version; a reply whose nonce is not the latest one sent
answers a superseded push and is ignored. Each side decodes only what the other may send
(`from_proxy`, `from_server`), and anything else is a ValueError that names what is wrong.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sandbox.xds.certificate import WorkloadCertificate
from sandbox.xds.identity import ProxyIdentity

PUSH_PATH = "/v1/push"
# WebSocket close codes: a bad hello, a token that does not match, a newer connection for the node
CLOSE_BAD_HELLO, CLOSE_UNAUTHENTICATED, CLOSE_SUPERSEDED = 4400, 4401, 4409


@dataclass(frozen=True)
class Hello:
    node: str  # unique per proxy (a workload may have replicas)
    identity: ProxyIdentity
    token: str = field(repr=False)
    version: str = ""  # the snapshot version it runs ("" if none): a restarted server resends only changes


@dataclass(frozen=True)
class Welcome:
    version: str  # what the server believes the proxy runs


@dataclass(frozen=True)
class SnapshotPush:
    version: str
    nonce: str
    # The snapshot's data (the proxy decodes it: a snapshot it cannot decode is NACKed), or on the
    # server's side its JSON text, encoded once per change for every proxy on that version.
    snapshot: Any


@dataclass(frozen=True)
class CertificatePush:
    nonce: str
    certificate: WorkloadCertificate


@dataclass(frozen=True)
class Ack:
    nonce: str
    version: str = ""  # empty for a certificate


@dataclass(frozen=True)
class Nack:
    nonce: str
    version: str  # the version still applied
    error: str


class MessageError(ValueError):
    """A message that cannot be read; `nonce` is set when it could be, so the reply can NACK it."""

    def __init__(self, message: str, nonce: str = "") -> None:
        super().__init__(message)
        self.nonce = nonce


ProxyMessage = Hello | Ack | Nack
ServerMessage = Welcome | SnapshotPush | CertificatePush


def encode(message: ProxyMessage | ServerMessage) -> str:
    if isinstance(message, Hello):
        me = message.identity
        data: dict[str, Any] = {
            "type": "hello",
            "node": message.node,
            "workload": me.workload,
            "namespace": me.namespace,
            "service_account": me.service_account,
            "token": message.token,
            "version": message.version,
        }
    elif isinstance(message, Welcome):
        data = {"type": "hello", "version": message.version}
    elif isinstance(message, SnapshotPush):
        head = json.dumps({"type": "snapshot", "version": message.version, "nonce": message.nonce})
        snapshot = message.snapshot
        text = snapshot if isinstance(snapshot, str) else json.dumps(snapshot, separators=(",", ":"))
        return f'{head[:-1]}, "snapshot": {text}}}'  # the snapshot's text as it is: no second encoding
    elif isinstance(message, CertificatePush):
        data = {"type": "certificate", "nonce": message.nonce, **message.certificate.to_data()}
    elif isinstance(message, Ack):
        data = {"type": "ack", "nonce": message.nonce, "version": message.version}
    else:
        data = {"type": "nack", "nonce": message.nonce, "version": message.version, "error": message.error}
    return json.dumps(data)


def _object(text: str | bytes) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        raise ValueError("the message is not JSON") from None
    if not isinstance(data, dict):
        raise ValueError("the message is not a JSON object")
    return data


def _strings(data: dict[str, Any], *names: str, required: int = 0) -> list[str]:
    """The named fields as strings; the first `required` must be non-empty."""
    values = [data.get(name, "") for name in names]
    for i, (name, value) in enumerate(zip(names, values, strict=True)):
        if not isinstance(value, str):
            raise ValueError(f"`{name}` must be a string")
        if i < required and not value:
            raise ValueError(f"`{name}` is missing")
    return values


def from_proxy(text: str | bytes) -> ProxyMessage:
    """What the server reads: a hello, then ACKs and NACKs."""
    data = _object(text)
    kind = data.get("type")
    if kind == "hello":
        workload, namespace, service_account, token, node, version = _strings(
            data, "workload", "namespace", "service_account", "token", "node", "version", required=4
        )
        return Hello(node or workload, ProxyIdentity(workload, namespace, service_account), token, version)
    if kind == "ack":
        nonce, version = _strings(data, "nonce", "version")
        return Ack(nonce, version)
    if kind == "nack":
        nonce, version, error = _strings(data, "nonce", "version", "error")
        return Nack(nonce, version, error[:1000])
    raise ValueError(f"unknown message type {str(kind)[:40]!r}")


def from_server(text: str | bytes) -> ServerMessage:
    """What a proxy reads: a welcome, snapshot pushes and certificate pushes. A certificate that
    cannot be read raises MessageError with its nonce; a snapshot is decoded by whoever applies it."""
    data = _object(text)
    kind = data.get("type")
    if kind == "hello":
        (version,) = _strings(data, "version")
        return Welcome(version)
    if kind == "snapshot":
        nonce, version = _strings(data, "nonce", "version")
        return SnapshotPush(version, nonce, data.get("snapshot"))
    if kind == "certificate":
        (nonce,) = _strings(data, "nonce")
        try:
            return CertificatePush(nonce, WorkloadCertificate.from_data(data))
        except ValueError as exc:
            raise MessageError(str(exc), nonce) from None
    raise ValueError(f"unknown message type {str(kind)[:40]!r}")
