"""The jwt_authn filter: Istio's demo tokens and JWKS, Envoy's statuses, and hostile tokens."""

from __future__ import annotations

import base64
import json
import time

import jwt as pyjwt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jwtkit import ISSUER, KID, PRINCIPAL, demo, forged, groups_scope, jwks, mint

from sandbox.proxy import jwt_authn as ja
from sandbox.xds.access import ClaimHeader, JwtHeader, JwtProvider


def provider(**kw: object) -> JwtProvider:
    return JwtProvider(**{"issuer": ISSUER, "jwks": jwks(), **kw})  # type: ignore[arg-type]


def authn(*providers: JwtProvider, clock: float | None = None) -> ja.JwtAuthenticator:
    return ja.JwtAuthenticator(providers or (provider(),), clock=(lambda: clock) if clock else time.time)


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def b64(data: object) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_no_token_passes_without_a_principal() -> None:
    assert authn().authenticate({}, "/headers") is None
    assert authn().authenticate({"authorization": "Basic dXNlcjpwYXNz"}, "/") is None  # not a bearer token


def test_istios_demo_token_verifies_and_is_removed_before_the_upstream() -> None:
    headers = bearer(demo())
    outcome = authn().authenticate(headers, "/headers")
    assert outcome is not None and not outcome.failure
    assert outcome.verified is not None
    assert outcome.verified.principal == PRINCIPAL
    assert outcome.verified.payload["foo"] == "bar"
    assert "authorization" not in headers  # forwardOriginalToken defaults to false


def test_forward_original_token_keeps_it() -> None:
    headers = bearer(demo())
    authn(provider(forward_original_token=True)).authenticate(headers, "/")
    assert headers["authorization"] == f"Bearer {demo()}"


def test_the_access_token_parameter_and_custom_locations() -> None:
    outcome = authn().authenticate({}, f"/headers?x=1&access_token={demo()}")
    assert outcome is not None and outcome.verified is not None
    custom = provider(from_headers=(JwtHeader(name="x-jwt-assertion", prefix="Token "),), from_params=("jwt",))
    found = authn(custom).authenticate({"x-jwt-assertion": f"Token {demo()}"}, "/")
    assert found is not None and found.verified is not None
    assert authn(custom).authenticate(bearer(demo()), "/") is None  # not where this provider looks
    by_param = authn(custom).authenticate({}, f"/?jwt={demo()}")
    assert by_param is not None and by_param.verified is not None
    cookie = provider(from_cookies=("session",))
    by_cookie = authn(cookie).authenticate({"cookie": f"a=b; session={demo()}"}, "/")
    assert by_cookie is not None and by_cookie.verified is not None


def test_outputs_payload_and_claims_to_headers_and_drops_what_the_client_sent_there() -> None:
    p = provider(
        output_payload_to_header="x-jwt-payload",
        output_claim_to_headers=(
            ClaimHeader(header="x-jwt-foo", claim="foo"),
            ClaimHeader(header="x-exp", claim="exp"),
        ),
    )
    headers = {**bearer(demo()), "x-jwt-payload": "forged", "x-jwt-foo": "forged"}
    authn(p).authenticate(headers, "/")
    payload = json.loads(base64.urlsafe_b64decode(headers["x-jwt-payload"] + "=="))
    assert payload["foo"] == "bar" and headers["x-jwt-foo"] == "bar" and headers["x-exp"] == "4685989700"
    spoofed = {"x-jwt-foo": "admin"}
    assert authn(p).authenticate(spoofed, "/") is None
    assert "x-jwt-foo" not in spoofed  # no token: the client cannot pose as a verified claim


@pytest.mark.parametrize(
    ("token", "failure"),
    [
        ("deadbeef", ja.BAD_FORMAT),  # the authn-policy task's invalid token
        ("a.b", ja.BAD_FORMAT),
        ("!!!.e30.sig", ja.BAD_FORMAT),  # Envoy reads JWT characters after `Bearer `: none here
        (f"{b64(b'not json')}.e30.c2ln", ja.HEADER_PARSE),
        (f"{b64([1])}.e30.c2ln", ja.HEADER_PARSE),
        (f"{b64({'typ': 'JWT'})}.e30.c2ln", ja.BAD_ALG),
        (f"{b64({'alg': 'none'})}.{b64({'iss': ISSUER})}.", ja.ALG_NOT_IMPLEMENTED),
        (f"{b64({'alg': 'RS256', 'kid': 7})}.e30.c2ln", ja.BAD_KID),
        (f"{b64({'alg': 'RS256'})}.{b64({'iss': 5})}.c2ln", ja.PAYLOAD_PARSE),
        (f"{b64({'alg': 'RS256'})}.{b64({'iss': ISSUER})}.a%b", ja.SIGNATURE_PARSE),
        (mint(iss="someone@else"), ja.UNKNOWN_ISSUER),
        (mint(expire=-120), ja.EXPIRED),
        (mint(nbf=int(time.time()) + 3600), ja.NOT_YET_VALID),
        (forged(), ja.VERIFICATION),
        (mint(kid="another-kid"), ja.KID_ALG),
    ],
)
def test_bad_tokens_get_envoys_status(token: str, failure: str) -> None:
    outcome = authn().authenticate(bearer(token), "/")
    assert outcome is not None
    assert outcome.failure == failure
    assert outcome.status == 401
    assert outcome.details == "jwt_authn_access_denied{" + failure.replace(" ", "_") + "}"


def test_a_token_expired_less_than_the_clock_skew_ago_still_passes() -> None:
    # Envoy allows 60 s of skew: the task's 5-second token passes for about a minute.
    outcome = authn().authenticate(bearer(mint(expire=-30)), "/")
    assert outcome is not None and not outcome.failure


def test_audiences_are_checked_and_a_wrong_one_is_403() -> None:
    checked = provider(audiences=("https://bookinfo.example.com/",))
    ok = authn(checked).authenticate(bearer(mint(aud=["bookinfo.example.com", "x"])), "/")
    assert ok is not None and not ok.failure
    wrong = authn(checked).authenticate(bearer(mint(aud="other")), "/")
    assert wrong is not None and (wrong.failure, wrong.status) == (ja.AUDIENCE, 403)
    assert authn().authenticate(bearer(mint(aud="other")), "/").failure == ""  # type: ignore[union-attr]


def test_every_token_a_request_carries_must_pass() -> None:
    outcome = authn().authenticate({**bearer(demo())}, f"/?access_token={forged()}")
    assert outcome is not None and outcome.failure == ja.VERIFICATION


def test_without_keys_for_a_jwks_uri_tokens_fail_and_anonymous_requests_pass() -> None:
    unfetched = provider(jwks="", jwks_uri="http://127.0.0.1:1/jwks.json")
    assert authn(unfetched).authenticate(bearer(demo()), "/").failure == ja.FETCH_FAILED  # type: ignore[union-attr]
    assert authn(unfetched).authenticate({}, "/") is None


def test_several_providers_each_verify_their_own_issuer() -> None:
    second = JwtProvider(issuer="issuer-b", jwks=jwks())
    a = authn(provider(), second)
    assert a.authenticate(bearer(mint(iss="issuer-b", sub="u")), "/").verified.principal == "issuer-b/u"  # type: ignore[union-attr]
    assert a.authenticate(bearer(groups_scope()), "/").verified.payload["groups"] == ["group1", "group2"]  # type: ignore[union-attr]


def test_a_cached_token_is_still_checked_against_the_clock() -> None:
    token = mint(expire=10)
    now = time.time()
    a = authn(clock=now)
    assert a.authenticate(bearer(token), "/").failure == ""  # type: ignore[union-attr]
    a.clock = lambda: now + 3600
    assert a.authenticate(bearer(token), "/").failure == ja.EXPIRED  # type: ignore[union-attr]


def test_keys_of_every_kind_envoy_supports_verify() -> None:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    for alg, key in (
        ("ES256", ec.generate_private_key(ec.SECP256R1())),
        ("EdDSA", ed25519.Ed25519PrivateKey.generate()),
    ):
        public = pyjwt.algorithms.get_default_algorithms()[alg].to_jwk(key.public_key(), as_dict=True)
        public["kid"] = "k1"
        set_ = json.dumps({"keys": [public]})
        token = pyjwt.encode({"iss": ISSUER, "sub": "u"}, key, algorithm=alg, headers={"kid": "k1"})
        outcome = authn(provider(jwks=set_)).authenticate(bearer(token), "/")
        assert outcome is not None and outcome.failure == "", alg
    hmac = {"keys": [{"kty": "oct", "k": b64(b"secret-secret-secret-secret-32by"), "kid": "h"}]}
    token = pyjwt.encode(
        {"iss": ISSUER, "sub": "u"}, b"secret-secret-secret-secret-32by", "HS256", headers={"kid": "h"}
    )
    assert authn(provider(jwks=json.dumps(hmac))).authenticate(bearer(token), "/").failure == ""  # type: ignore[union-attr]


def test_jwks_with_junk_keeps_the_good_keys() -> None:
    good = json.loads(jwks())["keys"][0]
    junk = json.dumps({"keys": [{"kty": "RSA", "n": "!!", "e": "AQAB"}, "x", {"kty": "XYZ"}, good]})
    assert len(ja.parse_jwks(junk)) == 1
    for text in ("", "not json", "[]", '{"keys": 5}'):
        assert ja.parse_jwks(text) == []


# --------------------------------------------------------------------------- hostile tokens

TOKEN_CHARS = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=", max_size=400)


def _answer(token: str) -> ja.Outcome | None:
    started = time.monotonic()
    outcome = authn().authenticate(bearer(token), "/")
    assert time.monotonic() - started < 1.0  # never a hang
    return outcome


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(TOKEN_CHARS)
def test_random_tokens_are_refused_with_401_or_pass_as_absent(token: str) -> None:
    outcome = _answer(token)
    assert outcome is None or (outcome.failure and outcome.status == 401)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=len(demo()) - 1))
def test_truncated_tokens_never_pass(cut: int) -> None:
    outcome = _answer(demo()[:cut])
    assert outcome is None or outcome.failure


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.text(max_size=8), st.none() | st.integers() | st.text(max_size=20) | st.lists(st.integers())))
def test_arbitrary_headers_and_payloads_signed_with_the_wrong_key_never_pass(claims: dict[str, object]) -> None:
    header = b64({"alg": "RS256", "kid": KID, **{k: v for k, v in claims.items() if k not in ("alg", "kid")}})
    token = f"{header}.{b64(claims)}.{forged().rsplit('.', 1)[1]}"
    outcome = _answer(token)
    assert outcome is not None and outcome.failure


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "HS256", "RS1", "", "ES256K"])
def test_wrong_and_absent_algorithms_never_pass(alg: str) -> None:
    # `none` carries no signature; HS256 with the RSA public key as its secret is the classic confusion.
    public = json.loads(jwks())["keys"][0]
    header = b64({"alg": alg, "kid": KID})
    body = b64({"iss": ISSUER, "sub": ISSUER, "exp": int(time.time()) + 60})
    secret = base64.urlsafe_b64decode(public["n"] + "==")
    import hashlib
    import hmac as hmac_module

    sig = b64(hmac_module.new(secret, f"{header}.{body}".encode(), hashlib.sha256).digest())
    for token in (f"{header}.{body}.", f"{header}.{body}.{sig}"):
        outcome = _answer(token)
        assert outcome is not None and outcome.failure in (ja.ALG_NOT_IMPLEMENTED, ja.KID_ALG, ja.SIGNATURE_PARSE)


def test_oversized_and_deeply_nested_tokens_are_refused_quickly() -> None:
    huge = "a" * 200_000 + "." + "b" * 200_000 + "." + "c" * 10
    assert _answer(huge).failure  # type: ignore[union-attr]
    nested = b64(json.loads("[" * 50 + "]" * 50))
    deep_payload = base64.urlsafe_b64encode(b'{"a":' * 100_000 + b"1" + b"}" * 100_000).rstrip(b"=").decode()
    for token in (f"{nested}.e30.c2ln", f"{b64({'alg': 'RS256'})}.{deep_payload}.c2ln"):
        assert _answer(token).failure  # type: ignore[union-attr]
