"""Kubernetes objects as read from YAML, with positions, and the reports both directions make.

Every report is a Diagnostic (file, line, column, `Kind/namespace/name`, Kiali-style path), so the
CLI prints it like `sandbox analyze` does. SBX6xx are the bridge's codes (sandbox/mesh/analysis/codes.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from sandbox.mesh.diagnostics import Diagnostic, Severity, join_path, nearest_position
from sandbox.mesh.yamlsrc import Document, parse_documents

LEFT_OUT = "SBX600"  # a field that has no counterpart on the other side
KIND_LEFT_OUT = "SBX601"  # a whole object (or Compose service) that is not carried over
UNUSABLE = "SBX602"  # an object that cannot be carried over as written: an error
ADAPTED = "SBX603"  # carried over with a change the user should know about
LOCAL_BUILD = "SBX604"  # an image Compose builds from a Dockerfile: it must be pushed somewhere
INVALID_NAME = "SBX605"  # a name Kubernetes rejects

# Why a field is left out, by its key (the list: volumes, probes, init containers, resources).
REASONS = {
    "volumes": "volumes",
    "volumeMounts": "volumes",
    "volumeClaimTemplates": "volumes",
    "volumeDevices": "volumes",
    "livenessProbe": "probes",
    "readinessProbe": "probes",
    "startupProbe": "probes",
    "initContainers": "init containers",
    "resources": "resource requests and limits",
    "securityContext": "security contexts",
    "envFrom": "environments from ConfigMaps or Secrets",
    "affinity": "scheduling constraints",
    "nodeSelector": "scheduling constraints",
    "tolerations": "scheduling constraints",
}

# A tree of the fields a translation reads: True for "all of it", a dict for "these keys of it".
Handled = Mapping[str, Any]
# Set by the API server or kubectl; they carry no intent, so leaving them out is not reported.
SERVER_FIELDS: Handled = {
    "uid": True,
    "resourceVersion": True,
    "generation": True,
    "creationTimestamp": True,
    "managedFields": True,
    "selfLink": True,
}


@dataclass(frozen=True)
class KubeObject:
    """One object of a manifest: its data and the position of every path in it."""

    file: str
    data: dict[str, Any]
    positions: dict[str, tuple[int, int]] = field(repr=False, compare=False)
    line: int = 1

    @property
    def kind(self) -> str:
        return str(self.data.get("kind", ""))

    @property
    def api_version(self) -> str:
        return str(self.data.get("apiVersion", ""))

    @property
    def metadata(self) -> dict[str, Any]:
        meta = self.data.get("metadata")
        return meta if isinstance(meta, dict) else {}

    @property
    def name(self) -> str:
        name = self.metadata.get("name")
        return name if isinstance(name, str) else ""

    @property
    def namespace(self) -> str:
        namespace = self.metadata.get("namespace")
        return namespace if isinstance(namespace, str) and namespace else "default"

    @property
    def ref(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}" if self.name else self.kind

    def diagnostic(self, code: str, severity: Severity, message: str, path: str = "") -> Diagnostic:
        line, column = nearest_position(self.positions, path, (self.line, 1))
        return Diagnostic(code, severity, message, self.file, line, column, path, self.ref)


def read_objects(text: str | bytes, file: str) -> tuple[list[KubeObject], list[Diagnostic]]:
    """Every object of a multi-document stream; a `kind: List` (kubectl's output) gives its items."""
    documents, diagnostics = parse_documents(text, file)
    objects: list[KubeObject] = []
    for document in documents:
        data = document.data
        if data is None:  # an empty document: Helm leaves them between templates
            continue
        if not isinstance(data, dict):
            line, column = document.position("")
            diagnostics.append(
                Diagnostic(
                    UNUSABLE, Severity.ERROR, "a document must be a Kubernetes object (a map)", file, line, column
                )
            )
            continue
        if data.get("kind") == "List" and isinstance(data.get("items"), list):
            objects.extend(_items(document))
        else:
            objects.append(KubeObject(file, data, document.positions, document.position("")[0]))
    return objects, diagnostics


def _items(document: Document) -> Iterator[KubeObject]:
    items = document.data["items"]
    positions: list[dict[str, tuple[int, int]]] = [{} for _ in items]
    for key, position in document.positions.items():
        if key.startswith("items["):
            index, _, rest = key[len("items[") :].partition("]")
            if index.isdigit() and int(index) < len(items):
                positions[int(index)][rest.lstrip("/")] = position
    for item, where in zip(items, positions, strict=True):
        if isinstance(item, dict):
            yield KubeObject(document.file, item, where, where.get("", (document.line, 1))[0])


def left_out(data: Any, handled: Handled, path: str = "") -> Iterator[str]:
    """The paths in `data` that `handled` does not cover, each at the first level not covered."""
    if not isinstance(data, dict):
        return
    for key, value in data.items():
        sub = handled.get(key)
        here = join_path(path, str(key))
        if sub is None:
            yield here
        elif isinstance(sub, Mapping):
            yield from left_out(value, sub, here)


def reason(path: str) -> str:
    """`volumes are not translated` for a path ending in a known key; a generic phrase otherwise."""
    key = path.rsplit("/", 1)[-1].split("[", 1)[0]
    what = REASONS.get(key)
    return f"the sandbox has no {what}" if what else "it has no counterpart in the sandbox"


def mapping(value: Any) -> dict[str, Any]:
    """`value` when it is a map, else an empty one: hostile input takes the path of missing input."""
    return value if isinstance(value, dict) else {}


def sequence(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
