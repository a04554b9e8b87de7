"""Each legacy kind becomes the modern YAML the migration blog and tool prescribe."""

from __future__ import annotations

import textwrap
from typing import Any

import pytest

from sandbox.mesh.diagnostics import Diagnostic, Severity
from sandbox.mesh.legacy.common import document
from sandbox.mesh.loader import load_text
from sandbox.mesh.resources import KINDS, Resource
from sandbox.mesh.yamlsrc import dump_all_yaml


def translate(text: str) -> tuple[str, list[Diagnostic]]:
    """The translated YAML, and the diagnostics other than SBX201."""
    result = load_text(textwrap.dedent(text), "legacy.yaml")
    assert not result.errors, result.errors
    modern: list[Resource[Any]] = [r for r in result.resources if not KINDS[r.kind].legacy]
    notes = [d for d in result.diagnostics if d.code != "SBX201"]
    return dump_all_yaml([document(r) for r in modern]), notes


def codes(notes: list[Diagnostic]) -> list[str]:
    return [d.code for d in notes]


@pytest.mark.parametrize(
    ("peers", "mode"),
    [
        ("  - mtls: {}", "STRICT"),
        ("  - mtls:", "STRICT"),  # a bare `mtls:` is the proto's zero value, STRICT
        ("  - mtls: {mode: PERMISSIVE}", "PERMISSIVE"),
        ("  - mtls: {allowTls: true}", "PERMISSIVE"),
        ("  - {}", "PERMISSIVE"),  # no mTLS method at all
    ],
)
def test_mesh_policy_becomes_a_mesh_wide_peer_authentication(peers: str, mode: str) -> None:
    yaml, notes = translate(
        "apiVersion: authentication.istio.io/v1alpha1\nkind: MeshPolicy\nmetadata:\n  name: default\n"
        f"spec:\n  peers:\n{peers}\n"
    )
    assert yaml == (
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n  name: default\n"
        f"  namespace: istio-system\nspec:\n  mtls:\n    mode: {mode}\n"
    )
    assert notes == []


def test_namespace_policy_named_default_is_namespace_wide_and_others_were_rejected() -> None:
    yaml, notes = translate(
        """\
        apiVersion: authentication.istio.io/v1alpha1
        kind: Policy
        metadata: {name: default, namespace: foo}
        spec:
          peers:
          - mtls:
          peerIsOptional: true
        ---
        apiVersion: authentication.istio.io/v1alpha1
        kind: Policy
        metadata: {name: strict, namespace: foo}
        spec:
          peers: [{mtls: {}}]
        """
    )
    assert yaml == (
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n  name: default\n"
        "  namespace: foo\nspec:\n  mtls:\n    mode: PERMISSIVE\n"
    )
    assert [(d.code, d.severity, d.line) for d in notes] == [
        ("SBX203", Severity.INFO, 4),  # peerIsOptional made it PERMISSIVE
        ("SBX202", Severity.WARNING, 11),
    ]
    assert "must be named 'default'" in notes[1].message


BLOG_POLICY = """\
apiVersion: authentication.istio.io/v1alpha1
kind: Policy
metadata:
  name: httpbin
  namespace: foo
spec:
  targets:
  - name: httpbin
    ports:
    - number: 8000
  peers:
  - mtls:
      mode: PERMISSIVE
  origins:
  - jwt:
      issuer: testing@example.com
      jwksUri: https://www.example.com/jwks.json
      jwtHeaders: [x-jwt]
      triggerRules:
      - includedPaths:
        - prefix: /admin/
        excludedPaths:
        - exact: /admin/status
  principalBinding: USE_ORIGIN
"""


def test_policy_with_target_port_and_jwt_is_the_blogs_three_resources() -> None:
    yaml, notes = translate(BLOG_POLICY)
    assert yaml == textwrap.dedent(
        """\
        apiVersion: security.istio.io/v1
        kind: PeerAuthentication
        metadata:
          name: httpbin
          namespace: foo
        spec:
          selector:
            matchLabels:
              app: httpbin
          portLevelMtls:
            '8000':
              mode: PERMISSIVE
        ---
        apiVersion: security.istio.io/v1
        kind: RequestAuthentication
        metadata:
          name: httpbin
          namespace: foo
        spec:
          selector:
            matchLabels:
              app: httpbin
          jwtRules:
          - issuer: testing@example.com
            jwksUri: https://www.example.com/jwks.json
            fromHeaders:
            - name: x-jwt
        ---
        apiVersion: security.istio.io/v1
        kind: AuthorizationPolicy
        metadata:
          name: httpbin-jwt
          namespace: foo
        spec:
          selector:
            matchLabels:
              app: httpbin
          rules:
          - from:
            - source:
                notRequestPrincipals:
                - '*'
            to:
            - operation:
                ports:
                - '8000'
                paths:
                - /admin/*
                notPaths:
                - /admin/status
          action: DENY
        """
    )
    # service vs workload port (info), USE_ORIGIN and 401 -> 403 (warnings)
    assert sorted((d.code, d.path) for d in notes) == [
        ("SBX202", "spec/origins"),
        ("SBX202", "spec/principalBinding"),
        ("SBX203", "spec/targets[0]"),
    ]


def test_regex_trigger_paths_require_the_token_on_more_paths_and_say_so() -> None:
    yaml, notes = translate(
        BLOG_POLICY.replace("- prefix: /admin/", "- regex: '^/admin/.*'").replace(
            "  principalBinding: USE_ORIGIN\n", ""
        )
    )
    assert "paths:\n" not in yaml and "notPaths:\n        - /admin/status" in yaml
    (regex,) = [d for d in notes if "regex" in d.message]
    assert (regex.severity, regex.line, regex.path) == (
        Severity.WARNING,
        20,
        "spec/origins[0]/jwt/triggerRules[0]/includedPaths",
    )


def test_optional_origin_needs_no_authorization_policy() -> None:
    yaml, notes = translate(BLOG_POLICY.replace("principalBinding: USE_ORIGIN", "originIsOptional: true"))
    assert "kind: RequestAuthentication" in yaml and "kind: AuthorizationPolicy" not in yaml
    assert any("originIsOptional" in d.message for d in notes)


RBAC = """\
apiVersion: rbac.istio.io/v1alpha1
kind: ClusterRbacConfig
metadata: {name: default}
spec:
  mode: ON_WITH_INCLUSION
  inclusion:
    services: [reviews.default.svc.cluster.local]
    namespaces: [foo]
---
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRole
metadata: {name: reviews-viewer, namespace: default}
spec:
  rules:
  - services: [reviews.default.svc.cluster.local, ratings.default.svc.cluster.local]
    methods: [GET]
    paths: ["/reviews/*"]
    constraints:
    - key: destination.labels[version]
      values: [v2]
    - key: request.headers[x-canary]
      values: ["true"]
---
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRoleBinding
metadata: {name: reviews-viewer, namespace: default}
spec:
  subjects:
  - user: cluster.local/ns/default/sa/productpage
  - properties:
      source.namespace: foo
  - properties:
      request.auth.claims[groups]: admins
  roleRef: {kind: ServiceRole, name: reviews-viewer}
"""


def test_rbac_becomes_allow_nothing_plus_allow_rules_where_rbac_is_on() -> None:
    yaml, notes = translate(RBAC)
    assert yaml == textwrap.dedent(
        """\
        apiVersion: security.istio.io/v1
        kind: AuthorizationPolicy
        metadata:
          name: rbac-allow-nothing
          namespace: foo
        spec: {}
        ---
        apiVersion: security.istio.io/v1
        kind: AuthorizationPolicy
        metadata:
          name: rbac-allow-nothing-reviews
          namespace: default
        spec:
          selector:
            matchLabels:
              app: reviews
        ---
        apiVersion: security.istio.io/v1
        kind: AuthorizationPolicy
        metadata:
          name: reviews-viewer
          namespace: default
        spec:
          selector:
            matchLabels:
              app: reviews
              version: v2
          rules:
          - from:
            - source:
                principals:
                - cluster.local/ns/default/sa/productpage
            - source:
                namespaces:
                - foo
            to:
            - operation:
                methods:
                - GET
                paths:
                - /reviews/*
            when:
            - key: request.headers[x-canary]
              values:
              - 'true'
          - to:
            - operation:
                methods:
                - GET
                paths:
                - /reviews/*
            when:
            - key: request.headers[x-canary]
              values:
              - 'true'
            - key: request.auth.claims[groups]
              values:
              - admins
          action: ALLOW
        """
    )
    # ratings is not covered by the inclusion: the rule had no effect there (a faithful note)
    assert [(d.code, d.path) for d in notes] == [("SBX203", "spec/rules[0]")]
    assert "ratings" in notes[0].message


def test_exclusion_exempts_services_with_an_allow_all_policy() -> None:
    yaml, notes = translate(RBAC.replace("ON_WITH_INCLUSION", "ON_WITH_EXCLUSION").replace("inclusion:", "exclusion:"))
    assert "name: rbac-allow-nothing\n  namespace: default\nspec: {}" in yaml
    assert "name: rbac-allow-all-reviews\n  namespace: default\nspec:\n  selector:\n" in yaml
    assert "  rules:\n  - {}\n  action: ALLOW\n" in yaml
    assert "namespace: foo" not in yaml  # an excluded namespace gets nothing
    (gap,) = [d for d in notes if d.code == "SBX202"]
    assert "(default)" in gap.message and gap.path == "spec/mode"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("roleRef: {kind: ServiceRole, name: reviews-viewer}", "roleRef: {kind: ServiceRole, name: missing}"),
            "refers to ServiceRole default/missing",
        ),
        (("key: request.headers[x-canary]", "key: destination.user"), "no destination.user condition"),
        (
            ("reviews.default.svc.cluster.local, ratings", "review*, ratings"),
            "cannot be written as a workload selector",
        ),
        (("source.namespace: foo", "source.service: foo"), "property 'source.service' is not supported"),
    ],
)
def test_what_cannot_be_translated_is_reported_not_dropped(change: tuple[str, str], expected: str) -> None:
    _, notes = translate(RBAC.replace(*change))
    assert any(d.code == "SBX202" and expected in d.message for d in notes), notes


def test_rbac_without_a_config_is_translated_with_a_warning() -> None:
    yaml, notes = translate(RBAC.split("---\n", 1)[1])
    assert "name: reviews-viewer" in yaml and "rbac-allow-nothing" not in yaml
    assert any(d.code == "SBX202" and "no ClusterRbacConfig" in d.message for d in notes)


def test_translated_yaml_loads_back_as_clean_modern_resources() -> None:
    yaml, _ = translate(BLOG_POLICY + "---\n" + RBAC)
    result = load_text(yaml, "converted.yaml")
    assert result.diagnostics == ()
    assert {r.kind for r in result.resources} == {"PeerAuthentication", "RequestAuthentication", "AuthorizationPolicy"}


# Istio's own Bookinfo RBAC samples (samples/bookinfo/platform/kube/rbac/, 1.0-1.5).
BOOKINFO_RBAC = """\
apiVersion: "rbac.istio.io/v1alpha1"
kind: RbacConfig
metadata:
  name: default
spec:
  mode: 'ON_WITH_INCLUSION'
  inclusion:
    namespaces: ["default"]
---
apiVersion: "rbac.istio.io/v1alpha1"
kind: ServiceRole
metadata:
  name: service-viewer
  namespace: default
spec:
  rules:
  - services: ["*"]
    methods: ["GET"]
    constraints:
    - key: "destination.labels[app]"
      values: ["productpage", "details", "reviews", "ratings"]
---
apiVersion: "rbac.istio.io/v1alpha1"
kind: ServiceRoleBinding
metadata:
  name: bind-service-viewer
  namespace: default
spec:
  subjects:
  - properties:
      source.namespace: "istio-system"
  - properties:
      source.namespace: "default"
  roleRef:
    kind: ServiceRole
    name: "service-viewer"
---
apiVersion: "rbac.istio.io/v1alpha1"
kind: ServiceRole
metadata:
  name: mongodb-viewer
  namespace: default
spec:
  rules:
  - services: ["mongodb.default.svc.cluster.local"]
    constraints:
    - key: "destination.port"
      values: ["27017"]
---
apiVersion: "rbac.istio.io/v1alpha1"
kind: ServiceRoleBinding
metadata:
  name: bind-mongodb-viewer
  namespace: default
spec:
  subjects:
  - user: "spiffe://cluster.local/ns/default/sa/bookinfo-ratings-v2"
  roleRef:
    kind: ServiceRole
    name: "mongodb-viewer"
"""


def test_bookinfo_rbac_samples() -> None:
    yaml, notes = translate(BOOKINFO_RBAC)
    names = [line.split(": ")[1] for line in yaml.splitlines() if line.startswith("  name: ")]
    assert names == [
        "rbac-allow-nothing",
        "bind-service-viewer-productpage",
        "bind-service-viewer-details",
        "bind-service-viewer-reviews",
        "bind-service-viewer-ratings",
        "bind-mongodb-viewer",
    ]
    assert (
        "  selector:\n    matchLabels:\n      app: details\n  rules:\n  - from:\n    - source:\n        namespaces:\n"
        "        - istio-system\n    - source:\n        namespaces:\n        - default\n    to:\n    - operation:\n"
        "        methods:\n        - GET\n  action: ALLOW\n"
    ) in yaml
    assert (
        "        principals:\n        - cluster.local/ns/default/sa/bookinfo-ratings-v2\n    to:\n    - operation:\n"
        "        ports:\n        - '27017'\n"
    ) in yaml
    assert [(d.code, d.resource) for d in notes] == [("SBX203", "ServiceRoleBinding/default/bind-mongodb-viewer")]


@pytest.mark.parametrize(
    "text",
    [
        "apiVersion: rbac.istio.io/v1alpha1\nkind: ClusterRbacConfig\nmetadata: {name: default}\n"
        "spec:\n  mode: ON_WITH_INCLUSION\n  inclusion: {namespaces: [istio-system]}\n",
        "apiVersion: authentication.istio.io/v1alpha1\nkind: Policy\n"
        "metadata: {name: default, namespace: istio-system}\nspec:\n  peers: [{mtls: {}}]\n",
        "apiVersion: rbac.istio.io/v1alpha1\nkind: ServiceRole\nmetadata: {name: r, namespace: istio-system}\n"
        "spec:\n  rules: [{services: ['*']}]\n---\n"
        "apiVersion: rbac.istio.io/v1alpha1\nkind: ServiceRoleBinding\nmetadata: {name: b, namespace: istio-system}\n"
        "spec:\n  subjects: [{user: '*'}]\n  roleRef: {kind: ServiceRole, name: r}\n",
    ],
)
def test_nothing_namespace_wide_lands_in_the_root_namespace_where_it_would_be_mesh_wide(text: str) -> None:
    yaml, notes = translate(text)
    assert yaml == ""
    assert any(d.code == "SBX202" and "would be mesh-wide" in d.message for d in notes), notes


def test_a_name_clash_between_translations_is_reported() -> None:
    clash = RBAC.replace(
        "name: reviews-viewer, namespace: default}\nspec:\n  subjects",
        "name: rbac-allow-nothing-reviews, namespace: default}\nspec:\n  subjects",
    )
    _, notes = translate(clash)
    assert any(
        d.code == "SBX202" and "AuthorizationPolicy/default/rbac-allow-nothing-reviews" in d.message for d in notes
    )
