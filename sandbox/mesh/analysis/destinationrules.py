"""Kiali's DestinationRule checks on hosts and subsets: KIA0201, KIA0202, KIA0203, KIA0209."""

from __future__ import annotations

from typing import Any

from sandbox.mesh.analysis.context import Context
from sandbox.mesh.analysis.index import MESH_WIDE_HOST, namespace_wide_host, suffix_wildcards
from sandbox.mesh.diagnostics import Severity
from sandbox.mesh.names import labels_match
from sandbox.mesh.resources import Resource
from sandbox.mesh.resources.destinationrule import TLSMode


def tls_mode(dr: Resource[Any]) -> TLSMode | None:
    policy = dr.spec.traffic_policy
    return policy.tls.mode if policy and policy.tls else None


def _mtls_wide(dr: Resource[Any], host: str) -> bool:
    """Mesh- or namespace-wide ISTIO_MUTUAL rules are meant to overlap everything (Kiali skips them)."""
    wide = host == MESH_WIDE_HOST or host == namespace_wide_host(dr.namespace)
    return wide and tls_mode(dr) is TLSMode.ISTIO_MUTUAL


def _subsets_collide(a: Resource[Any], b: Resource[Any]) -> bool:
    """No subsets means "all subsets" (Kiali's `~`), so it collides with anything."""
    names_a = {s.name for s in a.spec.subsets}
    names_b = {s.name for s in b.spec.subsets}
    return not names_a or not names_b or bool(names_a & names_b)


def check_multi_match(ctx: Context) -> None:
    """KIA0201: two DestinationRules whose hosts overlap (equal, or a wildcard covering the other)
    and whose subsets collide."""
    by_host = {
        host: [dr for dr in rules if not _mtls_wide(dr, host)]
        for host, rules in ctx.state.destination_rules_by_host.items()
    }
    flagged: set[tuple[str, str, str]] = set()

    def flag(*rules: Resource[Any]) -> None:
        for dr in rules:
            if dr.key not in flagged:
                flagged.add(dr.key)
                ctx.report(dr, "KIA0201", "spec/host")

    for host, group in by_host.items():
        for i, a in enumerate(group):  # the same host: usually one or two rules
            for b in group[i + 1 :]:
                if _subsets_collide(a, b):
                    flag(a, b)
        base = host[2:] if host.startswith("*.") else host
        covering = [p for p in suffix_wildcards(base) if p != host] if host != "*" else []
        for pattern in covering:
            for wide in by_host.get(pattern, ()):
                for dr in group:
                    if _subsets_collide(wide, dr):
                        flag(wide, dr)


def check_hosts_and_subsets(ctx: Context) -> None:
    """KIA0202 (host not in the registry), KIA0203 (subset labels match no workload of the host;
    an error only when a VirtualService routes to that subset) and KIA0209 (subset without labels)."""
    for dr in ctx.state.destination_rules:
        host = ctx.state.resolve(dr.spec.host, dr.namespace)
        wildcard = host.startswith("*")
        if not host:  # the loader reports the missing host (SBX006)
            continue
        if not wildcard and not ctx.index.in_registry(host):
            ctx.report(dr, "KIA0202", "spec/host", ctx.registry_severity)
            continue
        matched_some = False
        unlabelled: list[int] = []
        for i, subset in enumerate(dr.spec.subsets):
            if not subset.labels:
                unlabelled.append(i)
            elif wildcard or _has_matching_workload(ctx, host, subset.labels):
                matched_some = True
            else:
                used = (host, subset.name) in ctx.index.routed_subsets
                ctx.report(dr, "KIA0203", f"spec/subsets[{i}]", Severity.ERROR if used else Severity.INFO)
        for i in unlabelled:
            ctx.report(dr, "KIA0209", f"spec/subsets[{i}]", Severity.INFO if matched_some else None)


def _has_matching_workload(ctx: Context, host: str, labels: dict[str, str]) -> bool:
    """A workload of the mesh service `host` with the subset labels; for a host that is not a mesh
    service, a ServiceEntry endpoint with those labels (Kiali's hasMatchingWorkload)."""
    workloads = ctx.index.service_workloads(host)
    if workloads is not None:
        return any(labels_match(labels, w.labels) for w in workloads)
    return any(
        labels_match(labels, endpoint.labels)
        for se in ctx.index.service_entries_for(host)
        for endpoint in se.spec.endpoints
    )


CHECKERS = (check_multi_match, check_hosts_and_subsets)
