"""The graph's Istio appender and gateway marks (Kiali's graph/telemetry/istio/appender/istio.go):
badges from the Istio configuration in force, read from the control plane's manifests. Pure.

A service node (or, without service nodes, an app/workload node through the services it serves)
gets `hasVS` {hostnames} when a VirtualService routes its host, and from that VirtualService's http
routes `hasFaultInjection`, `hasTrafficShifting` (a route with several weighted destinations),
`hasRequestRouting` (a route with matches or subsets), `hasRequestTimeout`, `hasMirroring`; `hasCB`
when a DestinationRule for its host sets a connection pool or outlier detection (for a versioned
node, also in the subset that selects its version). A gateway's node gets `isGateway`
{ingressInfo: {hostnames}} from the Gateways that select it, or {egressInfo: ...} for a workload
labelled `istio: egressgateway` (Kiali's egress gateway label).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sandbox.mesh.names import labels_match, resolve_host, service_fqdn

if TYPE_CHECKING:
    from sandbox.console.graph_model import Node


@dataclass(frozen=True)
class VirtualServiceInfo:
    namespace: str
    name: str
    hosts: tuple[str, ...]  # resolved FQDNs (or as written for external hosts)
    features: frozenset[str]  # hasFaultInjection, hasTrafficShifting, ...


@dataclass(frozen=True)
class DestinationRuleInfo:
    namespace: str
    name: str
    host: str
    circuit_breaker: bool  # at the top level
    subsets: tuple[tuple[Mapping[str, str], bool], ...] = ()  # (labels, circuit breaker)


@dataclass(frozen=True)
class Decorations:
    virtual_services: tuple[VirtualServiceInfo, ...] = ()
    destination_rules: tuple[DestinationRuleInfo, ...] = ()
    gateways: Mapping[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)  # (ns, workload) -> hosts
    labels: Mapping[tuple[str, str], Mapping[str, str]] = field(default_factory=dict)  # (ns, workload) -> labels


def _has_cb(policy: Any) -> bool:
    return isinstance(policy, dict) and bool(policy.get("connectionPool") or policy.get("outlierDetection"))


def _vs_features(spec: Mapping[str, Any]) -> frozenset[str]:
    found: set[str] = set()
    for route in spec.get("http") or ():
        if not isinstance(route, dict):
            continue
        destinations = [d for d in route.get("route") or () if isinstance(d, dict)]
        if route.get("fault"):
            found.add("hasFaultInjection")
        if route.get("timeout"):
            found.add("hasRequestTimeout")
        if route.get("mirror") or route.get("mirrors"):
            found.add("hasMirroring")
        if len(destinations) > 1:
            found.add("hasTrafficShifting")
        if route.get("match") or any((d.get("destination") or {}).get("subset") for d in destinations):
            found.add("hasRequestRouting")
    if any(len([d for d in (r or {}).get("route") or ()]) > 1 for r in spec.get("tcp") or () if isinstance(r, dict)):
        found.add("hasTCPTrafficShifting")
    return frozenset(found)


def decorations_from(
    manifests: Iterable[Mapping[str, Any]],
    workloads: Iterable[tuple[str, str, Mapping[str, str]]],
) -> Decorations:
    """Manifests as /api/v1/resources gives them; workloads as (namespace, name, labels)."""
    items = list(manifests)
    namespaces = {str((m.get("metadata") or {}).get("namespace", "default")) for m in items}
    labels = {(ns, name): dict(lbls) for ns, name, lbls in workloads}
    namespaces |= {ns for ns, _ in labels}
    vss: list[VirtualServiceInfo] = []
    drs: list[DestinationRuleInfo] = []
    gateway_hosts: dict[tuple[str, str], list[str]] = {}
    for m in items:
        meta, spec = m.get("metadata") or {}, m.get("spec") or {}
        ns, name, kind = str(meta.get("namespace", "default")), str(meta.get("name", "")), m.get("kind")
        if kind == "VirtualService":
            hosts = tuple(resolve_host(str(h), ns, namespaces) for h in spec.get("hosts") or ())
            vss.append(VirtualServiceInfo(ns, name, hosts, _vs_features(spec)))
        elif kind == "DestinationRule":
            subsets = tuple(
                (dict(s.get("labels") or {}), _has_cb(s.get("trafficPolicy")))
                for s in spec.get("subsets") or ()
                if isinstance(s, dict)
            )
            host = resolve_host(str(spec.get("host", "")), ns, namespaces)
            drs.append(DestinationRuleInfo(ns, name, host, _has_cb(spec.get("trafficPolicy")), subsets))
        elif kind == "Gateway":
            selector = spec.get("selector") or {}
            for key, lbls in labels.items():
                if selector and labels_match(selector, lbls):
                    for server in spec.get("servers") or ():
                        served = [str(h).split("/")[-1] for h in (server or {}).get("hosts") or ()]
                        known = gateway_hosts.setdefault(key, [])
                        known.extend(h for h in served if h not in known)
    return Decorations(tuple(vss), tuple(drs), {k: tuple(v) for k, v in gateway_hosts.items()}, labels)


def _services_of(node: Node) -> Sequence[str]:
    if node.node_type == "service":
        return [service_fqdn(node.service, node.namespace)]
    return [service_fqdn(name, ns) for ns, name in sorted(node.dest_services)]


def decorate(nodes: Iterable[Node], decorations: Decorations) -> None:
    has_service_nodes = False
    node_list = list(nodes)
    has_service_nodes = any(n.node_type == "service" for n in node_list)
    for node in node_list:
        key = (node.namespace, node.workload)
        if node.workload and key in decorations.gateways:
            egress = decorations.labels.get(key, {}).get("istio") == "egressgateway"
            info = "egressInfo" if egress else "ingressInfo"
            node.flags["isGateway"] = {info: {"hostnames": list(decorations.gateways[key])}}
        # badges go on service nodes when the graph has them, else on the nodes serving the service
        if has_service_nodes and node.node_type != "service":
            hosts: Sequence[str] = []
        else:
            hosts = _services_of(node)
        if not hosts:
            continue
        vs_hosts: list[str] = []
        for vs in decorations.virtual_services:
            matched = [h for h in vs.hosts if h in hosts]
            if matched:
                vs_hosts.extend(h for h in matched if h not in vs_hosts)
                for feature in vs.features:
                    node.flags[feature] = True
        if vs_hosts:
            node.flags["hasVS"] = {"hostnames": vs_hosts}
        node_labels = decorations.labels.get((node.namespace, node.workload), {})
        for dr in decorations.destination_rules:
            if dr.host not in hosts:
                continue
            subset_cb = any(cb and node_labels and labels_match(lbls, node_labels) for lbls, cb in dr.subsets)
            if dr.circuit_breaker or subset_cb or (node.node_type == "service" and any(cb for _, cb in dr.subsets)):
                node.flags["hasCB"] = True
