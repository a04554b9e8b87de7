"""Bootstrap tokens: how a sidecar proves which workload it is before it gets that workload's cert.

A token is HMAC-SHA256 over the identity (workload, namespace, service account) under a per-mesh
secret kept beside the CA (`mesh-secret`, 0600). `sandbox up` renders each sidecar's token into its
environment; the control plane recomputes it and compares in constant time, so no workload can
claim another's identity (and so obtain its certificate) without the secret.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path

from sandbox.control.ca import ensure_private_dir, write_private
from sandbox.xds.identity import ProxyIdentity

SECRET_FILE = "mesh-secret"
SECRET_BYTES = 32


class TokenAuthority:
    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("the mesh secret must be at least 16 bytes")
        self._secret = secret

    def __repr__(self) -> str:
        return "TokenAuthority(<secret>)"

    @classmethod
    def load_or_create(cls, state_dir: str | Path) -> TokenAuthority:
        path = ensure_private_dir(state_dir) / SECRET_FILE
        if not path.exists():
            write_private(path, secrets.token_bytes(SECRET_BYTES))
        return cls(path.read_bytes())

    def issue(self, identity: ProxyIdentity) -> str:
        return hmac.new(self._secret, identity.token_message(), hashlib.sha256).hexdigest()

    def verify(self, identity: ProxyIdentity, token: str) -> bool:
        return hmac.compare_digest(self.issue(identity).encode(), token.encode("utf-8", "replace"))
