"""The filters before the router, as a conversation: what the client sent, what reached the app (or
the extension provider), what the client got and what the access log and span say."""

from __future__ import annotations

import json
import logging

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jwtkit import ISSUER, demo, forged, groups_scope, jwks, mint
from sansio import FakeDownstream, Playbook

from sandbox.proxy.authz import DENIED_BODY

COMPOSE = """\
x-sandbox:
  extensionProviders:
  - name: sample-ext-authz-http
    envoyExtAuthzHttp:
      service: ext-authz.default.svc.cluster.local
      port: "8000"
      includeRequestHeadersInCheck: ["x-ext-authz"]
      headersToUpstreamOnAllow: ["x-ext-authz-check-result"]
      headersToDownstreamOnDeny: ["x-ext-authz-check-result"]
services:
  httpbin-v1:
    image: x
    labels: {app: httpbin, version: v1}
    expose: ["8000"]
    x-sandbox: {serviceAccount: httpbin}
  ext-authz:
    image: x
    labels: {app: ext-authz, version: v1}
    expose: ["8000"]
"""
APP = "127.0.0.1:18000"
EXT_AUTHZ = "127.0.0.1:18001"
SLEEP = "spiffe://cluster.local/ns/default/sa/sleep"


def policy(name: str, spec: str, kind: str = "AuthorizationPolicy", namespace: str = "default", meta: str = "") -> str:
    body = "\n".join("  " + line for line in spec.strip("\n").splitlines())
    head = f"apiVersion: security.istio.io/v1\nkind: {kind}\nmetadata:\n  name: {name}\n  namespace: {namespace}\n"
    return f"{head}{meta}spec:\n{body}\n---\n"


def httpbin(istio: str) -> Playbook:
    return Playbook.inbound(COMPOSE, "httpbin-v1", APP, istio=istio, addresses={"ext-authz": EXT_AUTHZ})


def served(pb: Playbook, **kw: object) -> tuple[dict[str, str], int]:
    """Send; the app (a new connection, or the pooled one) answers 200: (what it got, client's status)."""
    _, client = pb.send(**kw)  # type: ignore[arg-type]
    if any(p.host.address == APP for p in pb.connector.waiting):
        conn = pb.connector.accept(APP)
    else:
        conn = next(c for c in pb.connector.opened if c.sink is not None and c.pool.host.address == APP)
    head = conn.request_heads()[-1]
    conn.respond(200)
    return head, client.response().status


def refused(pb: Playbook, status: int, body: str, **kw: object) -> list[str]:
    _, client = pb.send(**kw)  # type: ignore[arg-type]
    response = client.response()
    assert (response.status, response.body.decode()) == (status, body)
    assert pb.connector.waiting == []  # nothing went to the app
    return pb.log()


# --------------------------------------------------------------------------- RBAC


def test_allow_nothing_answers_rbac_access_denied_as_envoy_logs_it() -> None:
    pb = httpbin(policy("allow-nothing", "{}"))
    [line] = refused(pb, 403, DENIED_BODY, host="httpbin:8000", path="/headers")
    assert '"GET /headers HTTP/1.1" 403 - rbac_access_denied_matched_policy[none] - "-" 0 19 ' in line
    assert " inbound|8000|| " in line and line.rstrip().endswith(" default")  # route and cluster it would take
    [record] = pb.records
    assert (record.response_code, record.response_flags) == (403, "")


def test_deny_with_a_when_on_a_header_names_the_rule_and_lets_the_rest_through() -> None:
    deny = """
action: DENY
rules:
- to:
  - operation: {methods: [GET]}
  when:
  - key: request.headers[x-token]
    values: [admin]
"""
    pb = httpbin(policy("deny-method-get", deny))
    line = refused(pb, 403, DENIED_BODY, host="httpbin:8000", headers={"x-token": "admin"})[0]
    assert "rbac_access_denied_matched_policy[ns[default]-policy[deny-method-get]-rule[0]]" in line
    assert served(pb, host="httpbin:8000", headers={"x-token": "guest"})[1] == 200


def test_principals_come_from_the_peer_certificate() -> None:
    allow = "rules:\n- from:\n  - source: {principals: [cluster.local/ns/default/sa/sleep]}"
    pb = httpbin(policy("from-sleep", allow))
    mtls = FakeDownstream()
    mtls.peer_principal, mtls.mtls = SLEEP, True
    assert served(pb, host="httpbin:8000", down=mtls)[1] == 200
    refused(pb, 403, DENIED_BODY, host="httpbin:8000")  # plaintext: no principal at all


def test_ip_blocks_read_the_peer_and_remote_ip_blocks_the_forwarded_client() -> None:
    pb = httpbin(policy("deny-ip", "action: DENY\nrules:\n- from:\n  - source: {remoteIpBlocks: [203.0.113.0/24]}"))
    refused(pb, 403, DENIED_BODY, host="httpbin:8000", headers={"x-forwarded-for": "203.0.113.7"})
    assert served(pb, host="httpbin:8000", headers={"x-forwarded-for": "198.51.100.1"})[1] == 200
    pb2 = httpbin(policy("allow-ip", "rules:\n- from:\n  - source: {ipBlocks: [10.1.0.0/16]}"))
    refused(pb2, 403, DENIED_BODY, host="httpbin:8000")  # the FakeDownstream's peer is 127.0.0.1
    assert served(pb2, host="httpbin:8000", down=FakeDownstream(peer="10.1.2.3:5555"))[1] == 200


def test_dry_run_logs_the_shadow_decision_tags_the_span_and_lets_the_request_through(
    caplog: pytest.LogCaptureFixture,
) -> None:
    dry = '  annotations: {"istio.io/dry-run": "true"}\n'
    pb = httpbin(
        policy("deny-path-headers", "action: DENY\nrules:\n- to:\n  - operation: {paths: [/headers]}", meta=dry)
    )
    with caplog.at_level(logging.INFO, logger="sandbox.proxy.rbac"):
        _, client = pb.send(host="httpbin:8000", path="/headers", headers={"x-b3-sampled": "1"})
    pb.connector.accept().respond(200)
    assert client.response().status == 200
    assert "shadow denied, matched policy ns[default]-policy[deny-path-headers]-rule[0]" in caplog.messages
    [span] = pb.sent_spans()
    assert (
        span["tags"]["istio.authorization.dry_run.deny_policy.name"] == "ns[default]-policy[deny-path-headers]-rule[0]"
    )
    assert span["tags"]["istio.authorization.dry_run.deny_policy.result"] == "denied"
    stats = dict(pb.sidecar.filter_stats)  # type: ignore[union-attr]
    assert stats["http.inbound_0.0.0.0_8000.rbac.istio_dry_run_deny_shadow_denied"] == 1


# --------------------------------------------------------------------------- JWT


REQUIRE_JWT = policy(
    "jwt-example",
    f"selector:\n  matchLabels: {{app: httpbin}}\njwtRules:\n- issuer: {ISSUER}\n  jwks: '{jwks()}'",
    kind="RequestAuthentication",
)


def test_a_valid_token_passes_without_its_header_and_an_absent_one_passes_too() -> None:
    pb = httpbin(REQUIRE_JWT)
    head, status = served(pb, host="httpbin:8000", headers={"authorization": f"Bearer {demo()}"})
    assert status == 200 and "authorization" not in head
    assert served(pb, host="httpbin:8000")[1] == 200


@pytest.mark.parametrize(
    ("token", "body"),
    [("deadbeef", "Jwt is not in the form of Header.Payload.Signature"), (forged(), "Jwt verification fails")],
)
def test_a_bad_token_gets_401_with_envoys_words(token: str, body: str) -> None:
    pb = httpbin(REQUIRE_JWT)
    _, client = pb.send(host="httpbin:8000", path="/headers?x=1", headers={"authorization": f"Bearer {token}"})
    response = client.response()
    assert (response.status, response.body.decode()) == (401, body)
    realm = 'Bearer realm="http://httpbin:8000/headers?x=1", error="invalid_token"'
    assert response.headers["www-authenticate"] == realm
    details = "jwt_authn_access_denied{" + body.replace(" ", "_") + "}"
    assert f" 401 - {details} " in pb.log()[0]


def test_expired_tokens_are_refused() -> None:
    pb = httpbin(REQUIRE_JWT)
    refused(pb, 401, "Jwt is expired", host="httpbin:8000", headers={"authorization": f"Bearer {mint(expire=-300)}"})


def test_requiring_a_request_principal_turns_no_token_into_403() -> None:
    require = "selector:\n  matchLabels: {app: httpbin}\nrules:\n- from:\n  - source: {requestPrincipals: ['*']}"
    pb = httpbin(REQUIRE_JWT + policy("require-jwt", require))
    refused(pb, 403, DENIED_BODY, host="httpbin:8000")
    assert served(pb, host="httpbin:8000", headers={"authorization": f"Bearer {demo()}"})[1] == 200


def test_claims_reach_authorization() -> None:
    group1 = "rules:\n- when:\n  - key: request.auth.claims[groups]\n    values: [group1]"
    pb = httpbin(REQUIRE_JWT + policy("group1", group1))
    refused(pb, 403, DENIED_BODY, host="httpbin:8000", headers={"authorization": f"Bearer {demo()}"})
    assert served(pb, host="httpbin:8000", headers={"authorization": f"Bearer {groups_scope()}"})[1] == 200


GATEWAY = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: httpbin-gateway}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: httpbin}
spec:
  hosts: ["*"]
  gateways: [httpbin-gateway]
  http:
  - match:
    - uri: {prefix: /headers}
      headers:
        "@request.auth.claims.groups": {exact: group1}
    route:
    - destination: {host: httpbin, port: {number: 8000}}
---
"""


def test_jwt_claim_based_routing_on_the_gateway() -> None:
    ra = policy(
        "jwt-on-ingress",
        f"selector:\n  matchLabels: {{istio: ingressgateway}}\njwtRules:\n- issuer: {ISSUER}\n  jwks: '{jwks()}'",
        kind="RequestAuthentication",
        namespace="istio-system",
    )
    pb = Playbook.inbound(COMPOSE, "istio-ingressgateway", APP, istio=GATEWAY + ra, addresses={"httpbin-v1": APP})
    # Istio's task: no token 404, an invalid one 401, groups-scope.jwt (group1) 200, demo.jwt (no groups) 404.
    assert pb.send(host="gw.example:80", path="/headers")[1].response().status == 404
    invalid = pb.send(host="gw.example:80", path="/headers", headers={"authorization": "Bearer some.invalid.token"})
    assert invalid[1].response().status == 401
    assert (
        served(pb, host="gw.example:80", path="/headers", headers={"authorization": f"Bearer {groups_scope()}"})[1]
        == 200
    )
    assert (
        pb.send(host="gw.example:80", path="/headers", headers={"authorization": f"Bearer {demo()}"})[1]
        .response()
        .status
        == 404
    )


# --------------------------------------------------------------------------- CUSTOM


CUSTOM = policy(
    "ext-authz",
    "selector:\n  matchLabels: {app: httpbin}\naction: CUSTOM\nprovider: {name: sample-ext-authz-http}\n"
    "rules:\n- to:\n  - operation: {paths: [/headers]}",
)


def test_custom_asks_the_provider_and_its_allow_reaches_the_upstream() -> None:
    pb = httpbin(CUSTOM)
    _, client = pb.send(host="httpbin:8000", path="/headers", headers={"x-ext-authz": "allow", "cookie": "secret"})
    check = pb.connector.accept(EXT_AUTHZ)
    [asked] = check.request_heads()
    assert asked[":line"] == "GET /headers HTTP/1.1"
    assert (asked["host"], asked["x-ext-authz"], asked["content-length"]) == ("httpbin:8000", "allow", "0")
    assert "cookie" not in asked  # only includeRequestHeadersInCheck
    check.respond(200, b"", headers=(("x-ext-authz-check-result", "allowed"), ("x-other", "kept back")))
    app = pb.connector.accept(APP)
    sent = app.request_heads()[0]
    assert sent["x-ext-authz-check-result"] == "allowed" and "x-other" not in sent
    app.respond(200)
    assert client.response().status == 200


def test_custom_denial_is_the_providers_answer_with_flag_uaex() -> None:
    pb = httpbin(CUSTOM)
    _, client = pb.send(host="httpbin:8000", path="/headers", headers={"x-ext-authz": "deny"})
    body = b"denied by ext_authz for not found header `x-ext-authz: allow` in the request"
    pb.connector.accept(EXT_AUTHZ).respond(403, body, headers=(("x-ext-authz-check-result", "denied"),))
    response = client.response()
    assert (response.status, response.body) == (403, body)
    assert response.headers["x-ext-authz-check-result"] == "denied"
    assert " 403 UAEX ext_authz_denied " in pb.log()[0]


def test_paths_the_custom_rules_do_not_select_skip_the_provider() -> None:
    pb = httpbin(CUSTOM)
    assert served(pb, host="httpbin:8000", path="/ip")[1] == 200


def test_an_unreachable_provider_fails_closed() -> None:
    pb = httpbin(CUSTOM)
    _, client = pb.send(host="httpbin:8000", path="/headers", headers={"x-ext-authz": "allow"})
    pb.connector.refuse(address=EXT_AUTHZ)
    assert client.response().status == 403
    assert " 403 UAEX ext_authz_error " in pb.log()[0]


def test_a_provider_that_never_answers_times_out_closed() -> None:
    provider_with_timeout = COMPOSE.replace('port: "8000"', 'port: "8000"\n      timeout: 2s')
    pb = Playbook.inbound(provider_with_timeout, "httpbin-v1", APP, istio=CUSTOM, addresses={"ext-authz": EXT_AUTHZ})
    _, client = pb.send(host="httpbin:8000", path="/headers")
    pb.connector.accept(EXT_AUTHZ)
    pb.timers.advance(2.5)
    assert client.response().status == 403


def test_a_custom_policy_naming_an_unknown_provider_denies_everything() -> None:
    pb = httpbin(CUSTOM.replace("sample-ext-authz-http", "nobody"))
    line = refused(pb, 403, DENIED_BODY, host="httpbin:8000", path="/ip")[0]
    assert "rbac_access_denied_matched_policy[deny-due-to-invalid-CUSTOM]" in line


def test_a_proxy_without_policies_has_no_filters() -> None:
    pb = httpbin("")
    assert pb.ctx.filters is None
    assert json.loads(pb.snapshot.to_json()).get("access") is None  # nothing in its snapshot either


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.text(max_size=300),
        st.builds(lambda t, cut: t[:cut], st.sampled_from([demo(), groups_scope(), forged()]), st.integers(0, 700)),
        st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.", min_size=1, max_size=2000),
    ),
    st.sampled_from(["Bearer ", "bearer ", "", "Basic ", "Bearer  "]),
)
def test_hostile_authorization_headers_get_401_or_pass_never_an_error(token: str, scheme: str) -> None:
    value = (scheme + token).replace("\r", "").replace("\n", "")
    pb = httpbin(REQUIRE_JWT)
    _, client = pb.send(host="httpbin:8000", headers={"authorization": value})
    if pb.connector.waiting:  # passed: no token found where the provider looks (or a valid one)
        pb.connector.accept(APP).respond(200)
    status = client.response().status
    assert status in (200, 401), (value, status)
