"""The security view's model (console/security.py): the mTLS mode in force on each of a workload's
ports by Istio's PeerAuthentication precedence (mesh, namespace, workload, port), the
AuthorizationPolicies that select it in Istio's evaluation order (the root namespace's apply
mesh-wide), and what this version's sidecars do not enforce, said on each."""

from __future__ import annotations

from typing import Any

from sandbox.console.security import workload_security
from sandbox.mesh.loader import load_text
from sandbox.mesh.state import MeshState
from sandbox.mesh.topology import parse_compose
from tests.factories import compose_for

POLICIES = """
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: PERMISSIVE}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: default}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: reviews-metrics, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  mtls: {mode: UNSET}
  portLevelMtls: {"9090": {mode: DISABLE}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-productpage, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  rules: [{from: [{source: {principals: [cluster.local/ns/default/sa/productpage]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-posts, namespace: istio-system}
spec:
  action: DENY
  rules: [{to: [{operation: {methods: [POST]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: audit-all, namespace: default}
spec:
  action: AUDIT
  rules: [{}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ratings-only, namespace: default}
spec:
  selector: {matchLabels: {app: ratings}}
"""


def view(workload: str) -> dict[str, Any]:
    topology = parse_compose(
        compose_for(("reviews-v1", "reviews", "v1"), ("ratings-v1", "ratings", "v1")), "compose.yaml"
    )
    loaded = load_text(POLICIES, "security.yaml")
    assert loaded.diagnostics == [] or all(d.severity != "error" for d in loaded.diagnostics)
    state = MeshState(tuple(loaded.resources), topology)
    w = next(w for w in topology.workloads if w.name == workload)
    return workload_security(state, w, lambda key: {"key": list(key)})


def test_the_mtls_mode_in_force_per_port_and_where_it_comes_from() -> None:
    reviews = view("reviews-v1")
    # the workload policy says UNSET: the namespace's STRICT holds, except on its port 9090
    assert (reviews["mtls"]["mode"], reviews["mtls"]["level"]) == ("STRICT", "namespace")
    ports = {p["port"]: (p["mode"], p["level"], p["source"]) for p in reviews["mtls"]["ports"]}
    assert ports == {
        9080: ("STRICT", "namespace", "PeerAuthentication/default/default"),
        9090: ("DISABLE", "port", "PeerAuthentication/default/reviews-metrics"),
    }


def test_the_authorization_policies_that_select_it_in_evaluation_order() -> None:
    policies = view("reviews-v1")["authorizationPolicies"]
    assert [(p["action"], p["namespace"], p["name"], p["meshWide"]) for p in policies] == [
        ("DENY", "istio-system", "deny-posts", True),  # the root namespace's: mesh-wide
        ("ALLOW", "default", "allow-productpage", False),
        ("AUDIT", "default", "audit-all", False),
    ]  # ratings-only selects ratings, not reviews
    assert policies[1]["validation"] == {"key": ["AuthorizationPolicy", "default", "allow-productpage"]}
    assert "only when an ALLOW policy matches" in view("reviews-v1")["authorization"]["effect"]
