"""Whether the workloads a policy selects receive mTLS, as Kiali's KIA0105 (mtls_enabled_checker)
estimates it from PeerAuthentications and wide DestinationRules (security.py uses it). The
DestinationRule/PeerAuthentication conflict checks are in mtls_conflicts.py.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

from sandbox.mesh.analysis.context import Context
from sandbox.mesh.analysis.destinationrules import tls_mode
from sandbox.mesh.analysis.index import MESH_WIDE_HOST, ROOT_NAMESPACE, namespace_wide_host
from sandbox.mesh.names import labels_match
from sandbox.mesh.resources import Resource
from sandbox.mesh.resources.destinationrule import TLSMode
from sandbox.mesh.resources.security import MTLSMode

ENABLING = (MTLSMode.STRICT, MTLSMode.PERMISSIVE)
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
