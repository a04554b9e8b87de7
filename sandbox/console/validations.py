"""Kiali's validations from the project's analyzer (docs/reference/kiali-console.md §1.4). Pure.

The console reads the resources in force from the control plane (`/api/v1/resources`: manifests
with their file), loads each manifest again (so every value has a position in the YAML the
console shows), runs `sandbox.mesh.analysis` over them and the Compose topology, and answers each
object as Kiali does: `{name, namespace, objectType, valid, checks: [{code, message, severity,
path}], references}`. Kiali's "unknown" severity is the analyzer's info; an object is not valid
when one of its checks is an error.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sandbox.mesh.analysis import analyze
from sandbox.mesh.diagnostics import Diagnostic, Severity
from sandbox.mesh.loader import load_texts
from sandbox.mesh.state import MeshState
from sandbox.mesh.topology import Topology, empty_topology
from sandbox.mesh.yamlsrc import dump_yaml

KIALI_SEVERITY = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "unknown"}
Key = tuple[str, str, str]  # (kind, namespace, name)


def manifest_yaml(manifest: Mapping[str, Any]) -> str:
    """The YAML the console shows for a resource; check lines refer to this text."""
    return dump_yaml(dict(manifest))


def object_type(kind: str) -> str:
    return kind.lower()


@dataclass(frozen=True)
class Validated:
    state: MeshState
    diagnostics: tuple[Diagnostic, ...]
    texts: Mapping[Key, str]  # the YAML shown per resource

    def for_object(self, key: Key) -> dict[str, Any]:
        kind, namespace, name = key
        checks = [d for d in self.diagnostics if d.resource == f"{kind}/{namespace}/{name}"]
        return {
            "name": name,
            "namespace": namespace,
            "objectType": object_type(kind),
            "valid": not any(d.severity is Severity.ERROR for d in checks),
            "checks": [
                {
                    "code": d.code,
                    "message": d.message,
                    "severity": KIALI_SEVERITY[d.severity],
                    "path": d.path,
                    "line": d.line,
                }
                for d in checks
            ],
            "references": [],
        }

    def all_objects(self, namespace: str | None = None) -> dict[str, dict[str, Any]]:
        """Kiali's IstioValidations JSON: objectType -> "name.namespace" -> validation."""
        out: dict[str, dict[str, Any]] = {}
        for kind, ns, name in sorted(self.texts):
            if namespace is None or ns == namespace:
                out.setdefault(object_type(kind), {})[f"{name}.{ns}"] = self.for_object((kind, ns, name))
        return out

    def summary(self, namespace: str) -> dict[str, Any]:
        """Kiali's IstioValidationSummary of a namespace."""
        objects = [self.for_object(k) for k in self.texts if k[1] == namespace]
        checks = [c for o in objects for c in o["checks"]]
        return {
            "namespace": namespace,
            "objectCount": len(objects),
            "errors": sum(c["severity"] == "error" for c in checks),
            "warnings": sum(c["severity"] == "warning" for c in checks),
        }


def validate(resources: Sequence[Mapping[str, Any]], topology: Topology | None) -> Validated:
    """`resources` as /api/v1/resources lists them (each with `manifest` and `file`)."""
    texts: dict[Key, str] = {}
    sources: list[tuple[str, str]] = []
    for r in resources:
        key = (str(r.get("kind", "")), str(r.get("namespace", "")), str(r.get("name", "")))
        text = manifest_yaml(r.get("manifest") or {})
        texts[key] = text
        sources.append((f"{r.get('file', '<control plane>')}#{key[0]}/{key[1]}/{key[2]}", text))
    loaded = load_texts(sources)
    state = MeshState(tuple(loaded.resources), topology or empty_topology())
    diagnostics = tuple(analyze(state)) + tuple(d for d in loaded.diagnostics if d.resource)
    return Validated(state, diagnostics, texts)


def worst_severity(validations: Iterable[Mapping[str, Any]]) -> str | None:
    """ "error", "warning", "unknown" or None (all clean) over several objects' checks."""
    severities = {c["severity"] for v in validations for c in v.get("checks") or ()}
    for severity in ("error", "warning", "unknown"):
        if severity in severities:
            return severity
    return None
