"""The Sidecar resource: which hosts one proxy's outbound side knows, and its outbound policy.

Istio picks one Sidecar per proxy: the one in its namespace whose workloadSelector matches it,
else its namespace's Sidecar without a selector, else the root namespace's (istio-system). Its
`egress[].hosts` entries are `namespace/dnsName`: namespace `*` (any), `.` (the proxy's own),
`~` (none) or a name; dnsName `*`, `*.suffix` or an exact host. Without a Sidecar a proxy sees
every exported host. (Only the default egress listener, with no port, is modelled.)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sandbox.mesh.names import host_matches, labels_match
from sandbox.mesh.resources import Resource, SidecarSpec
from sandbox.mesh.state import MeshState

ROOT_NAMESPACE = "istio-system"


@dataclass(frozen=True)
class EgressScope:
    """The `namespace/host` patterns a proxy may reach (None: everything)."""

    patterns: tuple[tuple[str, str], ...] | None
    proxy_namespace: str
    source: str = ""
    outbound_mode: str | None = None  # a Sidecar's outboundTrafficPolicy.mode, overriding the mesh's

    def allows(self, host: str, namespace: str) -> bool:
        if self.patterns is None:
            return True
        for ns, pattern in self.patterns:
            if ns == "~":
                continue
            if ns not in ("*", namespace) and not (ns == "." and namespace == self.proxy_namespace):
                continue
            if host_matches(pattern, host):
                return True
        return False


def sidecar_for(mesh: MeshState, namespace: str, labels: Mapping[str, str]) -> Resource[SidecarSpec] | None:
    own = [s for s in mesh.sidecars if s.namespace == namespace]
    for sidecar in own:
        selector = sidecar.spec.workload_selector
        if selector is not None and selector.labels and labels_match(selector.labels, dict(labels)):
            return sidecar
    for candidate in (own, [s for s in mesh.sidecars if s.namespace == ROOT_NAMESPACE]):
        for sidecar in candidate:
            if sidecar.spec.workload_selector is None or not sidecar.spec.workload_selector.labels:
                return sidecar
    return None


def egress_scope(mesh: MeshState, namespace: str, labels: Mapping[str, str]) -> EgressScope:
    sidecar = sidecar_for(mesh, namespace, labels)
    if sidecar is None:
        return EgressScope(None, namespace)
    policy = sidecar.spec.outbound_traffic_policy
    mode = policy.mode.value if policy is not None and policy.mode is not None else None
    listeners = [e for e in sidecar.spec.egress if e.port is None] or list(sidecar.spec.egress)
    if not listeners:
        return EgressScope(None, namespace, sidecar.ref, mode)
    patterns = []
    for listener in listeners:
        for entry in listener.hosts:
            ns, _, host = entry.rpartition("/")
            patterns.append((ns or "*", host.lower()))
    return EgressScope(tuple(patterns), namespace, sidecar.ref, mode)
