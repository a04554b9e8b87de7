"""The translated AuthorizationPolicies mean what the v1alpha1 RBAC meant: for every request in a
table, the legacy decision (rbac_model, written from the v1alpha1 docs) equals the data path's RBAC
engine's, given the policies the control plane compiles for the called workload."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from sandbox.control.compile_access import authz_policy
from sandbox.mesh.authz import applicable
from sandbox.mesh.loader import load_text
from sandbox.mesh.resources import KINDS, Resource
from sandbox.proxy.authz import Authorizer, Verdict

from .rbac_model import Call, any_match, legacy_allows

PRODUCTPAGE = "cluster.local/ns/default/sa/bookinfo-productpage"
SLEEP = "cluster.local/ns/foo/sa/sleep"
OTHER = "cluster.local/ns/bar/sa/x"

ROLES = """\
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRole
metadata: {name: productpage-viewer, namespace: default}
spec:
  rules:
  - services: ["productpage.default.svc.cluster.local"]
    methods: ["GET"]
---
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRoleBinding
metadata: {name: bind-productpage-viewer, namespace: default}
spec:
  subjects:
  - user: "*"
  roleRef: {kind: ServiceRole, name: productpage-viewer}
---
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRole
metadata: {name: details-reviews-viewer, namespace: default}
spec:
  rules:
  - services: ["details.default.svc.cluster.local", "reviews.default.svc.cluster.local"]
    methods: ["GET"]
    paths: ["/api/*", "/health"]
  - services: ["reviews.default.svc.cluster.local"]
    methods: ["POST"]
    constraints:
    - key: destination.labels[version]
      values: ["v2"]
    - key: request.headers[x-user]
      values: ["jason", "adm*"]
---
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRoleBinding
metadata: {name: bind-details-reviews, namespace: default}
spec:
  subjects:
  - user: "cluster.local/ns/default/sa/bookinfo-productpage"
  - properties:
      source.namespace: foo
      request.headers[x-user]: "jason"
  roleRef: {kind: ServiceRole, name: details-reviews-viewer}
---
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRole
metadata: {name: everything, namespace: foo}
spec:
  rules:
  - services: ["*"]
    methods: ["*"]
    notPaths: ["/admin*"]
---
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRoleBinding
metadata: {name: foo-internal, namespace: foo}
spec:
  subjects:
  - properties: {source.namespace: "foo"}
  - names: ["cluster.local/ns/default/*"]
    notNames: ["cluster.local/ns/default/sa/bookinfo-productpage"]
  roleRef: {kind: ServiceRole, name: everything}
---
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRole
metadata: {name: ratings-writer, namespace: default}
spec:
  rules:
  - services: ["ratings.default.svc.cluster.local"]
    methods: ["POST"]
---
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRoleBinding
metadata: {name: ratings-shadow, namespace: default}
spec:
  mode: PERMISSIVE
  subjects: [{user: "*"}]
  roleRef: {kind: ServiceRole, name: ratings-writer}
"""


def config(mode: str, extra: str = "") -> str:
    return (
        f"apiVersion: rbac.istio.io/v1alpha1\nkind: ClusterRbacConfig\nmetadata: {{name: default}}\n"
        f"spec:\n  mode: '{mode}'\n{extra}---\n"
    )


CONFIGS = {
    "on": config("ON"),
    "off": config("OFF"),
    "inclusion-services": config(
        "ON_WITH_INCLUSION",
        "  inclusion:\n    services: [productpage.default.svc.cluster.local, reviews.default.svc.cluster.local]\n",
    ),
    "inclusion-namespace": config("ON_WITH_INCLUSION", "  inclusion:\n    namespaces: [foo]\n"),
    "exclusion": config(
        "ON_WITH_EXCLUSION",
        "  exclusion:\n    services: [details.default.svc.cluster.local]\n    namespaces: [bar]\n",
    ),
    "permissive": config("ON", "  enforcementMode: PERMISSIVE\n"),
    "legacy-rbacconfig": config("ON").replace("ClusterRbacConfig", "RbacConfig"),
}

CALLS = [
    Call(service, namespace, version, method, path, principal, headers)
    for service, namespace, version, method, path, principal, headers in itertools.product(
        ["productpage", "reviews", "details", "ratings"],
        ["default", "foo"],
        ["v1", "v2"],
        ["GET", "POST"],
        ["/", "/api/v1/products", "/health", "/admin/x"],
        ["", PRODUCTPAGE, SLEEP, OTHER],
        [{}, {"x-user": "jason"}, {"x-user": "admin"}],
    )
]


def evaluate(policies: list[Resource[Any]], request: Any) -> Verdict:
    return Authorizer(authz_policy(p) for p in policies).check(request)


def load(text: str) -> tuple[list[Resource[Any]], list[Resource[Any]]]:
    result = load_text(text, "legacy.yaml")
    assert not result.errors, result.errors
    legacy = [r for r in result.resources if KINDS[r.kind].legacy]
    modern = [r for r in result.resources if r.kind == "AuthorizationPolicy"]
    return legacy, modern


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_translated_policies_decide_like_v1alpha1_rbac(name: str) -> None:
    legacy, modern = load(CONFIGS[name] + ROLES)
    outcomes = set()
    for call in CALLS:
        expected = legacy_allows(legacy, call)
        decision = evaluate(applicable(modern, call.labels, call.namespace), call.attributes())
        assert decision.allowed is expected, (call, decision)
        outcomes.add(expected)
    if name not in ("off", "permissive"):
        assert outcomes == {True, False}  # the table exercises both answers


def test_a_namespace_the_files_do_not_name_is_the_documented_gap_of_mode_on() -> None:
    legacy, modern = load(CONFIGS["on"] + ROLES)
    call = Call("anything", namespace="elsewhere")
    assert not legacy_allows(legacy, call)
    assert evaluate(applicable(modern, call.labels, call.namespace), call.attributes()).allowed


JWT_POLICY = """\
apiVersion: authentication.istio.io/v1alpha1
kind: Policy
metadata: {name: httpbin, namespace: foo}
spec:
  targets: [{name: httpbin}]
  origins:
  - jwt:
      issuer: issuer-a
      triggerRules:
      - includedPaths: [{prefix: /admin/}]
        excludedPaths: [{exact: /admin/status}, {suffix: .png}]
      - includedPaths: [{exact: /login}]
  - jwt:
      issuer: issuer-b
      triggerRules:
      - includedPaths: [{suffix: /secret}]
"""


def _selected(rules: list[tuple[list[str], list[str]]], path: str) -> bool:
    """v1alpha1 TriggerRule: no excluded path matches, and an included one does (or none is listed)."""
    return any(not any_match(tuple(ex), path) and (not inc or any_match(tuple(inc), path)) for inc, ex in rules)


@pytest.mark.parametrize(
    "path",
    ["/", "/admin/", "/admin/users", "/admin/status", "/admin/logo.png", "/login", "/login/x", "/a/secret", "/x"],
)
@pytest.mark.parametrize("token", [False, True])
def test_trigger_rules_require_a_token_where_v1alpha1_did(path: str, token: bool) -> None:
    result = load_text(JWT_POLICY, "authn.yaml")
    modern = [r for r in result.resources if r.kind == "AuthorizationPolicy"]
    issuer_a = [(["/admin/*"], ["/admin/status", "*.png"]), (["/login"], [])]
    issuer_b: list[tuple[list[str], list[str]]] = [(["*/secret"], [])]
    required = _selected(issuer_a, path) or _selected(issuer_b, path)
    legacy_allowed = token or not required  # v1alpha1 answered 401 where a token was required and missing
    call = Call("httpbin", "foo", path=path, request_principal="issuer-a/alice" if token else "")
    assert evaluate(applicable(modern, call.labels, "foo"), call.attributes()).allowed is legacy_allowed
