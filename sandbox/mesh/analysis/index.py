"""Indexes the checkers share, built once per analysis so every rule stays near-linear.

The service registry is what Kiali would find in Kubernetes: the Compose topology's mesh
services (a workload's `app` label names its service) plus ServiceEntry hosts, which match
exactly or by wildcard suffix (`*.example.com`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import cached_property
from typing import Any, Generic, TypeVar

from sandbox.mesh.names import DOMAIN_SUFFIX, labels_match, principal, split_fqdn
from sandbox.mesh.resources import Resource
from sandbox.mesh.resources.destinationrule import DestinationRuleSpec
from sandbox.mesh.resources.virtualservice import Destination, VirtualServiceSpec
from sandbox.mesh.state import MeshState
from sandbox.mesh.topology import Workload

ROOT_NAMESPACE = "istio-system"
T = TypeVar("T")


def suffix_wildcards(host: str) -> Iterator[str]:
    """The wildcard patterns that cover `host`, most specific first: a.b.c -> *.b.c, *.c, *."""
    parts = host.split(".")
    for i in range(1, len(parts)):
        yield "*." + ".".join(parts[i:])
    yield "*"


def namespace_wide_host(namespace: str) -> str:
    return f"*.{namespace}.{DOMAIN_SUFFIX}"


MESH_WIDE_HOST = "*.local"


def _workload_labels(w: Workload) -> dict[str, str]:
    return w.labels


def route_destinations(spec: VirtualServiceSpec) -> Iterator[tuple[str, Destination]]:
    """(Kiali path of the route entry, destination) for every http/tcp/tls route destination."""
    kinds: tuple[tuple[str, tuple[Any, ...]], ...] = (("http", spec.http), ("tcp", spec.tcp), ("tls", spec.tls))
    for kind, routes in kinds:
        for i, rule in enumerate(routes):
            for j, dest in enumerate(rule.route):
                if dest.destination is not None:  # None only when the loader already reported it missing
                    yield f"spec/{kind}[{i}]/route[{j}]", dest.destination


class LabelIndex(Generic[T]):
    """Items by label key=value, so a selector looks only at the items carrying its rarest label
    instead of scanning them all (one namespace with hundreds of workloads made selector checks
    quadratic in the number of resources)."""

    def __init__(self, items: Iterable[T], labels: Callable[[T], Mapping[str, str]]) -> None:
        self._items = tuple(items)
        self._labels = labels
        postings: dict[tuple[str, str], list[T]] = defaultdict(list)
        for item in self._items:
            for pair in labels(item).items():
                postings[pair].append(item)
        self._postings = {k: tuple(v) for k, v in postings.items()}

    def select(self, selector: Mapping[str, str]) -> Iterator[T]:
        """The items whose labels include every selector label, in the order given (an empty
        selector selects everything, as `labels_match` says)."""
        if not selector:
            yield from self._items
            return
        smallest = min((self._postings.get(pair, ()) for pair in selector.items()), key=len)
        if len(selector) == 1:
            yield from smallest
            return
        for item in smallest:
            if labels_match(selector, self._labels(item)):
                yield item


class Index:
    def __init__(self, state: MeshState) -> None:
        self.state = state

    # -- workloads -------------------------------------------------------------------------
    @cached_property
    def workloads_by_namespace(self) -> dict[str, tuple[Workload, ...]]:
        groups: dict[str, list[Workload]] = defaultdict(list)
        for w in self.state.topology.workloads:
            groups[w.namespace].append(w)
        return {k: tuple(v) for k, v in groups.items()}

    @cached_property
    def workloads_by_service(self) -> dict[tuple[str, str], tuple[Workload, ...]]:
        """(service name, namespace) -> the workloads whose app label names that service."""
        groups: dict[tuple[str, str], list[Workload]] = defaultdict(list)
        for w in self.state.topology.workloads:
            groups[(w.app, w.namespace)].append(w)
        return {k: tuple(v) for k, v in groups.items()}

    @cached_property
    def workload_labels(self) -> LabelIndex[Workload]:
        """Every workload by label, whatever its namespace."""
        return LabelIndex(self.state.topology.workloads, _workload_labels)

    @cached_property
    def workload_labels_by_namespace(self) -> dict[str, LabelIndex[Workload]]:
        return {ns: LabelIndex(ws, _workload_labels) for ns, ws in self.workloads_by_namespace.items()}

    def selected_workloads(self, namespace: str | None, selector: dict[str, str]) -> Iterator[Workload]:
        """Workloads in `namespace` (any namespace when None) whose labels match `selector`."""
        if not namespace:
            return self.workload_labels.select(selector)
        index = self.workload_labels_by_namespace.get(namespace)
        return index.select(selector) if index else iter(())

    def any_workload(self, namespace: str | None, selector: dict[str, str]) -> bool:
        return next(self.selected_workloads(namespace, selector), None) is not None

    @cached_property
    def principals(self) -> frozenset[str]:
        trust_domain = self.state.topology.settings.trust_domain_or_default
        return frozenset(principal(w.namespace, w.service_account, trust_domain) for w in self.state.topology.workloads)

    # -- service registry ------------------------------------------------------------------
    @cached_property
    def service_entry_hosts(self) -> dict[str, tuple[Resource[Any], ...]]:
        """ServiceEntry host (lower-case, as written, wildcards kept) -> the entries listing it."""
        groups: dict[str, list[Resource[Any]]] = defaultdict(list)
        for se in self.state.service_entries:
            for host in se.spec.hosts:
                groups[host.strip().lower()].append(se)
        return {k: tuple(v) for k, v in groups.items()}

    def service_entries_for(self, fqdn: str) -> Iterator[Resource[Any]]:
        """ServiceEntries whose hosts cover `fqdn` exactly or by wildcard."""
        for pattern in (fqdn, *suffix_wildcards(fqdn)):
            yield from self.service_entry_hosts.get(pattern, ())

    def in_registry(self, fqdn: str) -> bool:
        """Is `fqdn` a mesh service (Compose) or covered by a ServiceEntry host?"""
        if fqdn in self.state.service_hosts:
            return True
        return any(True for _ in self.service_entries_for(fqdn))

    # -- VirtualServices -------------------------------------------------------------------
    @cached_property
    def virtual_service_hosts(self) -> frozenset[str]:
        return frozenset(
            self.state.resolve(h, vs.namespace) for vs in self.state.virtual_services for h in vs.spec.hosts
        )

    @cached_property
    def routed_subsets(self) -> frozenset[tuple[str, str]]:
        """(resolved host, subset) pairs that some VirtualService route sends traffic to."""
        pairs = set()
        for vs in self.state.virtual_services:
            for _, dest in route_destinations(vs.spec):
                if dest.subset:
                    pairs.add((self.state.resolve(dest.host, vs.namespace), dest.subset))
        return frozenset(pairs)

    @cached_property
    def delegate_targets(self) -> frozenset[tuple[str, str]]:
        """(namespace, name) of every VirtualService some http route delegates to."""
        targets = set()
        for vs in self.state.virtual_services:
            for rule in vs.spec.http:
                if rule.delegate and rule.delegate.name:
                    targets.add((rule.delegate.namespace or vs.namespace, rule.delegate.name))
        return frozenset(targets)

    # -- DestinationRules ------------------------------------------------------------------
    def destination_rules_for(self, fqdn: str) -> Iterator[Resource[DestinationRuleSpec]]:
        """DestinationRules whose host is `fqdn` or a wildcard covering it."""
        by_host = self.state.destination_rules_by_host
        for pattern in (fqdn, *suffix_wildcards(fqdn)):
            yield from by_host.get(pattern, ())

    def service_workloads(self, fqdn: str) -> tuple[Workload, ...] | None:
        """Workloads of the mesh service `fqdn`, or None when no Compose service has that name."""
        parts = split_fqdn(fqdn)
        if parts is None or fqdn not in self.state.service_hosts:
            return None
        return self.workloads_by_service.get(parts, ())

    # -- gateways --------------------------------------------------------------------------
    @cached_property
    def gateway_keys(self) -> frozenset[tuple[str, str]]:
        return frozenset((gw.namespace, gw.name) for gw in self.state.gateways)
