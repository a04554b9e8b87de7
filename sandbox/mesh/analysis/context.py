"""What every checker gets: the MeshState, shared indexes, and `report` to record a finding."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from sandbox.mesh.analysis.codes import describe
from sandbox.mesh.analysis.index import Index
from sandbox.mesh.diagnostics import Diagnostic, Severity
from sandbox.mesh.resources import Resource
from sandbox.mesh.state import MeshState
from sandbox.mesh.topology import OutboundMode

IGNORE_ANNOTATION = "kiali.io/ignore-validations"


def ignored_codes(resource: Resource[Any]) -> frozenset[str] | None:
    """Codes the resource's `kiali.io/ignore-validations` annotation turns off: None = none,
    an empty set = all of them (Kiali: an empty value ignores every validation)."""
    value = resource.annotations.get(IGNORE_ANNOTATION)
    if value is None:
        return None
    return frozenset(c.strip().upper() for c in str(value).split(",") if c.strip())


@dataclass
class Context:
    state: MeshState
    # Istio's default (enableAutoMtls: true); it switches KIA0205/0206/0401/0501 off, as in Kiali.
    auto_mtls: bool = True
    diagnostics: list[Diagnostic] = field(default_factory=list)

    @cached_property
    def index(self) -> Index:
        return Index(self.state)

    @cached_property
    def registry_severity(self) -> Severity:
        """KIA0104/0202/1101 are errors under REGISTRY_ONLY and warnings under ALLOW_ANY (Kiali)."""
        mode = self.state.topology.settings.outbound_mode
        return Severity.ERROR if mode is OutboundMode.REGISTRY_ONLY else Severity.WARNING

    def report(
        self,
        resource: Resource[Any],
        code: str,
        path: str,
        severity: Severity | None = None,
        message: str | None = None,
    ) -> None:
        """Record `code` on `resource` at `path` (a Kiali path; the nearest existing ancestor gives
        the line), unless the resource's annotation ignores it."""
        skip = ignored_codes(resource)
        if skip is not None and (not skip or code in skip):
            return
        check = describe(code)
        line, column = resource.origin.position(path)
        self.diagnostics.append(
            Diagnostic(
                code,
                severity or check.severity,
                message or check.message,
                resource.origin.file,
                line,
                column,
                path,
                resource.ref,
            )
        )


Checker = Callable[[Context], None]
