"""VirtualService delegation: a root route `delegate: {name, namespace}` is replaced by the
delegate's routes, each with its matches merged into the root's (one level only).

Istio's rules (docs/reference/istio-semantics.md §1.1 Delegate; istio's
mergeVirtualServicesIfNeeded): the delegate's matches must lie within the root's (a uri under the
root's prefix, no contradicting header, method, port...), otherwise that combination does not take
effect; a field the delegate route leaves unset (rewrite, timeout, retries, fault, mirror, CORS,
headers) is inherited from the root route.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sandbox.control.registry import visible_to
from sandbox.mesh.resources import Resource, VirtualServiceSpec
from sandbox.mesh.resources.common import StringMatch
from sandbox.mesh.resources.virtualservice import HTTPMatchRequest, HTTPRoute
from sandbox.mesh.state import MeshState

_INHERITED = ("rewrite", "timeout", "retries", "fault", "mirror", "mirror_percentage", "cors_policy", "headers")


def expand_delegates(mesh: MeshState, vs: Resource[VirtualServiceSpec]) -> tuple[HTTPRoute, ...]:
    """The VS's http routes with every delegate route replaced by the merged delegate routes."""
    out: list[HTTPRoute] = []
    for root in vs.spec.http:
        if root.delegate is None:
            out.append(root)
            continue
        delegate = _find(mesh, root.delegate.name or "", root.delegate.namespace or vs.namespace, vs.namespace)
        if delegate is None:
            continue  # Istio drops a route whose delegate is missing or invisible
        for leaf in delegate.spec.http:
            if leaf.delegate is not None:  # only one level of delegation
                continue
            merged = _merge_matches(root.match, leaf.match)
            if merged is None:
                continue
            inherited = {name: getattr(root, name) for name in _INHERITED if _unset(getattr(leaf, name))}
            out.append(replace(leaf, match=merged, **inherited))
    return tuple(out)


def _find(mesh: MeshState, name: str, namespace: str, root_namespace: str) -> Resource[VirtualServiceSpec] | None:
    for candidate in mesh.virtual_services:
        if (
            candidate.name == name
            and candidate.namespace == namespace
            and not candidate.spec.hosts  # a delegate has no hosts of its own
            and visible_to(candidate.spec.export_to, candidate.namespace, root_namespace)
        ):
            return candidate
    return None


def _unset(value: Any) -> bool:
    return value is None or value == () or value == {}


def _merge_matches(
    root: tuple[HTTPMatchRequest, ...], leaf: tuple[HTTPMatchRequest, ...]
) -> tuple[HTTPMatchRequest, ...] | None:
    """Every compatible (root, leaf) pair merged; None when nothing survives."""
    if not root:
        return leaf
    if not leaf:
        return root
    merged = [m for r in root for lf in leaf if (m := _merge(r, lf)) is not None]
    return tuple(merged) or None


def _merge(root: HTTPMatchRequest, leaf: HTTPMatchRequest) -> HTTPMatchRequest | None:
    uri = _merge_uri(root.uri, leaf.uri)
    if uri is False:
        return None
    fields: dict[str, Any] = {"uri": uri, "ignore_uri_case": root.ignore_uri_case or leaf.ignore_uri_case}
    for name in ("method", "scheme", "authority", "port", "source_namespace"):
        a, b = getattr(root, name), getattr(leaf, name)
        if a is not None and b is not None and a != b:
            return None
        fields[name] = b if b is not None else a
    for name in ("headers", "without_headers", "query_params", "source_labels"):
        a, b = getattr(root, name), getattr(leaf, name)
        if any(k in a and a[k] != v for k, v in b.items()):
            return None
        fields[name] = {**a, **b}
    fields["gateways"] = leaf.gateways or root.gateways
    fields["name"] = leaf.name or root.name
    return replace(leaf, **fields)


def _merge_uri(root: StringMatch | None, leaf: StringMatch | None) -> StringMatch | bool | None:
    """The leaf's uri when it lies within the root's; False when they conflict."""
    if root is None or root.kind is None:
        return leaf
    if leaf is None or leaf.kind is None:
        return root
    if root.prefix is not None and (leaf.prefix or leaf.exact or "").startswith(root.prefix):
        return leaf if leaf.regex is None else False
    if root.exact is not None and leaf.exact == root.exact:
        return leaf
    if root.regex is not None and leaf.regex == root.regex:
        return leaf
    return False
