"""End-user tokens for tests: Istio's demo JWKS and tokens (tests/fixtures/jwt, with their license
note), tokens minted with Istio's demo key as its gen-jwt.py does, and forged ones."""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "jwt"
ISSUER = "testing@secure.istio.io"
KID = "DHFbpoIUqrY8t2zpA2qXfCmr5VO5ZEr4RzHU_-envvQ"
PRINCIPAL = f"{ISSUER}/{ISSUER}"  # request.auth.principal of Istio's demo tokens


def jwks() -> str:
    return (FIXTURES / "jwks.json").read_text()


def demo() -> str:
    """Istio's demo.jwt: valid until 2118, claims {"foo": "bar"}."""
    return (FIXTURES / "demo.jwt").read_text().strip()


def groups_scope() -> str:
    """Istio's groups-scope.jwt: groups [group1, group2], scope [scope1, scope2]."""
    return (FIXTURES / "groups-scope.jwt").read_text().strip()


def mint(expire: float = 3600, key: Any = None, kid: str = KID, **claims: Any) -> str:
    """A token signed with Istio's demo key (gen-jwt.py), valid for `expire` seconds (negative: expired)."""
    now = int(time.time())
    payload = {"iss": ISSUER, "sub": ISSUER, "iat": now, "exp": int(now + expire), **claims}
    return jwt.encode(payload, key if key is not None else _demo_key(), algorithm="RS256", headers={"kid": kid})


def forged(**claims: Any) -> str:
    """The demo token's claims, signed by someone else's key under the demo key's kid."""
    return mint(key=_other_key(), **claims)


@functools.cache
def _demo_key() -> bytes:
    return (FIXTURES / "key.pem").read_bytes()


@functools.cache
def _other_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)
