"""Where a service wizard's form starts: Kiali's getInit* functions (WizardActions.ts). Pure.

A service whose routing a wizard made opens that wizard on it (weights, rules, faults, timeouts,
hosts, gateway and traffic policy read back from the VirtualService and DestinationRule); any
other starts from Kiali's defaults: weights split evenly, a 5 s delay and a 503 abort for 100% of
requests, a 2 s timeout, 3 retries, and ISTIO_MUTUAL when the namespace's mTLS is enabled.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sandbox.console.wizards import (
    DEFAULT_CONNECTION_POOL,
    DEFAULT_FAULT,
    DEFAULT_OUTLIER_DETECTION,
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    PA_MODES,
    RELATED,
    SIMPLE_LB,
    TITLES,
    TLS_MODES,
    ServiceContext,
    default_weights,
    gateway_name,
)


def _workload_by_subset(ctx: ServiceContext) -> dict[str, str]:
    """Kiali's getWorkloadsByVersion: a subset name (a version, or a DR subset selecting one) -> workload."""
    by_version = {str(lbls.get("version")): name for name, lbls in ctx.workloads if lbls.get("version")}
    out = dict(by_version)
    for dr in ctx.destination_rules:
        for subset in (dr.get("spec") or {}).get("subsets") or ():
            version = str((subset.get("labels") or {}).get("version", ""))
            if version in by_version:
                out[str(subset.get("name"))] = by_version[version]
    return out


def _weights(ctx: ServiceContext, route: Mapping[str, Any]) -> list[dict[str, Any]]:
    by_subset = _workload_by_subset(ctx)
    out = [
        {"name": by_subset[d["destination"]["subset"]], "weight": int(d.get("weight") or 0), "mirrored": False}
        for d in route.get("route") or ()
        if (d.get("destination") or {}).get("subset") in by_subset
    ]
    mirror = route.get("mirror") or {}
    if mirror.get("subset") in by_subset:
        percent = (route.get("mirrorPercentage") or {}).get("value", 100)
        out.append({"name": by_subset[mirror["subset"]], "weight": int(percent), "mirrored": True})
    return out


def initial_weights(ctx: ServiceContext) -> list[dict[str, Any]]:
    """getInitWeights: the single route's weights (workloads it leaves out at 0), else even."""
    names = [name for name, _ in ctx.workloads]
    found: list[dict[str, Any]] = []
    if len(ctx.virtual_services) == 1:
        spec = ctx.virtual_services[0].get("spec") or {}
        routes = [r for key in ("http", "tcp") for r in spec.get(key) or () if len(spec.get(key) or ()) == 1]
        if routes:
            found = _weights(ctx, routes[0])
    if not found:
        return default_weights(names)
    seen = {w["name"] for w in found}
    return found + [{"name": n, "weight": 0, "mirrored": False} for n in names if n not in seen]


def match_strings(match: Mapping[str, Any]) -> list[str]:
    """Kiali's parseHttpMatchRequest: one HTTPMatchRequest back into the wizard's match strings."""
    out = []
    for name, value in (match.get("headers") or {}).items():
        op = next((k for k in ("exact", "prefix", "regex") if k in (value or {})), None)
        if op:
            out.append(f"headers [{name}] {op} {value[op]}")
    for key in ("uri", "scheme", "method", "authority"):
        value = match.get(key) or {}
        op = next((k for k in ("exact", "prefix", "regex") if k in value), None)
        if op:
            out.append(f"{key} {op} {value[op]}")
    return out


def initial_rules(ctx: ServiceContext) -> list[dict[str, Any]]:
    """getInitRules: each http route of the one VirtualService as a rule (routes to no workload dropped)."""
    if len(ctx.virtual_services) != 1:
        return []
    rules = []
    for route in (ctx.virtual_services[0].get("spec") or {}).get("http") or ():
        weights = _weights(ctx, route)
        if not weights:
            continue
        rule: dict[str, Any] = {"matches": [s for m in route.get("match") or () for s in match_strings(m)]}
        rule["workloads"] = weights
        for key in ("fault", "timeout", "retries"):
            if route.get(key):
                rule[key] = route[key]
        rules.append(rule)
    return rules


def _single_route(ctx: ServiceContext) -> Mapping[str, Any]:
    if len(ctx.virtual_services) == 1:
        http: list[Any] = list((ctx.virtual_services[0].get("spec") or {}).get("http") or ())
        if len(http) == 1:
            return dict(http[0])
    return {}


def initial_policy(ctx: ServiceContext, namespace_tls: str) -> dict[str, Any]:
    policy = ((ctx.destination_rules[0].get("spec") or {}).get("trafficPolicy") or {}) if ctx.destination_rules else {}
    tls_mode = (policy.get("tls") or {}).get("mode") or ("ISTIO_MUTUAL" if namespace_tls == "MTLS_ENABLED" else "UNSET")
    first = ctx.destination_rules[0] if ctx.destination_rules else {}
    related = ((first.get("metadata") or {}).get("annotations") or {}).get(RELATED, "")
    pa_mode = None
    for pa in ctx.peer_authentications:
        if related == f"PeerAuthentication/{(pa.get('metadata') or {}).get('name')}":
            pa_mode = ((pa.get("spec") or {}).get("mtls") or {}).get("mode", "UNSET")
    return {
        "tls": {**(policy.get("tls") or {}), "mode": tls_mode},
        "loadBalancer": policy.get("loadBalancer"),
        "connectionPool": policy.get("connectionPool"),
        "outlierDetection": policy.get("outlierDetection"),
        "peerAuthentication": {"mode": pa_mode} if pa_mode else None,
    }


def initial_gateway(ctx: ServiceContext) -> dict[str, Any]:
    gateways = [str(g) for vs in ctx.virtual_services[:1] for g in (vs.get("spec") or {}).get("gateways") or ()]
    selected = next((g for g in gateways if g != "mesh"), "")
    if selected and "/" not in selected:
        selected = f"{ctx.namespace}/{selected}"
    return {
        "addGateway": bool(gateways),
        "newGateway": False,
        "selectedGateway": selected,
        "addMesh": "mesh" in gateways,
        "port": 80,
        "gwHosts": "*",
        "newGatewayName": gateway_name(ctx),
    }


def wizard_view(ctx: ServiceContext, namespace_tls: str) -> dict[str, Any]:
    """What the service page's Actions menu and wizard form start from."""
    route = _single_route(ctx)
    fault = route.get("fault") or {}
    hosts = [str(h) for vs in ctx.virtual_services[:1] for h in (vs.get("spec") or {}).get("hosts") or ()]
    return {
        "service": ctx.name,
        "namespace": ctx.namespace,
        "host": ctx.fqdn,
        "updateLabel": ctx.update_label,
        "hasTrafficRouting": ctx.has_traffic_routing,
        "wizards": [{"type": t, "title": title, "enabled": ctx.enabled(t)} for t, title in TITLES.items()],
        "workloads": [{"name": name, "version": lbls.get("version", "")} for name, lbls in ctx.workloads],
        "gateways": list(ctx.gateways),
        "routing": {
            "virtualServices": [str((vs.get("metadata") or {}).get("name")) for vs in ctx.virtual_services],
            "destinationRules": [str((dr.get("metadata") or {}).get("name")) for dr in ctx.destination_rules],
        },
        "state": {
            "workloads": initial_weights(ctx),
            "rules": initial_rules(ctx),
            "fault": {"delay": fault.get("delay"), "abort": fault.get("abort")},
            "timeout": route.get("timeout"),
            "retries": route.get("retries"),
            "vsHosts": hosts or [ctx.fqdn],
            "trafficPolicy": initial_policy(ctx, namespace_tls),
            "gateway": initial_gateway(ctx),
        },
        "defaults": {
            "fault": DEFAULT_FAULT,
            "timeout": DEFAULT_TIMEOUT,
            "retries": DEFAULT_RETRIES,
            "connectionPool": DEFAULT_CONNECTION_POOL,
            "outlierDetection": DEFAULT_OUTLIER_DETECTION,
            "tlsModes": list(TLS_MODES),
            "loadBalancers": list(SIMPLE_LB),
            "peerAuthenticationModes": list(PA_MODES),
        },
    }


def routing_keys(ctx: ServiceContext) -> list[tuple[str, str, str]]:
    """What "Delete Traffic Routing" removes: the service's VirtualServices and DestinationRules,
    and the PeerAuthentication a wizard made with them."""
    keys = [
        (
            str(m.get("kind")),
            str((m.get("metadata") or {}).get("namespace") or ctx.namespace),
            str(m["metadata"]["name"]),
        )
        for m in (*ctx.virtual_services, *ctx.destination_rules)
    ]
    for dr in ctx.destination_rules:
        related = ((dr.get("metadata") or {}).get("annotations") or {}).get(RELATED, "")
        kind, _, name = related.partition("/")
        if kind == "PeerAuthentication" and name:
            keys.append((kind, str((dr.get("metadata") or {}).get("namespace") or ctx.namespace), name))
    return sorted(set(keys), key=lambda k: (k[0] != "VirtualService", k))
