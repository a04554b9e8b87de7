"""Kiali's shared checks: selectors (KIA0002-0004) and exportTo namespaces (KIA0005)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sandbox.mesh.analysis.context import Context
from sandbox.mesh.resources import Resource


def selector_of(resource: Resource[Any]) -> tuple[dict[str, str], str]:
    """The workload selector labels and its Kiali path, for every kind that has one."""
    spec = resource.spec
    if resource.kind == "Sidecar":
        return (spec.workload_selector.labels if spec.workload_selector else {}), "spec/workloadSelector/labels"
    return (spec.selector.match_labels if spec.selector else {}), "spec/selector/matchLabels"


def _selector_root(resource: Resource[Any]) -> str:
    return "spec/workloadSelector" if resource.kind == "Sidecar" else "spec/selector"


def check_multi_match(ctx: Context) -> None:
    """KIA0002 (two selector-less objects) and KIA0003 (two objects on one workload), per kind and
    namespace, for PeerAuthentication and Sidecar (Istio merges RequestAuthentications)."""
    for kind in ("PeerAuthentication", "Sidecar"):
        by_namespace: dict[str, list[Resource[Any]]] = defaultdict(list)
        for r in ctx.state.of_kind(kind):
            by_namespace[r.namespace].append(r)
        for namespace, objects in by_namespace.items():
            selectorless = [r for r in objects if not selector_of(r)[0]]
            if len(selectorless) > 1:
                for r in selectorless:
                    ctx.report(r, "KIA0002", _selector_root(r))
            with_selector = [(r, selector_of(r)[0]) for r in objects if selector_of(r)[0]]
            if len(with_selector) < 2:
                continue
            # the label index gives each object its workloads; a workload two objects select flags both
            selected_by: dict[int, list[Resource[Any]]] = defaultdict(list)
            for r, sel in with_selector:
                for workload in ctx.index.selected_workloads(namespace, sel):
                    selected_by[id(workload)].append(r)
            flagged = {r.key for rs in selected_by.values() if len(rs) > 1 for r in rs}
            for r, _ in with_selector:
                if r.key in flagged:
                    flagged.discard(r.key)
                    ctx.report(r, "KIA0003", _selector_root(r))


def check_workload_selector(ctx: Context) -> None:
    """KIA0004: a non-empty selector that matches no workload in the object's own namespace."""
    for kind in ("AuthorizationPolicy", "PeerAuthentication", "RequestAuthentication", "Sidecar"):
        for r in ctx.state.of_kind(kind):
            labels, path = selector_of(r)
            if labels and not ctx.index.any_workload(r.namespace, labels):
                ctx.report(r, "KIA0004", path)


def check_export_to(ctx: Context) -> None:
    """KIA0005: an exportTo entry that is not `.`, `*` (or `~` on a ServiceEntry) nor a namespace."""
    namespaces = ctx.state.namespaces
    for kind in ("VirtualService", "DestinationRule", "ServiceEntry"):
        for r in ctx.state.of_kind(kind):
            for i, entry in enumerate(r.spec.export_to):
                if entry in (".", "*") or entry in namespaces or (entry == "~" and kind == "ServiceEntry"):
                    continue
                ctx.report(r, "KIA0005", f"spec/exportTo[{i}]")


CHECKERS = (check_multi_match, check_workload_selector, check_export_to)
