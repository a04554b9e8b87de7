"""Kiali's VirtualService checks: KIA1101, KIA1102, KIA1104-KIA1108."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sandbox.mesh.analysis.context import Context
from sandbox.mesh.analysis.index import route_destinations
from sandbox.mesh.names import DOMAIN_SUFFIX, split_fqdn
from sandbox.mesh.resources import Resource
from sandbox.mesh.resources.virtualservice import VirtualServiceSpec

MESH = "mesh"


def check_destination_hosts(ctx: Context) -> None:
    """KIA1101: a route destination whose host is neither a mesh service nor a ServiceEntry host."""
    for vs in ctx.state.virtual_services:
        for path, dest in route_destinations(vs.spec):
            host = ctx.state.resolve(dest.host, vs.namespace)
            if host and not host.startswith("*") and not ctx.index.in_registry(host):
                ctx.report(vs, "KIA1101", f"{path}/destination/host", ctx.registry_severity)


def check_subsets(ctx: Context) -> None:
    """KIA1107: a destination subset that no DestinationRule for its host defines."""
    for vs in ctx.state.virtual_services:
        for path, dest in route_destinations(vs.spec):
            if not dest.subset or not dest.host:
                continue
            host = ctx.state.resolve(dest.host, vs.namespace)
            rules = ctx.index.destination_rules_for(host)
            if not any(s.name == dest.subset for dr in rules for s in dr.spec.subsets):
                ctx.report(vs, "KIA1107", f"{path}/destination")


def check_route_weights(ctx: Context) -> None:
    """KIA1104 (one destination with 0 < weight < 100) and KIA1105 (same host+subset twice)."""
    for vs in ctx.state.virtual_services:
        kinds: tuple[tuple[str, tuple[Any, ...]], ...] = (
            ("http", vs.spec.http),
            ("tcp", vs.spec.tcp),
            ("tls", vs.spec.tls),
        )
        for kind, rules in kinds:
            for i, rule in enumerate(rules):
                route = rule.route
                if len(route) == 1 and route[0].weight is not None and 0 < route[0].weight < 100:
                    ctx.report(vs, "KIA1104", f"spec/{kind}[{i}]/route[0]/weight")
                seen: dict[tuple[str, str], list[int]] = defaultdict(list)
                for j, entry in enumerate(route):
                    dest = entry.destination
                    if dest is None:
                        continue
                    seen[(ctx.state.resolve(dest.host, vs.namespace), dest.subset or "")].append(j)
                for positions in seen.values():
                    if len(positions) > 1:
                        for j in positions:
                            ctx.report(vs, "KIA1105", f"spec/{kind}[{i}]/route[{j}]/host")


def gateway_key(ref: str, namespace: str, namespaces: frozenset[str]) -> tuple[str, str]:
    """(namespace, name) a gateway reference means: `ns/name`, `name`, or `name.ns[.svc.cluster.local]`."""
    if "/" in ref:
        ns, _, name = ref.partition("/")
        return (namespace if ns == "." else ns, name)
    if "." in ref:
        parts = ref.removesuffix("." + DOMAIN_SUFFIX).split(".")
        if len(parts) == 2:
            return (parts[1], parts[0])
        return (namespace, ref)
    return (namespace, ref)


def _gateway_refs(spec: VirtualServiceSpec) -> list[tuple[str, str]]:
    refs = [(g, f"spec/gateways[{k}]") for k, g in enumerate(spec.gateways)]
    for i, rule in enumerate(spec.http):
        for m, match in enumerate(rule.match):
            refs.extend((g, f"spec/http[{i}]/match[{m}]/gateways[{k}]") for k, g in enumerate(match.gateways))
    return refs


def check_gateways(ctx: Context) -> None:
    """KIA1102 (gateway not found) and KIA1108 (dotted gateway name: prefer ns/name)."""
    namespaces = ctx.state.namespaces
    for vs in ctx.state.virtual_services:
        for ref, path in _gateway_refs(vs.spec):
            if ref == MESH:
                continue
            if "." in ref and "/" not in ref:
                ctx.report(vs, "KIA1108", path)
            if gateway_key(ref, vs.namespace, namespaces) not in ctx.index.gateway_keys:
                ctx.report(vs, "KIA1102", path)


def check_single_host(ctx: Context) -> None:
    """KIA1106: two VirtualServices for one host on the same gateway (sidecars do not merge them),
    or a `*` VirtualService beside any other in its namespace on the same gateway."""
    namespaces = ctx.state.namespaces
    by_host: dict[tuple[str, str], dict[tuple[str, str, str], Resource[Any]]] = defaultdict(dict)
    by_namespace: dict[tuple[str, str], dict[tuple[str, str, str], Resource[Any]]] = defaultdict(dict)
    wildcard: set[tuple[str, str]] = set()
    for vs in ctx.state.virtual_services:
        gateways = {
            MESH if g == MESH else "/".join(gateway_key(g, vs.namespace, namespaces)) for g in vs.spec.gateways
        } or {MESH}
        for gw in gateways:
            for host in vs.spec.hosts:
                resolved = ctx.state.resolve(host, vs.namespace)
                by_host[(gw, resolved)][vs.key] = vs
                parts = split_fqdn(resolved)  # Kiali groups by the host's namespace
                namespace = parts[1] if parts else vs.namespace
                by_namespace[(gw, namespace)][vs.key] = vs
                if resolved == "*":
                    wildcard.add((gw, namespace))
    flagged: set[tuple[str, str, str]] = set()
    groups = [g for g in by_host.values() if len(g) > 1]
    groups += [by_namespace[k] for k in wildcard if len(by_namespace[k]) > 1]
    for group in groups:
        for key, vs in group.items():
            if key not in flagged:
                flagged.add(key)
                ctx.report(vs, "KIA1106", "spec/hosts")


CHECKERS = (check_destination_hosts, check_subsets, check_route_weights, check_gateways, check_single_host)
