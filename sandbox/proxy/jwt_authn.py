"""RequestAuthentication in the data path: Envoy's jwt_authn filter as Istio configures it. Compiled.

Istio gives each jwtRule Envoy's `requires_any: [provider, allow_missing]`: a request without a
token passes (with no request principal), a request whose token fails is answered 401 with
jwt_verify_lib's words as the body (403 for `Audiences in Jwt are not allowed`), and a verified
token gives the request principal `<iss>/<sub>` and its claims to authorization and routing.
Envoy's checks, in its order (envoy authenticator.cc, google/jwt_verify_lib):
  parse (three base64url parts, JSON header with a supported `alg`, JSON payload), issuer (one of
  the providers reading the location the token came from), time (`exp`, `nbf`, 60 s of clock
  skew), audiences, then the signature against the JWKS keys matching its `kid` and `alg`.
Every token a request carries must pass. A verified token is removed from its header unless
`forwardOriginalToken`; `outputPayloadToHeader` and `outputClaimToHeaders` are written, and the
client's own values of those headers are dropped first. Signatures are checked with PyJWT's
algorithms (on `cryptography`); verified tokens are cached, their time still checked on each use.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Callable, Iterable
from typing import Any

from sandbox.xds.access import JwtProvider

CLOCK_SKEW = 60  # seconds (jwt_verify_lib kClockSkewInSecond)
CACHE_SIZE = 1024  # verified tokens kept (Envoy's jwt_cache default is 100 per provider)
MAX_URI = 256  # Envoy's MaximumUriLength for the WWW-Authenticate realm
DEFAULT_HEADER, DEFAULT_PREFIX, DEFAULT_PARAM = "authorization", "Bearer ", "access_token"
DETAILS = "jwt_authn_access_denied{%s}"

# jwt_verify_lib's status texts (src/status.cc): the 401 body Envoy answers with
BAD_FORMAT = "Jwt is not in the form of Header.Payload.Signature"
HEADER_PARSE = "Jwt header is an invalid Base64url input or an invalid JSON"
BAD_ALG = "Jwt header [alg] field is not a string"
ALG_NOT_IMPLEMENTED = "Jwt header [alg] field value is invalid"
BAD_KID = "Jwt header [kid] field is not a string"
PAYLOAD_PARSE = "Jwt payload is an invalid Base64 or an invalid JSON"
SIGNATURE_PARSE = "Jwt signature is an invalid Base64"
UNKNOWN_ISSUER = "Jwt issuer is not configured"
NOT_YET_VALID = "Jwt not yet valid"
EXPIRED = "Jwt is expired"
AUDIENCE = "Audiences in Jwt are not allowed"
VERIFICATION = "Jwt verification fails"
KID_ALG = "Jwks doesn't have key to match kid or alg from Jwt"
NO_KEYS = "Jwks doesn't have any valid public key"
FETCH_FAILED = "Jwks remote fetch is failed"

# alg -> (kty, EC curve) as jwt_verify_lib pairs them; anything else (`none` too) is not implemented
ALGORITHMS = {
    **{f"RS{n}": ("RSA", "") for n in (256, 384, 512)},
    **{f"PS{n}": ("RSA", "") for n in (256, 384, 512)},
    **{f"HS{n}": ("oct", "") for n in (256, 384, 512)},
    "ES256": ("EC", "secp256r1"),
    "ES384": ("EC", "secp384r1"),
    "ES512": ("EC", "secp521r1"),
    "EdDSA": ("OKP", ""),
}
_VERIFIERS: dict[str, Any] = {}  # PyJWT's algorithms, filled on first use (_algorithms)
_JWT_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=")
_B64URL = str.maketrans("-_", "+/")
HEADER, PARAM, COOKIE = 0, 1, 2


class Key:
    def __init__(self, kid: str, alg: str, kty: str, curve: str, key: Any) -> None:
        self.kid = kid
        self.alg = alg
        self.kty = kty
        self.curve = curve
        self.key = key


def _algorithms() -> Any:
    """PyJWT's algorithms module, imported when a sidecar first has keys to read: it pulls in
    cryptography (~10 MB of a sidecar's memory), which a proxy without RequestAuthentication never
    needs."""
    from jwt import algorithms

    if not _VERIFIERS:
        _VERIFIERS.update(algorithms.get_default_algorithms())
    return algorithms


def parse_jwks(text: str) -> list[Key]:
    """The usable public keys of a JSON Web Key Set (bad ones are skipped, as jwt_verify_lib does)."""
    jwa = _algorithms()
    try:
        data = json.loads(text) if text else None
    except ValueError:
        return []
    raw = data.get("keys") if isinstance(data, dict) else None
    keys: list[Key] = []
    for jwk in raw if isinstance(raw, list) else []:
        if not isinstance(jwk, dict):
            continue
        kty = jwk.get("kty")
        kid, alg = jwk.get("kid", ""), jwk.get("alg", "")
        reader: Any = {"RSA": jwa.RSAAlgorithm, "EC": jwa.ECAlgorithm, "oct": jwa.HMACAlgorithm}.get(str(kty))
        if kty == "OKP":
            reader = jwa.OKPAlgorithm
        if reader is None or not isinstance(kid, str) or not isinstance(alg, str):
            continue
        try:
            key = reader.from_jwk(jwk)
        except Exception:  # PyJWT's InvalidKeyError, or a malformed number inside
            continue
        if kty != "oct" and not hasattr(key, "verify") and hasattr(key, "public_key"):
            key = key.public_key()  # a private JWK: its public half verifies
        curve = getattr(getattr(key, "curve", None), "name", "") if kty == "EC" else ""
        keys.append(Key(kid, alg, str(kty), curve, key))
    return keys


class Provider:
    def __init__(self, config: JwtProvider) -> None:
        self.config = config
        self.issuer = config.issuer
        self.audiences = {_audience(a) for a in config.audiences}
        self.keys = parse_jwks(config.jwks)
        self.no_keys = FETCH_FAILED if not config.jwks and config.jwks_uri else NO_KEYS
        self.remove_token = not config.forward_original_token
        self.outputs = [h.header.lower() for h in config.output_claim_to_headers]
        if config.output_payload_to_header:
            self.outputs.append(config.output_payload_to_header.lower())


class Location:
    """Where tokens are looked for, and the issuers whose providers read there."""

    def __init__(self, kind: int, name: str, prefix: str) -> None:
        self.kind = kind
        self.name = name
        self.prefix = prefix
        self.issuers: set[str] = set()


class Token:
    def __init__(self, text: str, location: Location) -> None:
        self.text = text
        self.location = location


class Verified:
    """A token that passed: its provider, payload and time bounds (kept in the cache)."""

    def __init__(self, provider: Provider, payload: dict[str, Any], segment: str) -> None:
        self.provider = provider
        self.payload = payload
        self.segment = segment  # the payload as sent (outputPayloadToHeader)
        self.exp = _number(payload.get("exp"))
        self.nbf = _number(payload.get("nbf"))
        self.principal = f"{payload.get('iss', '')}/{payload.get('sub', '')}"


class Outcome:
    """A request that carried tokens: all verified (`failure` "") or the first failure's text."""

    def __init__(self, failure: str = "", verified: Verified | None = None) -> None:
        self.failure = failure
        self.verified = verified

    @property
    def status(self) -> int:
        return 403 if self.failure == AUDIENCE else 401

    @property
    def details(self) -> str:
        return DETAILS % self.failure.replace(" ", "_")


class JwtAuthenticator:
    def __init__(self, configs: Iterable[JwtProvider], clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.providers = [Provider(c) for c in configs]
        self.by_issuer: dict[str, Provider] = {}
        for p in self.providers:
            self.by_issuer.setdefault(p.issuer, p)  # Envoy: the first provider with the issuer
        locations: dict[tuple[int, str, str], Location] = {}
        for p in self.providers:
            for kind, name, prefix in _locations(p.config):
                location = locations.get((kind, name, prefix))
                if location is None:
                    location = locations[(kind, name, prefix)] = Location(kind, name, prefix)
                location.issuers.add(p.issuer)
        self.headers = [loc for loc in locations.values() if loc.kind == HEADER]
        self.params = [loc for loc in locations.values() if loc.kind == PARAM]
        self.cookies = [loc for loc in locations.values() if loc.kind == COOKIE]
        self.sanitize = sorted({h for p in self.providers for h in p.outputs})
        self.cache: dict[str, Verified] = {}

    def authenticate(self, headers: dict[str, str], path: str) -> Outcome | None:
        """None: no token (the request passes, anonymous). Otherwise every token's verdict; on
        success `headers` are changed as the providers say (token removed, claims written)."""
        for name in self.sanitize:
            headers.pop(name, None)
        tokens = self._extract(headers, path)
        if not tokens:
            return None
        first: Verified | None = None
        for token in tokens:
            verified, failure = self._verify(token)
            if verified is None:
                return Outcome(failure)
            if first is None:
                first = verified
            self._output(verified, token, headers)
        return Outcome("", first)

    # ---------------------------------------------------------------- extraction

    def _extract(self, headers: dict[str, str], path: str) -> list[Token]:
        tokens: list[Token] = []
        for loc in self.headers:
            value = headers.get(loc.name)
            if value is None:
                continue
            if loc.prefix:
                # The default `Bearer ` is matched case-insensitively (RFC 6750), a configured prefix exactly.
                where = value.lower() if loc.prefix == DEFAULT_PREFIX else value
                pos = where.find(loc.prefix.lower() if loc.prefix == DEFAULT_PREFIX else loc.prefix)
                if pos < 0:
                    continue
                value = _jwt_text(value, pos + len(loc.prefix))
            tokens.append(Token(value, loc))  # even empty: Envoy then answers that it is malformed
        if self.params and "?" in path:
            params = _query(path)
            for loc in self.params:
                found = params.get(loc.name)
                if found is not None:
                    tokens.append(Token(found, loc))
        if self.cookies and "cookie" in headers:
            cookies = _cookies(headers["cookie"])
            for loc in self.cookies:
                found = cookies.get(loc.name)
                if found is not None:
                    tokens.append(Token(found, loc))
        return tokens

    # ---------------------------------------------------------------- verification

    def _verify(self, token: Token) -> tuple[Verified | None, str]:
        cached = self.cache.get(token.text)
        if cached is not None:
            if cached.provider.issuer not in token.location.issuers:
                return None, UNKNOWN_ISSUER
            failure = self._time(cached)
            return (cached, "") if not failure else (None, failure)
        parts = token.text.split(".")
        if len(parts) != 3:
            return None, BAD_FORMAT
        header = _json_object(parts[0])
        if header is None:
            return None, HEADER_PARSE
        alg = header.get("alg")
        if not isinstance(alg, str):
            return None, BAD_ALG
        if alg not in ALGORITHMS:
            return None, ALG_NOT_IMPLEMENTED
        kid = header.get("kid", "")
        if not isinstance(kid, str):
            return None, BAD_KID
        payload = _json_object(parts[1])
        if payload is None or not _valid_claims(payload):
            return None, PAYLOAD_PARSE
        signature = _b64decode(parts[2])
        if signature is None:
            return None, SIGNATURE_PARSE
        issuer = payload.get("iss", "")
        provider = self.by_issuer.get(issuer) if issuer in token.location.issuers else None
        if provider is None:
            return None, UNKNOWN_ISSUER
        verified = Verified(provider, payload, parts[1])
        failure = self._time(verified) or _audiences(provider, payload)
        if failure:
            return None, failure
        failure = _signature(provider, alg, kid, f"{parts[0]}.{parts[1]}".encode(), signature)
        if failure:
            return None, failure
        if len(self.cache) >= CACHE_SIZE:
            self.cache.clear()
        self.cache[token.text] = verified
        return verified, ""

    def _time(self, verified: Verified) -> str:
        now = self.clock()
        if verified.nbf is not None and now + CLOCK_SKEW < verified.nbf:
            return NOT_YET_VALID
        if verified.exp is not None and now > verified.exp + CLOCK_SKEW:
            return EXPIRED
        return ""

    # ---------------------------------------------------------------- what a verified token changes

    def _output(self, verified: Verified, token: Token, headers: dict[str, str]) -> None:
        config = verified.provider.config
        if verified.provider.remove_token and token.location.kind == HEADER:
            headers.pop(token.location.name, None)
        if config.output_payload_to_header:
            headers[config.output_payload_to_header.lower()] = verified.segment
        for item in config.output_claim_to_headers:
            value = _claim_text(verified.payload, item.claim)
            if value:
                headers[item.header.lower()] = value


def _locations(config: JwtProvider) -> list[tuple[int, str, str]]:
    if not (config.from_headers or config.from_params or config.from_cookies):
        return [(HEADER, DEFAULT_HEADER, DEFAULT_PREFIX), (PARAM, DEFAULT_PARAM, "")]
    out = [(HEADER, h.name.lower(), h.prefix) for h in config.from_headers]
    out += [(PARAM, p, "") for p in config.from_params]
    out += [(COOKIE, c, "") for c in config.from_cookies]
    return out


def _jwt_text(value: str, start: int) -> str:
    """Envoy's extractJWT: the longest run of JWT characters from `start`."""
    end = start
    while end < len(value) and value[end] in _JWT_CHARS:
        end += 1
    return value[start:end]


def _query(path: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in path.partition("?")[2].split("&"):
        name, _, value = part.partition("=")
        if name and name not in out:
            out[name] = value
    return out


def _cookies(header: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in header.split(";"):
        name, _, value = part.strip().partition("=")
        if name and name not in out:
            out[name] = value.strip('"')
    return out


def _b64decode(text: str) -> bytes | None:
    body = text.rstrip("=")
    if "=" in body or len(body) % 4 == 1:
        return None
    try:
        return base64.b64decode(body.translate(_B64URL) + "=" * (-len(body) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def _json_object(segment: str) -> dict[str, Any] | None:
    raw = _b64decode(segment)
    if raw is None:
        return None
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _valid_claims(payload: dict[str, Any]) -> bool:
    """The registered claims jwt_verify_lib reads must have their types."""
    for name in ("iss", "sub", "jti"):
        if name in payload and not isinstance(payload[name], str):
            return False
    for name in ("exp", "nbf", "iat"):
        if name in payload and _number(payload[name]) is None:
            return False
    aud = payload.get("aud")
    if aud is None or isinstance(aud, str):
        return True
    return isinstance(aud, list) and all(isinstance(a, str) for a in aud)


def _is_number(value: Any) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool)) or isinstance(value, float)


def _number(value: Any) -> float | None:
    if not _is_number(value):
        return None
    return float(value) if value >= 0 else None


def _audience(value: str) -> str:
    """jwt_verify_lib compares audiences without their `http(s)://` scheme and trailing `/`."""
    for scheme in ("http://", "https://"):
        if value.startswith(scheme):
            value = value[len(scheme) :]
    return value.rstrip("/")


def _audiences(provider: Provider, payload: dict[str, Any]) -> str:
    if not provider.audiences:
        return ""
    aud = payload.get("aud")
    given = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    return "" if any(_audience(a) in provider.audiences for a in given) else AUDIENCE


def _signature(provider: Provider, alg: str, kid: str, message: bytes, signature: bytes) -> str:
    if not provider.keys:
        return provider.no_keys
    kty, curve = ALGORITHMS[alg]
    if not _VERIFIERS:
        _algorithms()
    verifier = _VERIFIERS[alg]
    tried = False
    for key in provider.keys:
        if (kid and key.kid and key.kid != kid) or (key.alg and key.alg != alg) or key.kty != kty:
            continue
        if curve and key.curve != curve:
            continue
        tried = True
        try:
            if verifier.verify(message, key.key, signature):
                return ""
        except Exception:  # a key of the wrong shape for this algorithm: not this one
            continue
    return VERIFICATION if tried else KID_ALG


def _claim_text(payload: dict[str, Any], claim: str) -> str:
    value: Any = payload.get(claim)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    number = float(value) if _is_number(value) else None
    if number is None:
        return ""
    return str(int(number)) if number.is_integer() and number >= 0 else str(number)
