"""Kiali's mTLS consistency checks between PeerAuthentications and DestinationRules:
KIA0204-KIA0208 on DestinationRules, KIA0401/0501/0505/0506 on PeerAuthentications.

Auto mTLS is on by default in Istio, which turns KIA0205/0206/0401/0501 off (Kiali does the same).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

from sandbox.mesh.analysis.context import Context
from sandbox.mesh.analysis.destinationrules import tls_mode
from sandbox.mesh.analysis.index import MESH_WIDE_HOST, ROOT_NAMESPACE, namespace_wide_host
from sandbox.mesh.names import labels_match, split_fqdn
from sandbox.mesh.resources import Resource
from sandbox.mesh.resources.destinationrule import TLSMode
from sandbox.mesh.resources.security import MTLSMode

ENABLING = (MTLSMode.STRICT, MTLSMode.PERMISSIVE)
TLS_PATH = "spec/trafficPolicy/tls/mode"
SUBSET_LIMIT = 8  # 2^8 subset lookups at most per selector


def pa_mode(pa: Resource[Any]) -> MTLSMode | None:
    mode = pa.spec.mtls.mode if pa.spec.mtls else None
    return None if mode is MTLSMode.UNSET else mode


def _selectorless(pa: Resource[Any]) -> bool:
    return not _selector(pa)


def _selector(pa: Resource[Any]) -> dict[str, str]:
    return pa.spec.selector.match_labels if pa.spec.selector else {}


@dataclass
class Policies:
    """Namespace-wide PeerAuthentication modes and wide DestinationRule TLS modes, indexed."""

    ns_pa: dict[str, MTLSMode | None]  # namespace -> mode of its selector-less PA
    dr_modes: dict[str, list[TLSMode | None]]  # resolved DR host -> TLS modes of rules for it
    workload_pa: dict[str, list[tuple[dict[str, str], MTLSMode]]]  # namespace -> (selector, mode)
    # (namespace, selector labels) -> (position in workload_pa[namespace], mode) of the first PA with it
    workload_pa_by_labels: dict[tuple[str, frozenset[tuple[str, str]]], tuple[int, MTLSMode]] = field(init=False)

    def __post_init__(self) -> None:
        self.workload_pa_by_labels = {}
        for ns, entries in self.workload_pa.items():
            for i, (labels, mode) in enumerate(entries):
                self.workload_pa_by_labels.setdefault((ns, frozenset(labels.items())), (i, mode))

    @classmethod
    def build(cls, ctx: Context) -> Policies:
        ns_pa: dict[str, MTLSMode | None] = {}
        workload_pa: dict[str, list[tuple[dict[str, str], MTLSMode]]] = defaultdict(list)
        for pa in ctx.state.peer_authentications:
            mode = pa_mode(pa)
            if _selectorless(pa):
                ns_pa.setdefault(pa.namespace, mode)
            elif mode is not None:
                workload_pa[pa.namespace].append((_selector(pa), mode))
        modes = {host: [tls_mode(dr) for dr in rules] for host, rules in ctx.state.destination_rules_by_host.items()}
        return cls(ns_pa, modes, workload_pa)

    @property
    def mesh_pa(self) -> MTLSMode | None:
        return self.ns_pa.get(ROOT_NAMESPACE)

    def has_pa(self, namespace: str) -> bool:
        return namespace in self.ns_pa

    def dr_with(self, host: str, *modes: TLSMode) -> bool:
        return any(m in modes for m in self.dr_modes.get(host, ()))

    def workload_mode(self, namespace: str, selector: dict[str, str]) -> MTLSMode | None:
        """Mode of the first workload-level PA in `namespace` whose selector is covered by `selector`.
        Looks up the selector's label subsets instead of scanning every PA of the namespace (a
        selector has a few labels; past SUBSET_LIMIT a scan is cheaper)."""
        if len(selector) > SUBSET_LIMIT:
            entries = self.workload_pa.get(namespace, ())
            return next((m for labels, m in entries if labels_match(labels, selector)), None)
        items = tuple(selector.items())
        hits = (
            self.workload_pa_by_labels.get((namespace, frozenset(subset)))
            for n in range(len(items) + 1)
            for subset in combinations(items, n)
        )
        first = min((hit for hit in hits if hit is not None), default=None)
        return first[1] if first else None


def _has_tls(dr: Resource[Any]) -> bool:
    policy = dr.spec.traffic_policy
    return bool(policy and (policy.tls or any(p.tls for p in policy.port_level_settings)))


def check_destination_rules(ctx: Context) -> None:
    p = Policies.build(ctx)
    mutual = TLSMode.ISTIO_MUTUAL
    for dr in ctx.state.destination_rules:
        host = ctx.state.resolve(dr.spec.host, dr.namespace)
        mode = tls_mode(dr)
        ns_wide = host == namespace_wide_host(dr.namespace)
        if host == MESH_WIDE_HOST and mode is mutual and not ctx.auto_mtls and p.mesh_pa not in ENABLING:
            ctx.report(dr, "KIA0205", TLS_PATH)
        pa_enabling = p.ns_pa.get(dr.namespace) in ENABLING or p.mesh_pa in ENABLING
        if ns_wide and mode is mutual and not ctx.auto_mtls and not pa_enabling:
            ctx.report(dr, "KIA0206", TLS_PATH)
        if ns_wide and mode is TLSMode.DISABLE:
            ns_mode = p.ns_pa.get(dr.namespace)
            if ns_mode is MTLSMode.STRICT:
                ctx.report(dr, "KIA0207", TLS_PATH)
            elif ns_mode is None and p.mesh_pa is MTLSMode.STRICT:
                ctx.report(dr, "KIA0208", TLS_PATH)
        if host == MESH_WIDE_HOST and mode is TLSMode.DISABLE and p.mesh_pa is MTLSMode.STRICT:
            ctx.report(dr, "KIA0208", TLS_PATH)
        if not _has_tls(dr) and _overrides_mtls(ctx, p, dr, host):
            ctx.report(dr, "KIA0204", "spec/trafficPolicy")


def _overrides_mtls(ctx: Context, p: Policies, dr: Resource[Any], host: str) -> bool:
    """Does a mesh-wide, namespace-wide or same-host rule enable ISTIO_MUTUAL that `dr` (without
    TLS settings) silently replaces for its host?"""
    mutual = TLSMode.ISTIO_MUTUAL
    parts = split_fqdn(host)
    if host.endswith(".local") and host != MESH_WIDE_HOST and p.dr_with(MESH_WIDE_HOST, mutual):
        return True
    if parts and p.dr_with(namespace_wide_host(parts[1]), mutual):
        return True
    same_host = ctx.state.destination_rules_by_host.get(host, ())
    return any(other is not dr and tls_mode(other) is mutual for other in same_host)


def check_peer_authentications(ctx: Context) -> None:
    p = Policies.build(ctx)
    enabling = (TLSMode.ISTIO_MUTUAL, TLSMode.MUTUAL)
    for pa in ctx.state.peer_authentications:
        if not _selectorless(pa):
            continue
        mode, ns = pa_mode(pa), pa.namespace
        ns_wide = namespace_wide_host(ns)
        if ns == ROOT_NAMESPACE:
            if mode is MTLSMode.STRICT and not ctx.auto_mtls and not p.dr_with(MESH_WIDE_HOST, TLSMode.ISTIO_MUTUAL):
                ctx.report(pa, "KIA0401", "spec/mtls")
            if mode is MTLSMode.DISABLE and p.dr_with(MESH_WIDE_HOST, *enabling):
                ctx.report(pa, "KIA0506", "spec/mtls")
            continue
        dr_enabling = p.dr_with(ns_wide, TLSMode.ISTIO_MUTUAL) or p.dr_with(MESH_WIDE_HOST, TLSMode.ISTIO_MUTUAL)
        if mode is MTLSMode.STRICT and not ctx.auto_mtls and not dr_enabling:
            ctx.report(pa, "KIA0501", "spec/mtls")
        mesh_enabling = p.dr_with(MESH_WIDE_HOST, *enabling) and not p.dr_with(ns_wide, TLSMode.DISABLE)
        if mode is MTLSMode.DISABLE and (p.dr_with(ns_wide, *enabling) or mesh_enabling):
            ctx.report(pa, "KIA0505", "spec/mtls")


def mtls_enabled(ctx: Context, p: Policies, namespace: str, selector: dict[str, str]) -> bool:
    """Do the workloads an AuthorizationPolicy selects receive mTLS? The effective PeerAuthentication
    mode (workload, namespace, mesh; PERMISSIVE at the top) and, below STRICT, the wide
    DestinationRules' TLS mode (auto mTLS makes PERMISSIVE + no DISABLE rule mean mTLS)."""
    mode: MTLSMode | None = None
    if selector:  # a workload-level PA whose selector is covered by the policy's selector
        mode = p.workload_mode(namespace, selector)
    mode = mode or p.ns_pa.get(namespace) or p.mesh_pa or MTLSMode.PERMISSIVE
    if mode is MTLSMode.DISABLE:
        return False
    if mode is MTLSMode.STRICT:
        return True
    ns_wide = namespace_wide_host(namespace)
    dr_host = ns_wide if ns_wide in p.dr_modes else MESH_WIDE_HOST
    if p.dr_with(dr_host, TLSMode.DISABLE):
        return False
    return ctx.auto_mtls or p.dr_with(dr_host, TLSMode.ISTIO_MUTUAL)


CHECKERS = (check_destination_rules, check_peer_authentications)
