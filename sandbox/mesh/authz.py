"""Which security policies apply to a workload, by Istio's selection rules. Pure.

AuthorizationPolicies and RequestAuthentications apply to a workload from its own namespace and
from the root namespace (mesh-wide), when they have no selector or their selector matches the
workload's labels; policies with `targetRef(s)` are for Gateway API gateways and waypoints, which
the sandbox does not run. Unlike PeerAuthentication, every matching policy applies (Istio merges
them). The data path's evaluation is sandbox/proxy/authz.py; the control plane compiles what
applies into each proxy's snapshot (control/compile_access.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sandbox.mesh.names import labels_match
from sandbox.mesh.resources import Resource

ROOT_NAMESPACE = "istio-system"
DRY_RUN = "istio.io/dry-run"


def applies_to(
    resource: Resource[Any], workload_labels: Mapping[str, str], namespace: str, root_namespace: str = ROOT_NAMESPACE
) -> bool:
    """Does this AuthorizationPolicy or RequestAuthentication select the workload?"""
    if resource.namespace not in (namespace, root_namespace):
        return False
    spec = resource.spec
    if getattr(spec, "target_ref", None) is not None or bool(getattr(spec, "target_refs", None)):
        return False
    selector = spec.selector
    return selector is None or labels_match(selector.match_labels, dict(workload_labels))


def applicable(
    policies: Iterable[Resource[Any]],
    workload_labels: Mapping[str, str],
    namespace: str,
    root_namespace: str = ROOT_NAMESPACE,
    kind: str = "AuthorizationPolicy",
) -> list[Resource[Any]]:
    """The policies of `kind` that apply to a workload, in the order given."""
    return [p for p in policies if p.kind == kind and applies_to(p, workload_labels, namespace, root_namespace)]


def dry_run(resource: Resource[Any]) -> bool:
    return resource.annotations.get(DRY_RUN, "").lower() == "true"
