"""`sandbox apply` and `sandbox delete`: plan the edit of the Istio directory, validate it, write it.

Semantics, per resource as kubectl has them:
- apply: a resource that exists in some file of the directory is replaced there, in place (its
  document only; the rest of the file stays as written): `configured`, or `unchanged` when equal.
  A new one goes to a file named after the applied file (`-f dir/` keeps paths under the
  directory; stdin gives `<kind>-<namespace>-<name>.yaml`): `created`.
- delete: each named resource's document is removed from the file that has it; a file left with
  no document is removed. A resource found nowhere is `not found` (and the exit status is 1).
The candidate directory (every file as it would be, with the Compose topology) is loaded and
analysed before anything is written; a change that brings a new error (schema, analyzer, or a
warning that blackholes traffic such as a missing subset) is refused and nothing changes.
Planning is pure; `write` does the I/O, one atomic rename per file.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox.control.store import blocks
from sandbox.mesh.diagnostics import Diagnostic, Severity
from sandbox.mesh.legacy.common import document as manifest
from sandbox.mesh.loader import LoadResult, load_texts
from sandbox.mesh.resources import KINDS, Resource
from sandbox.mesh.state import MeshState
from sandbox.mesh.topology import Topology
from sandbox.mesh.yamlsrc import dump_yaml
from sandbox.operator.documents import Key, YamlFile, document_texts

Analyzer = Callable[[MeshState], Sequence[Diagnostic]]


@dataclass(frozen=True)
class Change:
    kind: str
    name: str
    namespace: str
    action: str  # created | configured | unchanged | deleted | not found
    file: str = ""  # where the resource lives (or lived)

    @property
    def line(self) -> str:
        """kubectl's `virtualservice.networking.istio.io/reviews configured`."""
        info = KINDS.get(self.kind)
        group = f".{info.group}" if info is not None else ""
        return f"{self.kind.lower()}{group}/{self.name} {self.action}"


@dataclass(frozen=True)
class Plan:
    changes: tuple[Change, ...] = ()
    writes: dict[str, str | None] = field(default_factory=dict)  # path -> new text (None: remove the file)
    refused: tuple[Diagnostic, ...] = ()  # the errors that stop it (nothing is written)
    warnings: tuple[Diagnostic, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.refused


def _default_analyzer(state: MeshState) -> Sequence[Diagnostic]:
    from sandbox.mesh.analysis import analyze

    return analyze(state)


def _error_key(d: Diagnostic) -> tuple[str, str, str, str]:
    return (d.code, d.resource, d.path, d.message)  # lines move when a file is edited


class _Directory:
    """The Istio directory's files, parsed, and where each resource lives."""

    def __init__(self, files: Mapping[str, str]) -> None:
        self.files = {path: YamlFile.parse(path, text) for path, text in sorted(files.items())}
        self.original = dict(files)
        self.where: dict[Key, str] = {}
        for path, parsed in self.files.items():
            for r in parsed.loaded.resources:
                if not r.origin.translated_from:  # made from a legacy resource, defined by no document
                    self.where.setdefault(r.key, path)
        self.touched: set[str] = set()

    def existing(self, key: Key) -> Resource[Any] | None:
        path = self.where.get(key)
        return self.files[path].resource(key) if path else None

    def file(self, path: str) -> YamlFile:
        if path not in self.files:
            self.files[path] = YamlFile.parse(path, "")
        self.touched.add(path)
        return self.files[path]

    def writes(self) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        for path in sorted(self.touched):
            parsed = self.files[path]
            if parsed.empty:
                if path in self.original:
                    out[path] = None
                continue
            text = parsed.render()
            if text != self.original.get(path):
                out[path] = text
        return out

    def candidate_texts(self) -> list[tuple[str, str]]:
        writes = self.writes()
        texts = [(p, t) for p, t in self.original.items() if p not in writes]
        texts += [(p, t) for p, t in writes.items() if t is not None]
        return sorted(texts)


def _validate(
    directory: _Directory,
    topology: Topology,
    analyzer: Analyzer | None,
    applied: Sequence[Resource[Any]] = (),
) -> tuple[tuple[Diagnostic, ...], tuple[Diagnostic, ...]]:
    """(new blocking problems, new warnings) of the candidate directory against the current one.
    A problem in an applied resource names the applied file and line, not where it would go."""
    before = load_texts(sorted(directory.original.items()))
    after = load_texts(directory.candidate_texts())
    found_before = list(before.diagnostics)
    found_after = list(after.diagnostics)
    if analyzer is not None:
        found_before += analyzer(MeshState(before.resources, topology))
        found_after += analyzer(MeshState(after.resources, topology))
    old = {_error_key(d) for d in found_before}
    sources = {r.ref: r for r in applied}
    new = [_at_source(d, sources) for d in found_after if _error_key(d) not in old]
    return tuple(d for d in new if blocks(d)), tuple(d for d in new if not blocks(d))


def _at_source(d: Diagnostic, sources: Mapping[str, Resource[Any]]) -> Diagnostic:
    source = sources.get(d.resource)
    if source is None:
        return d
    line, column = source.origin.position(d.path)
    return dataclasses.replace(d, file=source.origin.file, line=line, column=column)


def target_name(source: str, resource: Resource[Any], root: str | None = None) -> str:
    """Where a new resource goes in the Istio directory (relative): the applied file's name, its
    path under an applied directory, or `<kind>-<namespace>-<name>.yaml` from stdin."""
    if source == "-":
        return f"{resource.kind.lower()}-{resource.namespace}-{resource.name}.yaml"
    if root is not None:
        return os.path.relpath(source, root)
    return os.path.basename(source)


@dataclass(frozen=True)
class Input:
    source: str  # a file path, or "-" for stdin
    text: str
    root: str | None = None  # the directory it was found in, for `-f DIR`

    @property
    def name(self) -> str:
        """How diagnostics name it."""
        return self.source if self.source != "-" else "<stdin>"


def _load(inputs: Sequence[Input]) -> tuple[LoadResult, tuple[Diagnostic, ...]]:
    """The inputs' resources and their errors (any error refuses the whole apply or delete)."""
    loaded = load_texts([(i.name, i.text) for i in inputs])
    return loaded, tuple(d for d in loaded.diagnostics if d.severity is Severity.ERROR)


def plan_apply(
    istio_dir: str | Path,
    files: Mapping[str, str],
    inputs: Sequence[Input],
    topology: Topology,
    analyzer: Analyzer | None = _default_analyzer,
) -> Plan:
    loaded, errors = _load(inputs)
    if errors:
        return Plan(refused=errors)
    if not loaded.resources:
        empty = Diagnostic("SBX007", Severity.ERROR, "no Istio resources to apply", inputs[0].source if inputs else "-")
        return Plan(refused=(empty,))
    return plan_edit(istio_dir, files, inputs, (), topology, analyzer)


def plan_edit(
    istio_dir: str | Path,
    files: Mapping[str, str],
    inputs: Sequence[Input],
    remove: Sequence[Key],
    topology: Topology,
    analyzer: Analyzer | None = _default_analyzer,
) -> Plan:
    """Apply `inputs` and delete `remove` in one change, validated once (putting back a set of
    rules may need both at the same time: a route and the subsets it names)."""
    loaded, errors = _load(inputs)
    if errors:
        return Plan(refused=errors)
    directory = _Directory(files)
    changes: list[Change] = []
    for item in inputs:
        for text, resources in document_texts(item.name, item.text):
            for r in resources:
                changes.append(_put(directory, istio_dir, item, r, text if len(resources) == 1 else None))
    changes += [_remove(directory, key) for key in remove]
    refused, warnings = _validate(directory, topology, analyzer, loaded.resources)
    if refused:
        return Plan(tuple(changes), refused=refused, warnings=warnings)
    return Plan(tuple(changes), directory.writes(), warnings=warnings)


def _put(directory: _Directory, istio_dir: str | Path, item: Input, r: Resource[Any], text: str | None) -> Change:
    body = text if text is not None else dump_yaml(manifest(r))
    existing = directory.existing(r.key)
    if existing is not None:
        path = directory.where[r.key]
        if existing == r:
            return Change(r.kind, r.name, r.namespace, "unchanged", path)
        directory.file(path).replace(r.key, r, body)
        return Change(r.kind, r.name, r.namespace, "configured", path)
    path = str(Path(istio_dir) / target_name(item.source, r, item.root))
    directory.file(path).append(r.key, body)
    directory.where[r.key] = path
    return Change(r.kind, r.name, r.namespace, "created", path)


def _remove(directory: _Directory, key: Key) -> Change:
    kind, namespace, name = key
    path = directory.where.pop(key, None)
    if path is None:
        return Change(kind, name, namespace, "not found")
    directory.file(path).replace(key, None, None)
    return Change(kind, name, namespace, "deleted", path)


def plan_delete(
    files: Mapping[str, str],
    inputs: Sequence[Input],
    topology: Topology,
    analyzer: Analyzer | None = _default_analyzer,
) -> Plan:
    """Delete the resources the inputs define (only their kind, namespace and name matter)."""
    loaded, errors = _load(inputs)
    if errors:
        return Plan(refused=errors)
    keys = [r.key for r in loaded.resources if not r.origin.translated_from]  # a translation goes with its source
    return plan_delete_keys(files, keys, topology, analyzer)


def plan_delete_keys(
    files: Mapping[str, str],
    keys: Sequence[Key],
    topology: Topology,
    analyzer: Analyzer | None = _default_analyzer,
) -> Plan:
    """Delete resources named by (kind, namespace, name), as `sandbox delete vs reviews` does."""
    return plan_edit("", files, (), keys, topology, analyzer)


def read_inputs(paths: Sequence[str], stdin: Callable[[], str]) -> tuple[list[Input], list[str]]:
    """The texts `-f` names (files, directories of YAML, `-`), and problems reading them."""
    from sandbox.mesh.loader import collect_files

    inputs: list[Input] = []
    problems: list[str] = []
    for raw in paths:
        if raw == "-":
            inputs.append(Input("-", stdin()))
            continue
        path = Path(raw)
        if not path.exists():
            problems.append(f"no such file or directory: {raw}")
            continue
        root = str(path) if path.is_dir() else None
        for found in collect_files([path]):
            try:
                inputs.append(Input(str(found), found.read_text(encoding="utf-8"), root))
            except (OSError, UnicodeDecodeError) as exc:
                problems.append(f"{found}: cannot read: {getattr(exc, 'strerror', None) or exc}")
    return inputs, problems


def write(plan: Plan) -> None:
    """Each file atomically (temp file + rename); files left empty are removed."""
    from sandbox.runtime.project import write_atomic

    for path, text in plan.writes.items():
        if text is None:
            Path(path).unlink(missing_ok=True)
        else:
            write_atomic(Path(path), text)
