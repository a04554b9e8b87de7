"""Kiali's Gateway checks: KIA0301 (host+port claimed twice) and KIA0302 (selector matches nothing)."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

from sandbox.mesh.analysis.context import Context
from sandbox.mesh.analysis.index import suffix_wildcards
from sandbox.mesh.resources import Resource


@dataclass(frozen=True)
class _Entry:
    gateway: Resource[Any]
    path: str
    namespace: str  # target namespace of the host, `*` for any
    host: str


def _entry(gw: Resource[Any], s: int, h: int, raw: str) -> _Entry:
    ns, _, host = raw.rpartition("/")
    ns = gw.namespace if ns == "." else (ns or "*")
    return _Entry(gw, f"spec/servers[{s}]/hosts[{h}]", ns, host.strip().lower())


def check_multi_match(ctx: Context) -> None:
    """KIA0301: within one (port, selector) group, two server hosts that share a target namespace
    and overlap: equal, either `*`, or a `*.x` wildcard covering the other (two different
    wildcards never collide). Hosts are bucketed, and each entry looks only at the buckets that
    could cover it, so the check stays linear even with many `*` servers."""
    groups: dict[tuple[int, tuple[tuple[str, str], ...]], list[_Entry]] = defaultdict(list)
    for gw in ctx.state.gateways:
        selector = tuple(sorted(gw.spec.selector.items()))
        for s, server in enumerate(gw.spec.servers):
            for h, raw in enumerate(server.hosts):
                groups[(server.port.number if server.port else 0, selector)].append(_entry(gw, s, h, raw))
    for entries in groups.values():
        by_host: dict[str, list[_Entry]] = defaultdict(list)
        for e in entries:
            by_host[e.host].append(e)
        namespaces = {h: Counter(e.namespace for e in bucket) for h, bucket in by_host.items()}
        hit: dict[str, set[str]] = defaultdict(set)  # bucket -> namespaces of entries that collided with it
        colliding: set[int] = set()
        for e in entries:
            for bucket in _covering(e.host):
                counter = namespaces.get(bucket)
                if counter and _meets(e.namespace, counter, same_bucket=bucket == e.host):
                    colliding.add(id(e))
                    if bucket != e.host:
                        hit[bucket].add(e.namespace)
        for bucket, hit_namespaces in hit.items():
            for c in by_host[bucket]:
                if "*" in hit_namespaces or c.namespace == "*" or c.namespace in hit_namespaces:
                    colliding.add(id(c))
        for e in entries:
            if id(e) in colliding:
                ctx.report(e.gateway, "KIA0301", e.path)


def _covering(host: str) -> list[str]:
    """Buckets a host can collide with: its own, and the wildcards that cover it."""
    if host == "*":
        return [host]
    if host.startswith("*."):
        return [host, "*"]
    return [host, *suffix_wildcards(host)]


def _meets(namespace: str, counter: Counter[str], same_bucket: bool) -> bool:
    """Does an entry for `namespace` share a target namespace with another entry of the bucket?"""
    others = sum(counter.values()) - (1 if same_bucket else 0)
    if others <= 0:
        return False
    if namespace == "*" or counter.get("*", 0) > 0:
        return True
    return counter.get(namespace, 0) - (1 if same_bucket else 0) > 0


def check_selector(ctx: Context) -> None:
    """KIA0302: a selector no workload in any namespace matches (the built-in ingress gateway,
    istio=ingressgateway, always exists)."""
    for gw in ctx.state.gateways:
        if gw.spec.selector and not ctx.index.any_workload(None, gw.spec.selector):
            ctx.report(gw, "KIA0302", "spec/selector")


CHECKERS = (check_multi_match, check_selector)
