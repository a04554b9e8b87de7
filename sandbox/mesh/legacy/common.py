"""What the legacy translators share: the notes they leave and how they build modern resources."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sandbox.mesh.diagnostics import Diagnostic, Severity
from sandbox.mesh.resources import KINDS, Origin, Resource
from sandbox.mesh.resources.common import LabelSelector
from sandbox.mesh.schema import encode

ROOT_NAMESPACE = "istio-system"
DRY_RUN = "istio.io/dry-run"
LOSSY = "SBX202"  # part of a legacy resource cannot be translated faithfully (warning)
NOTE = "SBX203"  # the translation is faithful, but something about it deserves a look (info)


@dataclass
class Notes:
    """Diagnostics about legacy resources, pointing at the legacy file and line."""

    items: list[Diagnostic] = field(default_factory=list)

    def add(self, severity: Severity, code: str, resource: Resource[Any], message: str, path: str = "") -> None:
        line, col = resource.origin.position(path)
        self.items.append(Diagnostic(code, severity, message, resource.origin.file, line, col, path, resource.ref))

    def lossy(self, resource: Resource[Any], message: str, path: str = "") -> None:
        self.add(Severity.WARNING, LOSSY, resource, message, path)

    def note(self, resource: Resource[Any], message: str, path: str = "") -> None:
        self.add(Severity.INFO, NOTE, resource, message, path)


def derived(
    kind: str, name: str, namespace: str, spec: Any, source: Resource[Any], dry_run: bool = False
) -> Resource[Any]:
    """A modern resource made from `source`: it keeps the legacy file and line as its origin."""
    line = source.origin.position("apiVersion")[0]  # the resource's first line, not its `---`
    origin = Origin(source.origin.file, line, source.origin.document, translated_from=source.ref)
    annotations = {DRY_RUN: "true"} if dry_run else {}
    return Resource(kind, KINDS[kind].preferred_api_version, name, namespace, spec, {}, annotations, origin)


ROOT_WIDE = (
    "a policy for the whole {ns} namespace would be mesh-wide ({ns} is the root namespace), so it is left out; "
    "select the workloads there explicitly"
)


def selector(labels: tuple[tuple[str, str], ...]) -> LabelSelector | None:
    return LabelSelector(match_labels=dict(labels)) if labels else None


def document(resource: Resource[Any]) -> dict[str, Any]:
    """A Kubernetes-style document (apiVersion, kind, metadata, spec) of a resource."""
    metadata: dict[str, Any] = {"name": resource.name, "namespace": resource.namespace}
    if resource.labels:
        metadata["labels"] = dict(resource.labels)
    if resource.annotations:
        metadata["annotations"] = dict(resource.annotations)
    return {
        "apiVersion": resource.api_version,
        "kind": resource.kind,
        "metadata": metadata,
        "spec": encode(resource.spec),
    }


def legacy_star(values: tuple[str, ...]) -> bool:
    """v1alpha1 `*` matched every value, empty included; v1beta1 `*` only matches a present value."""
    return "*" in values
