"""authz.evaluate against the semantics of authorization_policy.proto (reference notes, section 2.4)."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox.mesh.authz import Decision, PolicySet, RequestAttributes, applicable, evaluate
from sandbox.mesh.diagnostics import Severity
from sandbox.mesh.loader import load_text
from sandbox.mesh.resources import Resource
from sandbox.mesh.resources.security import Action

SLEEP = "cluster.local/ns/foo/sa/sleep"
ADMIN = "cluster.local/ns/admin/sa/ops"


def policies(text: str) -> list[Resource[Any]]:
    result = load_text(text, "policies.yaml")
    assert not [d for d in result.diagnostics if d.severity is not Severity.INFO], result.diagnostics
    return [r for r in result.resources if r.kind == "AuthorizationPolicy"]


def ap(name: str, spec: str, namespace: str = "foo", annotations: str = "") -> str:
    body = "\n".join("  " + line for line in spec.strip("\n").splitlines())
    return (
        f"apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
        f"metadata:\n  name: {name}\n  namespace: {namespace}\n{annotations}spec:\n{body}\n---\n"
    )


def req(**kw: Any) -> RequestAttributes:
    return RequestAttributes(**kw)


def test_without_policies_everything_is_allowed() -> None:
    decision = evaluate([], req())
    assert decision == Decision(True)
    assert decision.details == ""


def test_an_allow_policy_makes_the_workload_deny_by_default() -> None:
    ps = policies(ap("get-only", "rules:\n- to:\n  - operation: {methods: [GET]}"))
    assert evaluate(ps, req(method="GET")).allowed
    denied = evaluate(ps, req(method="POST"))
    assert not denied.allowed
    assert denied.details == "rbac_access_denied_matched_policy[none]"


@pytest.mark.parametrize(
    ("spec", "allowed"),
    [
        ("{}", False),  # allow-nothing
        ("rules: [{}]", True),  # allow-all
        ("action: DENY\nrules: [{}]", False),  # deny-all
        ("action: DENY", True),  # a DENY policy without rules never matches
        ("action: AUDIT\nrules: [{}]", True),  # AUDIT does not decide
    ],
)
def test_special_policies(spec: str, allowed: bool) -> None:
    assert evaluate(policies(ap("p", spec)), req()).allowed is allowed


def test_deny_wins_over_allow_and_names_the_rule() -> None:
    ps = policies(
        ap("allow-all", "rules: [{}]")
        + ap(
            "deny-post",
            "action: DENY\nrules:\n- to:\n  - operation: {methods: [GET]}\n- to:\n  - operation: {methods: [POST]}",
        )
    )
    decision = evaluate(ps, req(method="POST"))
    assert (decision.allowed, decision.action, decision.rule) == (False, Action.DENY, 1)
    assert decision.details == "rbac_access_denied_matched_policy[ns[foo]-policy[deny-post]-rule[1]]"
    assert evaluate(ps, req(method="PUT")) == Decision(True, Action.ALLOW, "foo", "allow-all", 0)


def test_custom_policy_asks_its_provider_and_fails_closed_without_one() -> None:
    ps = policies(ap("ext", "action: CUSTOM\nprovider: {name: opa}\nrules:\n- to:\n  - operation: {paths: [/admin*]}"))
    assert evaluate(ps, req(path="/admin/x")).details == "ext_authz_denied"
    assert evaluate(ps, req(path="/admin/x"), custom=lambda provider, r: provider == "opa").allowed
    assert evaluate(ps, req(path="/public")).allowed


def test_dry_run_policies_do_not_decide() -> None:
    ps = policies(
        ap("deny-all", "action: DENY\nrules: [{}]", annotations='  annotations: {istio.io/dry-run: "true"}\n')
    )
    assert evaluate(ps, req()).allowed


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
    ("attrs", "allowed"),
    [
        ({"source_principal": SLEEP, "method": "GET", "path": "/info/1", "headers": {"version": "v1"}}, True),
        ({"source_principal": ADMIN, "method": "POST", "path": "/data", "headers": {"version": "v2"}}, True),
        ({"source_principal": SLEEP, "method": "POST", "path": "/info", "headers": {"version": "v1"}}, False),
        ({"source_principal": SLEEP, "method": "GET", "path": "/info", "headers": {"version": "v3"}}, False),
        ({"source_principal": SLEEP, "method": "GET", "path": "/info"}, False),  # when: header missing
        ({"source_principal": "cluster.local/ns/bar/sa/x", "method": "GET", "path": "/info"}, False),
        ({"method": "GET", "path": "/info", "headers": {"version": "v1"}}, False),  # plaintext: no identity
    ],
)
def test_from_to_when_are_anded_and_their_entries_ored(attrs: dict[str, Any], allowed: bool) -> None:
    assert evaluate(policies(ap("p", RULE)), req(**attrs)).allowed is allowed


@pytest.mark.parametrize(
    ("operation", "attrs", "allowed"),
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
        ("{hosts: ['*.example.com']}", {"host": "API.Example.com"}, True),  # hosts are case-insensitive
        ("{ports: ['8080']}", {"port": 8080}, True),
        ("{ports: ['8080']}", {"port": 9080}, False),
        ("{notPorts: ['8080']}", {"port": 9080}, True),
        ("{methods: [GET], notPaths: [/admin]}", {"method": "GET", "path": "/admin"}, False),
        ("{notMethods: [DELETE]}", {"method": "DELETE"}, False),
    ],
)
def test_operation_fields_and_string_matching(operation: str, attrs: dict[str, Any], allowed: bool) -> None:
    ps = policies(ap("p", f"rules:\n- to:\n  - operation: {operation}"))
    assert evaluate(ps, req(**attrs)).allowed is allowed


@pytest.mark.parametrize(
    ("source", "attrs", "allowed"),
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
        ("{ipBlocks: ['10.0.0.0/8']}", {"source_ip": "10.1.2.3"}, True),
        ("{ipBlocks: ['10.0.0.0/8']}", {"source_ip": "192.168.0.1"}, False),
        ("{notIpBlocks: ['10.1.2.3']}", {"source_ip": "10.1.2.3"}, False),
        ("{remoteIpBlocks: ['1.2.3.0/24']}", {"source_ip": "10.0.0.1", "remote_ip": "1.2.3.4"}, True),
    ],
)
def test_source_fields(source: str, attrs: dict[str, Any], allowed: bool) -> None:
    ps = policies(ap("p", f"rules:\n- from:\n  - source: {source}"))
    assert evaluate(ps, req(**attrs)).allowed is allowed


@pytest.mark.parametrize(
    ("condition", "attrs", "allowed"),
    [
        ("{key: source.principal, values: ['*/sa/sleep']}", {"source_principal": SLEEP}, True),
        ("{key: source.namespace, notValues: [foo]}", {"source_principal": SLEEP}, False),
        ("{key: 'request.auth.claims[groups]', values: [group1]}", {"claims": {"groups": ["group1", "group2"]}}, True),
        ("{key: 'request.auth.claims[groups]', values: [group3]}", {"claims": {"groups": ["group1", "group2"]}}, False),
        (
            "{key: 'request.auth.claims[nested][role]', values: [admin]}",
            {"claims": {"nested": {"role": "admin"}}},
            True,
        ),
        ("{key: request.auth.principal, values: ['iss/sub']}", {"request_principal": "iss/sub"}, True),
        ("{key: request.auth.audiences, values: [bookinfo]}", {"claims": {"aud": ["bookinfo", "x"]}}, True),
        ("{key: request.auth.presenter, values: [web]}", {"claims": {"azp": "web"}}, True),
        ("{key: destination.port, values: ['9080']}", {"port": 9080}, True),
        ("{key: source.ip, values: ['10.0.0.0/8']}", {"source_ip": "10.0.0.9"}, True),
        ("{key: connection.sni, values: ['*.local']}", {"sni": "outbound_.9080_._.a.local"}, True),
        ("{key: 'request.headers[User-Agent]', values: ['curl/*']}", {"headers": {"user-agent": "curl/8.0"}}, True),
        ("{key: 'experimental.envoy.filters.x[y]', values: [z]}", {}, True),  # unsupported keys are ignored
    ],
)
def test_conditions(condition: str, attrs: dict[str, Any], allowed: bool) -> None:
    ps = policies(ap("p", f"rules:\n- when:\n  - {condition}"))
    assert evaluate(ps, req(**attrs)).allowed is allowed


def test_requiring_a_jwt_with_deny_not_request_principals() -> None:
    # authn-policy task: no token -> 403 on /headers only; /ip stays open.
    ps = policies(
        ap(
            "require-jwt",
            "action: DENY\nrules:\n- from:\n  - source: {notRequestPrincipals: ['*']}\n"
            "  to:\n  - operation: {paths: [/headers]}",
        )
    )
    assert not evaluate(ps, req(path="/headers")).allowed
    assert evaluate(ps, req(path="/ip")).allowed
    assert evaluate(
        ps, req(path="/headers", request_principal="testing@secure.istio.io/testing@secure.istio.io")
    ).allowed


def test_tcp_ignores_http_fields_in_deny_and_never_matches_them_in_allow() -> None:
    deny = policies(ap("deny", "action: DENY\nrules:\n- to:\n  - operation: {methods: [POST], ports: ['8080']}"))
    assert not evaluate(deny, req(http=False, port=8080)).allowed  # the documented pitfall: all TCP on 8080
    assert evaluate(deny, req(http=False, port=9000)).allowed
    allow = policies(
        ap("allow", "rules:\n- to:\n  - operation: {methods: [GET]}\n- to:\n  - operation: {ports: ['5432']}")
    )
    assert evaluate(allow, req(http=True, method="GET", port=1)).allowed
    assert not evaluate(allow, req(http=False, port=1)).allowed
    assert evaluate(allow, req(http=False, port=5432)) == Decision(True, Action.ALLOW, "foo", "allow", 1)


SCOPED = (
    ap("mesh", "action: DENY\nrules: [{}]", namespace="istio-system")
    + ap("ns", "{}")
    + ap("reviews", "selector:\n  matchLabels: {app: reviews}\nrules: [{}]")
    + ap("other-ns", "rules: [{}]", namespace="bar")
    + ap("waypoint", "targetRefs:\n- {kind: Service, name: reviews}\nrules: [{}]")
)


def test_applicable_selects_by_namespace_root_namespace_and_labels() -> None:
    ps = policies(SCOPED)
    names = [p.name for p in applicable(ps, {"app": "reviews", "version": "v1"}, "foo")]
    assert names == ["mesh", "ns", "reviews"]
    assert [p.name for p in applicable(ps, {"app": "ratings"}, "foo")] == ["mesh", "ns"]
    assert [p.name for p in applicable(ps, {"app": "x"}, "bar", root_namespace="istio-config")] == ["other-ns"]


def test_a_compiled_policy_set_gives_the_same_decisions() -> None:
    ps = policies(ap("p", RULE))
    compiled = PolicySet.compile(ps)
    for attrs in ({"source_principal": SLEEP, "method": "GET", "path": "/info", "headers": {"version": "v1"}}, {}):
        assert evaluate(compiled, req(**attrs)) == evaluate(ps, req(**attrs))
