"""The envelope every resource shares (kind, metadata, where it came from) and the kind registry."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sandbox.mesh.diagnostics import nearest_position
from sandbox.mesh.resources.common import model

S = TypeVar("S")


@model
class ObjectMeta:
    name: str
    namespace: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    # Fields kubectl output carries; accepted so exported YAML loads without warnings.
    generate_name: str | None = None
    uid: str | None = None
    resource_version: str | None = None
    generation: int | None = None
    creation_timestamp: Any = None
    managed_fields: Any = None
    finalizers: tuple[str, ...] = ()
    owner_references: Any = None


@dataclass(frozen=True)
class Origin:
    """Where a resource was read: file, the line of its document, and each path's position."""

    file: str
    line: int = 1
    document: int = 0
    positions: dict[str, tuple[int, int]] = field(default_factory=dict, repr=False, compare=False, hash=False)
    # A resource no document defines: the legacy translation of this one (`Kind/ns/name`)
    translated_from: str = field(default="", compare=False, hash=False)

    def position(self, path: str) -> tuple[int, int]:
        """The position of `path`, or of its nearest ancestor that has one."""
        return nearest_position(self.positions, path, (self.line, 1))

    @property
    def first_line(self) -> int:
        """The resource's own first line (its first key): `line` is where its document starts,
        which is the `---` separator when there is one."""
        return self.position("")[0]


@dataclass(frozen=True)
class Resource(Generic[S]):
    """One Istio object: `spec` is the typed dataclass of its kind."""

    kind: str
    api_version: str
    name: str
    namespace: str
    spec: S
    labels: dict[str, str] = field(default_factory=dict, hash=False)
    annotations: dict[str, str] = field(default_factory=dict, hash=False)
    origin: Origin = field(default_factory=lambda: Origin("<memory>"), compare=False, hash=False)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind, self.namespace, self.name)

    @property
    def ref(self) -> str:
        """`Kind/namespace/name`, how diagnostics and the CLI name a resource."""
        return f"{self.kind}/{self.namespace}/{self.name}"

    @property
    def group(self) -> str:
        return self.api_version.split("/", 1)[0]


@dataclass(frozen=True)
class KindInfo:
    kind: str
    group: str
    versions: tuple[str, ...]
    spec: type[Any]
    short_names: tuple[str, ...] = ()
    plural: str = ""
    cluster_scoped: bool = False
    legacy: bool = False  # a removed API we still read and translate

    @property
    def preferred_api_version(self) -> str:
        return f"{self.group}/{self.versions[0]}"
