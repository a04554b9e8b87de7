"""Who a proxy is: one type for the snapshot's node, the bootstrap token and the push hello.

Identity is the workload, its namespace and its service account; equality and hashing use those
three only. The rest (SPIFFE ID, labels, app, version, kind) is metadata the control plane fills
in when it compiles the proxy's snapshot (Envoy's node metadata): a hello carries none of it and
still names the same proxy.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ProxyIdentity:
    workload: str  # the Compose service, e.g. reviews-v2
    namespace: str
    service_account: str
    spiffe_id: str = field(default="", compare=False)
    labels: dict[str, str] = field(default_factory=dict, compare=False)
    app: str = field(default="", compare=False)
    version: str = field(default="", compare=False)
    kind: str = field(default="sidecar", compare=False)  # or "router" for a gateway (Envoy's node type)

    def token_message(self) -> bytes:
        """What a bootstrap token signs. Length-prefixed fields: ("a/b", "c") and ("a", "b/c") must
        not sign the same bytes."""
        parts = (self.workload, self.namespace, self.service_account)
        return b"sandbox-bootstrap-v1" + b"".join(len(p.encode()).to_bytes(4, "big") + p.encode() for p in parts)
