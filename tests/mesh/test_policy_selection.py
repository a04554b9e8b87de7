"""Which AuthorizationPolicies and RequestAuthentications apply to a workload (Istio's selection)."""

from __future__ import annotations

from typing import Any

from sandbox.mesh.authz import applicable, dry_run
from sandbox.mesh.diagnostics import Severity
from sandbox.mesh.loader import load_text
from sandbox.mesh.resources import Resource


def policies(text: str) -> list[Resource[Any]]:
    result = load_text(text, "policies.yaml")
    assert not [d for d in result.diagnostics if d.severity is not Severity.INFO], result.diagnostics
    return list(result.resources)


def ap(name: str, spec: str, namespace: str = "foo", annotations: str = "", kind: str = "AuthorizationPolicy") -> str:
    body = "\n".join("  " + line for line in spec.strip("\n").splitlines())
    return (
        f"apiVersion: security.istio.io/v1\nkind: {kind}\n"
        f"metadata:\n  name: {name}\n  namespace: {namespace}\n{annotations}spec:\n{body}\n---\n"
    )


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


def test_request_authentications_are_selected_the_same_way_and_kinds_do_not_mix() -> None:
    jwt = "jwtRules:\n- issuer: testing@secure.istio.io"
    ps = policies(
        ap("all", jwt, namespace="istio-system", kind="RequestAuthentication")
        + ap("httpbin", "selector:\n  matchLabels: {app: httpbin}\n" + jwt, kind="RequestAuthentication")
        + ap("deny", "action: DENY\nrules: [{}]")
    )
    found = applicable(ps, {"app": "httpbin"}, "foo", kind="RequestAuthentication")
    assert [p.name for p in found] == ["all", "httpbin"]
    assert [p.name for p in applicable(ps, {"app": "other"}, "foo", kind="RequestAuthentication")] == ["all"]
    assert [p.name for p in applicable(ps, {"app": "httpbin"}, "foo")] == ["deny"]


def test_the_dry_run_annotation() -> None:
    marked = policies(ap("p", "rules: [{}]", annotations='  annotations: {istio.io/dry-run: "true"}\n'))
    assert dry_run(marked[0])
    assert not dry_run(policies(ap("q", "rules: [{}]"))[0])
