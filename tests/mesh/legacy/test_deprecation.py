"""One SBX201 per legacy resource: where it is, what replaces it, and the translated YAML."""

from __future__ import annotations

from sandbox.mesh.diagnostics import Severity
from sandbox.mesh.loader import load_texts
from sandbox.mesh.resources import lookup_kind

POLICY = """\
# enable mTLS for the namespace
apiVersion: authentication.istio.io/v1alpha1
kind: Policy
metadata:
  name: default
  namespace: foo
spec:
  peers:
  - mtls: {}
"""

RBAC = """\
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRole
metadata: {name: viewer, namespace: foo}
spec:
  rules: [{services: ["*"], methods: [GET]}]
---
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRoleBinding
metadata: {name: viewer, namespace: foo}
spec:
  subjects: [{user: "*"}]
  roleRef: {kind: ServiceRole, name: viewer}
---
apiVersion: rbac.istio.io/v1alpha1
kind: ClusterRbacConfig
metadata: {name: default}
spec:
  mode: ON_WITH_INCLUSION
  inclusion: {namespaces: [foo]}
"""


def test_every_legacy_resource_gets_a_deprecation_warning_at_its_line() -> None:
    result = load_texts([("istio/authn.yaml", POLICY), ("istio/rbac.yaml", RBAC)])
    found = [(d.file, d.line, d.column, d.resource) for d in result.diagnostics if d.code == "SBX201"]
    assert found == [
        ("istio/authn.yaml", 2, 1, "Policy/foo/default"),
        ("istio/rbac.yaml", 1, 1, "ServiceRole/foo/viewer"),
        ("istio/rbac.yaml", 7, 1, "ServiceRoleBinding/foo/viewer"),
        ("istio/rbac.yaml", 14, 1, "ClusterRbacConfig/istio-system/default"),
    ]
    assert all(d.severity is Severity.WARNING for d in result.diagnostics if d.code == "SBX201")


def test_the_message_names_the_replacement_and_the_detail_holds_it() -> None:
    result = load_texts([("istio/rbac.yaml", RBAC)])
    role = next(d for d in result.diagnostics if d.resource == "ServiceRole/foo/viewer")
    assert role.message == (
        "rbac.istio.io/v1alpha1 ServiceRole was removed in Istio 1.6; use security.istio.io/v1 "
        "AuthorizationPolicy (run 'sandbox convert istio/rbac.yaml')"
    )
    assert role.detail == (
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: viewer\n"
        "  namespace: foo\nspec:\n  rules:\n  - to:\n    - operation:\n        methods:\n        - GET\n"
        "  action: ALLOW\n"
    )
    policy = load_texts([("a.yaml", POLICY.replace("peers:", "origins: [{jwt: {issuer: x}}]\n  peers:"))])
    (dep,) = [d for d in policy.diagnostics if d.code == "SBX201"]
    assert "use security.istio.io/v1 PeerAuthentication, RequestAuthentication and AuthorizationPolicy" in dep.message


def test_translated_resources_point_at_the_legacy_file() -> None:
    result = load_texts([("istio/rbac.yaml", RBAC)])
    modern = {r.ref: (r.origin.file, r.origin.line) for r in result.resources if r.group == "security.istio.io"}
    assert modern == {
        "AuthorizationPolicy/foo/viewer": ("istio/rbac.yaml", 7),
        "AuthorizationPolicy/foo/rbac-allow-nothing": ("istio/rbac.yaml", 14),
    }


def test_legacy_kinds_are_registered_and_cluster_scoped_ones_land_in_istio_system() -> None:
    info = lookup_kind("clusterrbacconfigs")
    assert info is not None and info.legacy and info.cluster_scoped
    mesh = load_texts(
        [("m.yaml", "apiVersion: authentication.istio.io/v1alpha1\nkind: MeshPolicy\nmetadata: {name: default}\n")]
    )
    assert [r.ref for r in mesh.resources] == [
        "MeshPolicy/istio-system/default",
        "PeerAuthentication/istio-system/default",
    ]


def test_a_typo_in_a_legacy_field_is_reported_like_any_other() -> None:
    result = load_texts([("r.yaml", RBAC.replace("roleRef:", "roleref:"))])
    (typo,) = [d for d in result.diagnostics if d.code == "SBX002"]
    assert "did you mean 'roleRef'" in typo.message and typo.line == 12
