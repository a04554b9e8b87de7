"""mTLS status as Kiali's masthead and namespace list show it (util/mtls/status.go, simplified to
what Istio's PeerAuthentication and DestinationRule say; auto mTLS is on, as Istio's default). Pure.

    MTLS_ENABLED            a STRICT PeerAuthentication without selector covers it (mesh: in the
                            root namespace; namespace: its own, or the mesh's)
    MTLS_DISABLED           the namespace's PeerAuthentication says DISABLE
    MTLS_PARTIALLY_ENABLED  some STRICT policy or ISTIO_MUTUAL DestinationRule, not everywhere
    MTLS_NOT_ENABLED        otherwise (PERMISSIVE: auto mTLS may still encrypt sidecar traffic)

Per workload (the Security page, a workload's details): the mode in force on each inbound port by
`mesh.peerauth.peer_mode` (what the control plane enforces) and the AuthorizationPolicies that
select it in Istio's evaluation order, with what this version's sidecars do not enforce yet.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sandbox.mesh.state import MeshState
    from sandbox.mesh.topology import Workload

ROOT_NAMESPACE = "istio-system"


def _peer_authentications(resources: Iterable[Mapping[str, Any]]) -> list[tuple[str, bool, str]]:
    """(namespace, has selector, mode) per PeerAuthentication."""
    out = []
    for r in resources:
        if r.get("kind") != "PeerAuthentication":
            continue
        spec = (r.get("manifest") or {}).get("spec") or {}
        selector = bool((spec.get("selector") or {}).get("matchLabels"))
        out.append((str(r.get("namespace")), selector, str((spec.get("mtls") or {}).get("mode", "UNSET")).upper()))
    return out


def _mutual_rules(resources: Iterable[Mapping[str, Any]]) -> bool:
    for r in resources:
        if r.get("kind") == "DestinationRule":
            tls = ((r.get("manifest") or {}).get("spec") or {}).get("trafficPolicy") or {}
            if str((tls.get("tls") or {}).get("mode", "")).upper() == "ISTIO_MUTUAL":
                return True
    return False


def mesh_tls(resources: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    items = list(resources)
    pas = _peer_authentications(items)
    mesh = [mode for ns, sel, mode in pas if ns == ROOT_NAMESPACE and not sel]
    if "STRICT" in mesh:
        status = "MTLS_ENABLED"
    elif any(mode == "STRICT" for _, _, mode in pas) or _mutual_rules(items):
        status = "MTLS_PARTIALLY_ENABLED"
    else:
        status = "MTLS_NOT_ENABLED"
    return {"status": status, "autoMTLSEnabled": True, "minTLS": "N/A"}


def namespace_tls(resources: Iterable[Mapping[str, Any]], namespace: str) -> dict[str, Any]:
    items = list(resources)
    pas = _peer_authentications(items)
    own = [mode for ns, sel, mode in pas if ns == namespace and not sel]
    mesh = mesh_tls(items)["status"]
    if "DISABLE" in own:
        status = "MTLS_DISABLED"
    elif "STRICT" in own or (not own and mesh == "MTLS_ENABLED"):
        status = "MTLS_ENABLED"
    elif any(mode == "STRICT" for ns, _, mode in pas if ns == namespace):
        status = "MTLS_PARTIALLY_ENABLED"
    else:
        status = "MTLS_NOT_ENABLED"
    return {"status": status, "autoMTLSEnabled": True, "minTLS": "N/A", "namespace": namespace}


# -- per workload: what the control plane computes for it ------------------------------------------
ACTION_ORDER = ("CUSTOM", "DENY", "ALLOW", "AUDIT")  # Istio's evaluation order


def workload_security(
    state: MeshState, workload: Workload, validation: Callable[[tuple[str, str, str]], dict[str, Any] | None]
) -> dict[str, Any]:
    """The mTLS mode in force on each of the workload's inbound ports (mesh, namespace, workload and
    port level, by `mesh.peerauth.peer_mode`, the function the control plane uses) and the
    AuthorizationPolicies that select it (its namespace's and the root namespace's), in the order
    Istio evaluates them, each with its validation."""
    from sandbox.mesh.authz import applicable
    from sandbox.mesh.peerauth import peer_mode, workload_policy

    labels = dict(workload.labels)
    ports = [workload.port] if workload.port else []
    policy = workload_policy(state, workload.namespace, labels)
    if policy is not None:
        ports += sorted(int(p) for p in policy.spec.port_level_mtls if str(p).isdigit() and int(p) not in ports)
    whole = peer_mode(state, workload.namespace, labels)
    mtls = {
        "mode": whole.mode.value,
        "level": whole.level,
        "source": whole.source,
        "ports": [
            {"port": p, "mode": m.mode.value, "level": m.level, "source": m.source}
            for p in ports
            for m in (peer_mode(state, workload.namespace, labels, p),)
        ],
    }
    found = applicable(state.resources, labels, workload.namespace, ROOT_NAMESPACE)
    rank = {a: i for i, a in enumerate(ACTION_ORDER)}
    found.sort(key=lambda p: (rank[(p.spec.action.value if p.spec.action else "ALLOW")], p.namespace, p.name))
    policies = []
    for p in found:
        action = p.spec.action.value if p.spec.action else "ALLOW"
        policies.append(
            {
                "name": p.name,
                "namespace": p.namespace,
                "action": action,
                "meshWide": p.namespace == ROOT_NAMESPACE,
                "selector": dict(p.spec.selector.match_labels) if p.spec.selector else {},
                "rules": len(p.spec.rules),
                "file": p.origin.file,
                "validation": validation(p.key),
            }
        )
    actions = {p["action"] for p in policies}
    if not policies:
        effect = "no policy selects it: every request is allowed"
    elif "ALLOW" in actions:
        effect = "a request is allowed only when an ALLOW policy matches it (and no DENY or CUSTOM policy denies it)"
    else:
        effect = "a request is denied when a DENY or CUSTOM policy matches it; otherwise allowed"
    return {
        "workload": workload.name,
        "namespace": workload.namespace,
        "mtls": mtls,
        "authorizationPolicies": policies,
        "authorization": {"effect": effect},
    }
