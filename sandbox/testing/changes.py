"""`with mesh.fault(...)` and `with mesh.route(...)`: a rule change for the length of a block.

Each takes a checkpoint of the Istio directory, applies the changed VirtualService (and, for a
route to subsets nobody defined, a DestinationRule) through `mesh.apply`, and on exit puts those
resources back exactly as written, or removes them when they did not exist, whether the block
ended normally or raised. Only the resources the block changed are put back: other rules applied
inside the block stay. If putting back fails while the block is raising, the block's own error
is what the test sees, with a note saying what could not be restored.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

from sandbox.mesh.names import resolve_host, service_fqdn
from sandbox.mesh.topology import Topology
from sandbox.operator.edit import Checkpoint
from sandbox.testing.errors import MeshError
from sandbox.testing.rules import (
    Manifest,
    RuleError,
    defined_subsets,
    fault,
    free_name,
    mesh_virtual_services,
    subsets_rule,
    with_fault,
    with_route,
)


class RuleEditor(Protocol):
    """What the blocks need of a mesh (testing.Mesh is one)."""

    topology: Topology

    def apply(self, source: Any) -> list[str]: ...

    def checkpoint(self) -> Checkpoint: ...

    def restore(self, saved: Checkpoint, keys: Sequence[tuple[str, str, str]] | None = None) -> list[str]: ...

    def resources(self, kind: str, name: str | None = None, namespace: str | None = None) -> list[dict[str, Any]]: ...


Mesh = TypeVar("Mesh", bound=RuleEditor)

Key = tuple[str, str, str]


@contextmanager
def fault_block(
    mesh: Mesh,
    service: str,
    delay: str | float | None,
    abort: int | None,
    percent: float,
    subset: str | None,
    match: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None,
    namespace: str,
) -> Iterator[Mesh]:
    _known(mesh, service, namespace)
    try:
        injected = fault(delay, abort, percent)
    except RuleError as exc:
        raise MeshError(f"mesh.fault({service!r}): {exc}") from None
    existing, name = _virtual_service(mesh, service, namespace)
    manifest = with_fault(existing, service, namespace, injected, subset=subset, match=match, name=name)
    with _changed(mesh, [manifest]):
        yield mesh


@contextmanager
def route_block(mesh: Mesh, service: str, weights: dict[str, int], namespace: str) -> Iterator[Mesh]:
    _known(mesh, service, namespace)
    existing, name = _virtual_service(mesh, service, namespace)
    try:
        manifests = [
            *_subsets(mesh, service, namespace, list(weights)),
            with_route(existing, service, namespace, weights, name=name),
        ]
    except RuleError as exc:
        raise MeshError(f"mesh.route({service!r}): {exc}") from None
    with _changed(mesh, manifests):
        yield mesh


@contextmanager
def _changed(mesh: Mesh, manifests: list[Manifest]) -> Iterator[None]:
    saved = mesh.checkpoint()
    keys: list[Key] = [(m["kind"], m["metadata"].get("namespace", "default"), m["metadata"]["name"]) for m in manifests]
    mesh.apply(manifests)
    try:
        yield
    except BaseException as raised:
        try:
            mesh.restore(saved, keys)
        except Exception as problem:  # the test's own error stays the one reported
            raised.add_note(f"sandbox: the rules changed by this block could not be put back: {problem}")
        raise
    mesh.restore(saved, keys)


def _known(mesh: Mesh, service: str, namespace: str) -> None:
    if not any(s.name == service and s.namespace == namespace for s in mesh.topology.services):
        known = ", ".join(sorted({s.name for s in mesh.topology.services if s.namespace == namespace}))
        raise MeshError(f"no service '{service}' in namespace {namespace} (services: {known or 'none'})")


def _virtual_service(mesh: Mesh, service: str, namespace: str) -> tuple[Manifest | None, str | None]:
    """The VirtualService sidecars use for the service, or None and a free name for a new one."""
    rows = mesh.resources("VirtualService")
    found = mesh_virtual_services(rows, service, namespace, mesh.topology.namespaces)
    fqdn = service_fqdn(service, namespace)
    exact = [
        m
        for m in found
        if fqdn in {resolve_host(h, m["metadata"].get("namespace", "default")) for h in m["spec"].get("hosts", [])}
    ]
    if len(exact) > 1:
        names = ", ".join(f"{m['metadata'].get('namespace', 'default')}/{m['metadata']['name']}" for m in exact)
        raise MeshError(f"several VirtualServices route '{service}' ({names}): Istio uses one; delete the others")
    if found:
        return found[0], None
    taken = {r["manifest"]["metadata"]["name"] for r in rows if r["namespace"] == namespace}
    return None, free_name(service, taken)


def _subsets(mesh: Mesh, service: str, namespace: str, wanted: list[str]) -> list[Manifest]:
    """A DestinationRule to add so that every wanted subset exists (none when one is there)."""
    fqdn = service_fqdn(service, namespace)
    rows = mesh.resources("DestinationRule")
    rules = [r["manifest"] for r in rows if resolve_host(r["manifest"]["spec"].get("host", ""), r["namespace"]) == fqdn]
    if rules:
        defined = [s for rule in rules for s in defined_subsets(rule)]
        missing = [s for s in wanted if s not in defined]
        if missing:
            name = rules[0]["metadata"]["name"]
            raise MeshError(
                f"DestinationRule {name} defines subsets {defined} of '{service}', not {missing}: add them there"
            )
        return []
    versions = sorted({w.version for w in mesh.topology.workloads if w.app == service and w.namespace == namespace})
    unknown = [s for s in wanted if s not in versions]
    if unknown:
        raise RuleError(
            f"no DestinationRule defines subsets of '{service}', and {unknown} are not among its versions "
            f"{versions}: define the subsets in a DestinationRule first"
        )
    taken = {r["manifest"]["metadata"]["name"] for r in rows if r["namespace"] == namespace}
    return [subsets_rule(service, namespace, versions, free_name(service, taken))]
