"""The data path's RBAC engine against authorization_policy.proto (reference notes, section 2.4):
policies written as YAML, compiled as the control plane compiles them, asked about one request."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox.control.compile_access import INVALID_CUSTOM
from sandbox.control.compile_access import authz_policy as to_snapshot
from sandbox.mesh.diagnostics import Severity
from sandbox.mesh.loader import load_text
from sandbox.proxy.authz import Authorizer, AuthzRequest, normalize_path
from sandbox.xds.access import AuthzPolicy

SLEEP = "cluster.local/ns/foo/sa/sleep"
ADMIN = "cluster.local/ns/admin/sa/ops"


def ap(name: str, spec: str, namespace: str = "foo", annotations: str = "") -> str:
    body = "\n".join("  " + line for line in spec.strip("\n").splitlines())
    return (
        f"apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
        f"metadata:\n  name: {name}\n  namespace: {namespace}\n{annotations}spec:\n{body}\n---\n"
    )


def compiled(text: str) -> Authorizer:
    result = load_text(text, "policies.yaml")
    assert not [d for d in result.diagnostics if d.severity is not Severity.INFO], result.diagnostics
    return Authorizer(to_snapshot(r) for r in result.resources)


def req(
    method: str = "GET",
    path: str = "/",
    host: str = "httpbin:8000",
    headers: dict[str, str] | None = None,
    port: int = 8000,
    source_principal: str = "",
    source_ip: str = "10.0.0.1",
    remote_ip: str = "",
    destination_ip: str = "10.0.0.2",
    sni: str = "",
    request_principal: str = "",
    claims: dict[str, Any] | None = None,
) -> AuthzRequest:
    r = AuthzRequest(
        method, path, host, headers or {}, port, source_principal, source_ip, remote_ip, destination_ip, sni
    )
    r.request_principal = request_principal
    r.claims = claims
    return r


def allowed(text: str, **attrs: Any) -> bool:
    return compiled(text).check(req(**attrs)).allowed


def test_without_policies_everything_is_allowed() -> None:
    verdict = Authorizer([]).check(req())
    assert verdict.allowed and verdict.details == ""


def test_an_allow_policy_makes_the_workload_deny_by_default() -> None:
    authz = compiled(ap("get-only", "rules:\n- to:\n  - operation: {methods: [GET]}"))
    assert authz.check(req(method="GET")).allowed
    denied = authz.check(req(method="POST"))
    assert not denied.allowed
    assert denied.details == "rbac_access_denied_matched_policy[none]"


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("{}", False),  # allow-nothing
        ("rules: [{}]", True),  # allow-all
        ("action: DENY\nrules: [{}]", False),  # deny-all
        ("action: DENY", True),  # a DENY policy without rules never matches
        ("action: AUDIT\nrules: [{}]", True),  # AUDIT does not decide
    ],
)
def test_special_policies(spec: str, expected: bool) -> None:
    assert allowed(ap("p", spec)) is expected


def test_deny_wins_over_allow_and_names_the_rule() -> None:
    authz = compiled(
        ap("allow-all", "rules: [{}]")
        + ap(
            "deny-post",
            "action: DENY\nrules:\n- to:\n  - operation: {methods: [GET]}\n- to:\n  - operation: {methods: [POST]}",
        )
    )
    verdict = authz.check(req(method="POST"))
    assert not verdict.allowed
    assert verdict.details == "rbac_access_denied_matched_policy[ns[foo]-policy[deny-post]-rule[1]]"
    ok = authz.check(req(method="PUT"))
    assert ok.allowed and ok.policy == "ns[foo]-policy[allow-all]-rule[0]"


def test_the_first_match_reported_is_envoys_the_first_policy_name_in_order() -> None:
    """Envoy keeps RBAC policies in a sorted map: `a` before `b`, whatever the file order."""
    authz = compiled(ap("b-deny", "action: DENY\nrules: [{}]") + ap("a-deny", "action: DENY\nrules: [{}]"))
    assert authz.check(req()).policy == "ns[foo]-policy[a-deny]-rule[0]"


def test_custom_rules_pick_the_requests_for_the_provider() -> None:
    authz = compiled(
        ap("ext", "action: CUSTOM\nprovider: {name: opa}\nrules:\n- to:\n  - operation: {paths: [/admin*]}")
    )
    entry = authz.custom_match(req(path="/admin/x"))
    assert entry is not None and entry.provider == "opa"
    assert authz.custom_match(req(path="/public")) is None
    assert authz.check(req(path="/admin/x")).allowed  # CUSTOM is the provider's to decide, not RBAC's


def test_a_policy_the_control_plane_made_is_named_as_istio_names_it() -> None:
    authz = Authorizer([AuthzPolicy(name=INVALID_CUSTOM, namespace="", action="DENY", rules=(to_rule("{}"),))])
    assert authz.check(req()).details == "rbac_access_denied_matched_policy[deny-due-to-invalid-CUSTOM]"


def to_rule(text: str) -> Any:
    return load_text(ap("x", f"rules: [{text}]"), "x.yaml").resources[0].spec.rules[0]


def test_dry_run_policies_do_not_decide_but_say_what_they_would_have_done() -> None:
    dry = '  annotations: {istio.io/dry-run: "true"}\n'
    authz = compiled(
        ap("deny-path-headers", "action: DENY\nrules:\n- to:\n  - operation: {paths: [/headers]}", annotations=dry)
        + ap("allow-get", "rules:\n- to:\n  - operation: {methods: [GET]}", annotations=dry)
    )
    assert authz.check(req(path="/headers")).allowed
    assert authz.check(req(method="POST")).allowed  # a dry-run ALLOW does not make the workload default-deny
    shadow = {s.action: (s.result, s.policy) for s in authz.shadow(req(path="/headers"))}
    assert shadow == {
        "deny": ("denied", "ns[foo]-policy[deny-path-headers]-rule[0]"),
        "allow": ("allowed", "ns[foo]-policy[allow-get]-rule[0]"),
    }
    shadow = {s.action: (s.result, s.policy) for s in authz.shadow(req(path="/ip", method="POST"))}
    assert shadow == {"deny": ("allowed", "none"), "allow": ("denied", "none")}


def test_without_dry_run_policies_there_is_no_shadow() -> None:
    authz = compiled(ap("p", "rules: [{}]"))
    assert not authz.dry_run and authz.shadow(req()) == []


RULE = """\
rules:
- from:
  - source: {principals: ["cluster.local/ns/foo/sa/sleep"]}
  - source: {namespaces: [admin]}
  to:
  - operation: {methods: [GET], paths: ["/info*"]}
  - operation: {methods: [POST], paths: [/data]}
  when:
  - key: request.headers[version]
    values: [v1, v2]
"""


@pytest.mark.parametrize(
    ("attrs", "expected"),
    [
        ({"source_principal": SLEEP, "method": "GET", "path": "/info/1", "headers": {"version": "v1"}}, True),
        ({"source_principal": ADMIN, "method": "POST", "path": "/data", "headers": {"version": "v2"}}, True),
        ({"source_principal": SLEEP, "method": "POST", "path": "/info", "headers": {"version": "v1"}}, False),
        ({"source_principal": SLEEP, "method": "GET", "path": "/info", "headers": {"version": "v3"}}, False),
        ({"source_principal": SLEEP, "method": "GET", "path": "/info"}, False),  # when: header missing
        ({"source_principal": "cluster.local/ns/bar/sa/x", "method": "GET", "path": "/info"}, False),
        ({"method": "GET", "path": "/info", "headers": {"version": "v1"}}, False),  # plaintext: no identity
        # The SPIFFE ID of a peer certificate is the principal with its scheme.
        (
            {"source_principal": f"spiffe://{SLEEP}", "method": "GET", "path": "/info", "headers": {"version": "v1"}},
            True,
        ),
    ],
)
def test_from_to_when_are_anded_and_their_entries_ored(attrs: dict[str, Any], expected: bool) -> None:
    assert allowed(ap("p", RULE), **attrs) is expected


@pytest.mark.parametrize(
    ("operation", "attrs", "expected"),
    [
        ("{paths: ['/api/*']}", {"path": "/api/v1"}, True),
        ("{paths: ['/api/*']}", {"path": "/apix"}, False),
        ("{paths: ['*.html']}", {"path": "/index.html?x=1"}, True),  # the query string is not part of the path
        ("{paths: ['*']}", {"path": "/"}, True),
        ("{paths: ['/books/{*}/review']}", {"path": "/books/7/review"}, True),
        ("{paths: ['/books/{*}/review']}", {"path": "/books/7/8/review"}, False),
        ("{paths: ['/static/{**}']}", {"path": "/static/a/b.css"}, True),
        ("{notPaths: ['/private*']}", {"path": "/private/x"}, False),
        ("{notPaths: ['/private*']}", {"path": "/public"}, True),
        ("{notPaths: ['/private*']}", {"path": "/public/../private/x"}, False),  # dot segments resolved first
        ("{hosts: ['*.example.com']}", {"host": "API.Example.com"}, True),  # hosts are case-insensitive
        ("{hosts: ['httpbin.foo']}", {"host": "httpbin.foo:8000"}, True),  # with or without the port
        ("{hosts: ['httpbin.foo']}", {"host": "httpbin.bar"}, False),
        ("{ports: ['8080']}", {"port": 8080}, True),
        ("{ports: ['8080']}", {"port": 9080}, False),
        ("{notPorts: ['8080']}", {"port": 9080}, True),
        ("{methods: [GET], notPaths: [/admin]}", {"method": "GET", "path": "/admin"}, False),
        ("{notMethods: [DELETE]}", {"method": "DELETE"}, False),
    ],
)
def test_operation_fields_and_string_matching(operation: str, attrs: dict[str, Any], expected: bool) -> None:
    assert allowed(ap("p", f"rules:\n- to:\n  - operation: {operation}"), **attrs) is expected


@pytest.mark.parametrize(
    ("source", "attrs", "expected"),
    [
        ("{principals: ['cluster.local/ns/foo/*']}", {"source_principal": SLEEP}, True),
        ("{principals: ['*']}", {"source_principal": ""}, False),  # `*` needs a present value
        ("{notPrincipals: ['*']}", {"source_principal": ""}, True),
        ("{namespaces: [foo]}", {"source_principal": SLEEP}, True),
        ("{notNamespaces: [foo]}", {"source_principal": SLEEP}, False),
        ("{serviceAccounts: [foo/sleep]}", {"source_principal": SLEEP}, True),
        ("{serviceAccounts: [foo/other]}", {"source_principal": SLEEP}, False),
        (
            "{requestPrincipals: ['testing@secure.istio.io/*']}",
            {"request_principal": "testing@secure.istio.io/a"},
            True,
        ),
        ("{notRequestPrincipals: ['*']}", {}, True),
        ("{ipBlocks: ['10.0.0.0/8']}", {"source_ip": "10.1.2.3"}, True),
        ("{ipBlocks: ['10.0.0.0/8']}", {"source_ip": "192.168.0.1"}, False),
        ("{ipBlocks: ['10.0.0.0/8']}", {"source_ip": "::1"}, False),
        ("{notIpBlocks: ['10.1.2.3']}", {"source_ip": "10.1.2.3"}, False),
        ("{remoteIpBlocks: ['1.2.3.0/24']}", {"source_ip": "10.0.0.1", "remote_ip": "1.2.3.4"}, True),
        ("{remoteIpBlocks: ['1.2.3.0/24']}", {"source_ip": "1.2.3.4", "remote_ip": ""}, True),  # no XFF: the peer
    ],
)
def test_source_fields(source: str, attrs: dict[str, Any], expected: bool) -> None:
    assert allowed(ap("p", f"rules:\n- from:\n  - source: {source}"), **attrs) is expected


@pytest.mark.parametrize(
    ("condition", "attrs", "expected"),
    [
        ("{key: source.principal, values: ['*/sa/sleep']}", {"source_principal": SLEEP}, True),
        ("{key: source.namespace, notValues: [foo]}", {"source_principal": SLEEP}, False),
        ("{key: 'request.auth.claims[groups]', values: [group1]}", {"claims": {"groups": ["group1", "group2"]}}, True),
        ("{key: 'request.auth.claims[groups]', values: [group3]}", {"claims": {"groups": ["group1", "group2"]}}, False),
        ("{key: 'request.auth.claims[scope]', values: [write]}", {"claims": {"scope": "read write"}}, True),
        (
            "{key: 'request.auth.claims[nested][role]', values: [admin]}",
            {"claims": {"nested": {"role": "admin"}}},
            True,
        ),
        ("{key: 'request.auth.claims[level]', values: ['3']}", {"claims": {"level": 3}}, True),
        ("{key: 'request.auth.claims[groups]', values: [group1]}", {}, False),  # no token, no claims
        ("{key: request.auth.principal, values: ['iss/sub']}", {"request_principal": "iss/sub"}, True),
        ("{key: request.auth.audiences, values: [bookinfo]}", {"claims": {"aud": ["bookinfo", "x"]}}, True),
        ("{key: request.auth.presenter, values: [web]}", {"claims": {"azp": "web"}}, True),
        ("{key: destination.port, values: ['9080']}", {"port": 9080}, True),
        ("{key: destination.ip, values: ['10.0.0.0/24']}", {"destination_ip": "10.0.0.2"}, True),
        ("{key: source.ip, values: ['10.0.0.0/8']}", {"source_ip": "10.0.0.9"}, True),
        ("{key: remote.ip, values: ['1.2.3.4']}", {"remote_ip": "1.2.3.4"}, True),
        ("{key: connection.sni, values: ['*.local']}", {"sni": "outbound_.9080_._.a.local"}, True),
        ("{key: 'request.headers[User-Agent]', values: ['curl/*']}", {"headers": {"user-agent": "curl/8.0"}}, True),
        ("{key: 'request.headers[x-token]', notValues: ['admin']}", {}, True),  # absent: not `admin`
        ("{key: 'experimental.envoy.filters.x[y]', values: [z]}", {}, True),  # unsupported keys are ignored
    ],
)
def test_conditions(condition: str, attrs: dict[str, Any], expected: bool) -> None:
    assert allowed(ap("p", f"rules:\n- when:\n  - {condition}"), **attrs) is expected


def test_requiring_a_jwt_with_deny_not_request_principals() -> None:
    # authn-policy task: no token -> 403 on /headers only; /ip stays open.
    text = ap(
        "require-jwt",
        "action: DENY\nrules:\n- from:\n  - source: {notRequestPrincipals: ['*']}\n"
        "  to:\n  - operation: {paths: [/headers]}",
    )
    assert not allowed(text, path="/headers")
    assert allowed(text, path="/ip")
    assert allowed(text, path="/headers", request_principal="testing@secure.istio.io/testing@secure.istio.io")


@pytest.mark.parametrize(
    ("path", "normalized"),
    [
        ("/a/./b", "/a/b"),
        ("/a/../b", "/b"),
        ("/../../b", "/b"),
        ("/a/b/..", "/a/"),
        ("/a/.", "/a/"),
        ("/a/b", "/a/b"),
        ("/.well-known/x", "/.well-known/x"),
    ],
)
def test_paths_are_normalized_as_envoy_does(path: str, normalized: str) -> None:
    assert normalize_path(path) == normalized
