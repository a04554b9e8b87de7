"""SBX7xx: what this version's sidecars do not enforce is said on the resource, never left silent."""

from __future__ import annotations

import pytest

from .conftest import Check

CODES = {"SBX701", "SBX702", "SBX703", "SBX705", "SBX706"}

POLICIES = {
    "PeerAuthentication": "spec: {mtls: {mode: STRICT}}",
    "RequestAuthentication": "spec: {jwtRules: [{issuer: testing@secure.istio.io}]}",
    "AuthorizationPolicy": "spec: {rules: [{from: [{source: {principals: [cluster.local/ns/default/sa/pp]}}]}]}",
}
CASES = {
    "envoy filter": """\
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: lua}
spec:
  configPatches:  # !SBX702 warning spec/configPatches
  - {applyTo: HTTP_FILTER, patch: {operation: MERGE}}
""",
    "telemetry: what is applied and what is not": """\
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  accessLogging:
  - disabled: true
    filter: {expression: response.code >= 400}  # !SBX703 warning spec/accessLogging[0]/filter
  tracing:
  - randomSamplingPercentage: 10
    providers: [{name: otel}]  # !SBX703 warning spec/tracing[0]/providers[0]
  metrics:
  - overrides: [{disabled: true}]  # !SBX703 warning spec/metrics[0]
""",
    "claim matches are enforced now": """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match:
    - headers: {"@request.auth.claims.groups": {exact: admin}}
    route: [{destination: {host: reviews}}]
""",
    "security policies: enforced, unless they target what the sandbox does not run": """\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-nothing}
spec: {}
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt}
spec: {jwtRules: [{issuer: testing@secure.istio.io}]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: waypoint}
spec:
  targetRefs:  # !SBX701 warning spec/targetRefs
  - {kind: Service, group: "", name: reviews}
  rules: [{}]
""",
    "identity fields hold: the caller's certificate says who it is": """\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: from-productpage}
spec:
  rules:
  - from:
    - source:
        principals: [cluster.local/ns/default/sa/pp]
        notNamespaces: [legacy]
    - source: {requestPrincipals: ["*"]}
    when:
    - key: source.namespace
      values: [default]
""",
    "a CUSTOM provider that cannot be called": """\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext-authz}
spec:
  action: CUSTOM
  provider:
    name: nobody  # !SBX705 warning spec/provider/name
  rules: [{}]
""",
}


@pytest.mark.parametrize("name", list(CASES))
def test_what_is_not_applied_is_reported_where_it_is_written(check: Check, name: str) -> None:
    actual, expected = check(CASES[name], CODES)
    assert actual == expected


PROVIDERS = """\
x-sandbox:
  extensionProviders:
  - name: http
    envoyExtAuthzHttp: {service: ratings.default.svc.cluster.local, port: 9080, includeRequestBodyInCheck: {}}
  - name: grpc
    envoyExtAuthzGrpc: {service: ratings.default.svc.cluster.local, port: 9000}
  - name: elsewhere
    envoyExtAuthzHttp: {service: foo/ext-authz, port: "8000"}
"""


@pytest.mark.parametrize(
    ("provider", "said"),
    [
        ("http", ("SBX706", "includeRequestBodyInCheck is not applied")),
        ("grpc", ("SBX705", "not an envoyExtAuthzHttp provider")),
        ("elsewhere", ("SBX705", "service foo/ext-authz is not in the mesh")),
    ],
)
def test_extension_providers_are_checked_against_what_the_sidecars_call(provider: str, said: tuple[str, str]) -> None:
    from sandbox.mesh.analysis import analyze
    from sandbox.mesh.loader import load_text
    from sandbox.mesh.state import MeshState
    from sandbox.mesh.topology import parse_compose

    from .conftest import BOOKINFO

    policy = (
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: ext}\n"
        f"spec: {{action: CUSTOM, provider: {{name: {provider}}}, rules: [{{}}]}}\n"
    )
    state = MeshState(load_text(policy, "ext.yaml").resources, parse_compose(PROVIDERS + BOOKINFO, "compose.yaml"))
    found = [(d.code, d.message) for d in analyze(state) if d.code in CODES]
    assert len(found) == 1 and found[0][0] == said[0] and said[1] in found[0][1], found


@pytest.mark.parametrize("kind", sorted(POLICIES))
def test_every_security_policy_is_enforced_and_not_reported(check: Check, kind: str) -> None:
    text = f"apiVersion: security.istio.io/v1\nkind: {kind}\nmetadata: {{name: p}}\n{POLICIES[kind]}\n"
    actual, _ = check(text, CODES)
    assert actual == set()
