"""The Istio resources behind `mesh.fault(...)` and `mesh.route(...)`, built from the rules in force.
Pure: manifests (as `sandbox get -o json` shows them) in, manifests out.

Which VirtualService: the one sidecars use for the service's host (no `gateways`, or `mesh` among
them); a gateway-bound one routes only the ingress, as in Istio.

fault(service, delay=/abort=, percent, subset, match):
- neither `match` nor `subset`: Istio's `fault` goes on every HTTP route of that VirtualService
  (one routing to the service is made when there is none), so routing stays as it was;
- with `match` and/or `subset`: a route `{match, fault, route: service[/subset]}` goes first, as
  Istio's samples route jason's requests to ratings v1 with a delay; other requests keep their
  routes. Without `match` that route takes every request, so all go to the subset.
route(service, {"v1": 80, "v2": 20}): every HTTP route of that VirtualService (or a new one) sends
to the subsets with these weights, keeping its matches, timeouts, retries and faults. A subset no
DestinationRule defines is added as `version: <name>` when no DestinationRule for the host
exists (it must name a version the service runs); otherwise the DestinationRule is the user's and
a missing subset is an error.
"""

from __future__ import annotations

import copy
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from sandbox.mesh.names import host_matches, resolve_host, service_fqdn
from sandbox.mesh.schema import Duration

Manifest = dict[str, Any]
API_VERSION = "networking.istio.io/v1"


class RuleError(ValueError):
    """The helper cannot build the rule as asked (the message says why and what to do)."""


def fault(delay: str | float | None = None, abort: int | None = None, percent: float = 100) -> Manifest:
    """Istio's HTTPFaultInjection: a fixed delay and/or an abort with an HTTP status."""
    if delay is None and abort is None:
        raise RuleError("say which fault: delay='2s' and/or abort=503")
    if not 0 <= percent <= 100:
        raise RuleError(f"percent must be between 0 and 100, not {percent}")
    result: Manifest = {}
    share = {"percentage": {"value": float(percent)}}
    if delay is not None:
        text = f"{delay:g}s" if isinstance(delay, int | float) else str(delay)
        try:
            Duration.parse(text)
        except ValueError as exc:
            raise RuleError(f"delay: {exc}") from None
        result["delay"] = {"fixedDelay": text, **share}
    if abort is not None:
        if not 200 <= int(abort) <= 599:
            raise RuleError(f"abort must be an HTTP status (200-599), not {abort}")
        result["abort"] = {"httpStatus": int(abort), **share}
    return result


def mesh_virtual_services(
    resources: Sequence[Mapping[str, Any]], service: str, namespace: str, namespaces: Collection[str] = ()
) -> list[Manifest]:
    """The VirtualServices sidecars use for `service`'s host, exact host matches first."""
    fqdn = service_fqdn(service, namespace)
    exact, wildcard = [], []
    for r in resources:
        manifest = r["manifest"]
        spec = manifest.get("spec", {})
        gateways = spec.get("gateways") or ["mesh"]
        if "mesh" not in gateways:
            continue
        ns = manifest.get("metadata", {}).get("namespace", "default")
        hosts = [resolve_host(h, ns, namespaces) for h in spec.get("hosts", [])]
        if fqdn in hosts:
            exact.append(manifest)
        elif any(host_matches(h, fqdn) for h in hosts):
            wildcard.append(manifest)
    return exact + wildcard


def gateway_hosts(
    resources: Sequence[Mapping[str, Any]], service: str, namespace: str, namespaces: Collection[str] = ()
) -> list[str] | None:
    """The hosts of the Gateway-bound VirtualServices with a route to `service`; None: no such route."""
    fqdn = service_fqdn(service, namespace)
    found: list[str] | None = None
    for r in resources:
        manifest = r["manifest"]
        spec = manifest.get("spec", {})
        if not [g for g in spec.get("gateways") or [] if g != "mesh"]:
            continue
        ns = manifest.get("metadata", {}).get("namespace", "default")
        targets = {
            resolve_host(str(d.get("destination", {}).get("host", "")), ns, namespaces)
            for route in spec.get("http") or []
            for d in route.get("route") or []
        }
        if fqdn in targets:
            found = [*(found or []), *(str(h) for h in spec.get("hosts", []))]
    return found


def _destination(service: str, subset: str | None, port: int | None) -> Manifest:
    destination: Manifest = {"host": service}
    if subset:
        destination["subset"] = subset
    if port:
        destination["port"] = {"number": port}
    return destination


def new_virtual_service(service: str, namespace: str, name: str | None = None) -> Manifest:
    """What the mesh does without one: every request to the service, over its versions."""
    return {
        "apiVersion": API_VERSION,
        "kind": "VirtualService",
        "metadata": {"name": name or service, "namespace": namespace},
        "spec": {"hosts": [service], "http": [{"route": [{"destination": {"host": service}}]}]},
    }


def with_fault(
    existing: Manifest | None,
    service: str,
    namespace: str,
    injected: Manifest,
    *,
    subset: str | None = None,
    match: Sequence[Mapping[str, Any]] | Mapping[str, Any] | None = None,
    port: int | None = None,
    name: str | None = None,
) -> Manifest:
    """The VirtualService with the fault in place (see the module's docstring)."""
    manifest = _clean(existing) if existing is not None else new_virtual_service(service, namespace, name)
    spec = manifest["spec"]
    routes: list[Manifest] = list(spec.get("http") or [])
    if not routes:
        routes = [{"route": [{"destination": _destination(service, None, port)}]}]
    if match is None and subset is None:
        spec["http"] = [{**r, "fault": injected} for r in routes]
        return manifest
    first: Manifest = {}
    if match is not None:
        first["match"] = [dict(match)] if isinstance(match, Mapping) else [dict(m) for m in match]
    first["fault"] = injected
    first["route"] = [{"destination": _destination(service, subset, port)}]
    spec["http"] = [first, *routes]
    return manifest


def with_route(
    existing: Manifest | None,
    service: str,
    namespace: str,
    weights: Mapping[str, int],
    *,
    port: int | None = None,
    name: str | None = None,
) -> Manifest:
    """The VirtualService sending every route's traffic to the subsets by weight."""
    if not weights:
        raise RuleError("name at least one subset, e.g. {'v1': 90, 'v2': 10}")
    if any(w < 0 for w in weights.values()) or sum(weights.values()) != 100:
        raise RuleError(f"weights must be 0 or more and add up to 100 (Istio's rule), not {dict(weights)}")
    manifest = _clean(existing) if existing is not None else new_virtual_service(service, namespace, name)
    spec = manifest["spec"]
    destinations = [{"destination": _destination(service, s, port), "weight": w} for s, w in weights.items()]
    routes = list(spec.get("http") or []) or [{}]
    spec["http"] = [{**r, "route": copy.deepcopy(destinations)} for r in routes]
    return manifest


def subsets_rule(service: str, namespace: str, versions: Sequence[str], name: str | None = None) -> Manifest:
    """A DestinationRule whose subsets are the service's versions, by the `version` label."""
    return {
        "apiVersion": API_VERSION,
        "kind": "DestinationRule",
        "metadata": {"name": name or service, "namespace": namespace},
        "spec": {"host": service, "subsets": [{"name": v, "labels": {"version": v}} for v in versions]},
    }


def defined_subsets(destination_rule: Mapping[str, Any]) -> list[str]:
    return [str(s.get("name")) for s in destination_rule.get("spec", {}).get("subsets", []) or []]


def free_name(wanted: str, taken: Collection[str]) -> str:
    """`wanted`, or `wanted-2`, `wanted-3`... when another resource of the kind has that name."""
    if wanted not in taken:
        return wanted
    n = 2
    while f"{wanted}-{n}" in taken:
        n += 1
    return f"{wanted}-{n}"


def _clean(manifest: Manifest) -> Manifest:
    """A copy to apply again: only what `apply` reads (no status)."""
    clean = copy.deepcopy(manifest)
    clean.pop("status", None)
    return clean
