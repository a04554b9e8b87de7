"""Istio YAML -> typed Resources plus Diagnostics. The only code that sees raw resource dicts."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandbox.mesh.diagnostics import Diagnostic, Severity, join_path
from sandbox.mesh.resources import KINDS, ObjectMeta, Origin, Resource
from sandbox.mesh.schema import Decoder
from sandbox.mesh.yamlsrc import Document, parse_documents

YAML_SUFFIXES = (".yaml", ".yml", ".json")
DEFAULT_NAMESPACE = "default"
ROOT_NAMESPACE = "istio-system"


@dataclass(frozen=True)
class LoadResult:
    resources: tuple[Resource[Any], ...]
    diagnostics: tuple[Diagnostic, ...]

    @property
    def errors(self) -> tuple[Diagnostic, ...]:
        return tuple(d for d in self.diagnostics if d.severity is Severity.ERROR)


def load_text(source: str | bytes, file: str) -> LoadResult:
    return load_texts([(file, source)])


def load_texts(sources: Iterable[tuple[str, str | bytes]]) -> LoadResult:
    """Load many (file name, text) pairs; later duplicates of a resource are reported and dropped."""
    from sandbox.mesh import legacy  # registers the legacy kinds, translates them after loading

    resources: list[Resource[Any]] = []
    diagnostics: list[Diagnostic] = []
    for file, text in sources:
        documents, problems = parse_documents(text, file)
        diagnostics.extend(problems)
        for document in documents:
            _load_document(document, resources, diagnostics)
    translated, notes = legacy.translate([r for r in resources if KINDS[r.kind].legacy])
    diagnostics.extend(notes)
    unique = _drop_duplicates([*resources, *translated], diagnostics)
    return LoadResult(tuple(unique), tuple(diagnostics))


def collect_files(paths: Sequence[str | Path]) -> list[Path]:
    """Files named directly, plus every YAML/JSON file under named directories, in a stable order."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(
                sorted(
                    p
                    for p in path.rglob("*")
                    if p.suffix in YAML_SUFFIXES
                    and p.is_file()
                    and not any(part.startswith(".") for part in p.relative_to(path).parts)
                )
            )
        else:
            files.append(path)
    return files


def load_paths(paths: Sequence[str | Path], stdin: bytes | None = None) -> LoadResult:
    """Load files, directories (recursively) and `-` (standard input)."""
    sources: list[tuple[str, str | bytes]] = []
    missing: list[Diagnostic] = []
    for path in collect_files([p for p in paths if str(p) != "-"]):
        try:
            sources.append((str(path), path.read_bytes()))
        except OSError as exc:
            missing.append(Diagnostic("SBX000", Severity.ERROR, f"cannot read: {exc.strerror}", str(path), 0, 0))
    if any(str(p) == "-" for p in paths):
        sources.append(("<stdin>", stdin if stdin is not None else sys.stdin.buffer.read()))
    result = load_texts(sources)
    return LoadResult(result.resources, (*missing, *result.diagnostics))


def _load_document(document: Document, out: list[Resource[Any]], diagnostics: list[Diagnostic]) -> None:
    data = document.data
    if data is None:
        return
    if isinstance(data, dict) and data.get("kind") == "List" and isinstance(data.get("items"), list):
        items = data["items"]  # `kubectl get -o yaml` output
        positions = _positions_by_item(document, len(items))
        for i, item in enumerate(items):
            sub = positions[i]
            sub[""] = document.positions.get(join_path("items", i), (document.line, 1))
            _load_object(Document(document.file, document.index, sub[""][0], item, sub), out, diagnostics)
        return
    _load_object(document, out, diagnostics)


def _positions_by_item(document: Document, count: int) -> list[dict[str, tuple[int, int]]]:
    """Each `items[i]`'s positions relative to it, in one pass (a scan per item was quadratic)."""
    out: list[dict[str, tuple[int, int]]] = [{} for _ in range(count)]
    for key, position in document.positions.items():
        if key.startswith("items["):
            index, _, rest = key[len("items[") :].partition("]/")
            if rest and index.isdigit() and int(index) < count:
                out[int(index)][rest] = position
    return out


def _load_object(document: Document, out: list[Resource[Any]], diagnostics: list[Diagnostic]) -> None:
    data, file = document.data, document.file

    def report(code: str, severity: Severity, message: str, path: str = "") -> None:
        line, col = document.position(path)
        diagnostics.append(Diagnostic(code, severity, message, file, line, col, path=path))

    if not isinstance(data, dict):
        report("SBX007", Severity.ERROR, "a document must be a map with apiVersion, kind, metadata and spec")
        return
    api_version, kind = data.get("apiVersion"), data.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str):
        missing = "apiVersion" if not isinstance(api_version, str) else "kind"
        report("SBX006", Severity.ERROR, f"missing or invalid '{missing}'", missing if missing in data else "")
        return
    group, _, version = api_version.rpartition("/")
    info = KINDS.get(kind)
    if info is None or info.group != group:
        if group.endswith("istio.io"):
            from sandbox.mesh.schema import suggest

            hint = suggest(kind, KINDS)
            tail = f"; did you mean '{hint}'?" if hint else ""
            report("SBX007", Severity.ERROR, f"unknown kind '{kind}' in {group or api_version}{tail}", "kind")
        else:
            report("SBX007", Severity.INFO, f"{kind} ({api_version}) is not an Istio resource; ignored", "kind")
        return
    if version not in info.versions:
        served = ", ".join(f"{info.group}/{v}" for v in info.versions)
        report(
            "SBX005", Severity.ERROR, f"apiVersion '{api_version}' is not served for {kind}; use {served}", "apiVersion"
        )
        return
    decoder = Decoder(file, document.position)
    meta = decoder.decode_object(ObjectMeta, data.get("metadata"), "metadata")
    if meta is None or not meta.name:
        diagnostics.extend(decoder.diagnostics)
        said = any(d.severity is Severity.ERROR for d in decoder.diagnostics)  # missing or not a string
        if meta is not None and not said:  # `name: ""`
            report("SBX006", Severity.ERROR, "missing required field 'metadata.name'", "metadata")
        return
    namespace = meta.namespace or (ROOT_NAMESPACE if info.cluster_scoped else DEFAULT_NAMESPACE)
    decoder.resource = f"{kind}/{namespace}/{meta.name}"
    for d in decoder.diagnostics:  # metadata problems found before the resource had a name
        diagnostics.append(
            Diagnostic(d.code, d.severity, d.message, d.file, d.line, d.column, d.path, decoder.resource)
        )
    decoder.diagnostics = []
    for key in data:
        if key not in ("apiVersion", "kind", "metadata", "spec", "status"):
            decoder.report("SBX002", Severity.WARNING, f"unknown top-level field '{key}'", str(key))
    spec = decoder.decode_object(info.spec, data.get("spec"), "spec")
    diagnostics.extend(decoder.diagnostics)
    if spec is None:
        return
    origin = Origin(file, document.line, document.index, document.positions)
    out.append(Resource(kind, api_version, meta.name, namespace, spec, meta.labels, meta.annotations, origin))


def _drop_duplicates(resources: list[Resource[Any]], diagnostics: list[Diagnostic]) -> list[Resource[Any]]:
    seen: dict[tuple[str, str, str], Resource[Any]] = {}
    for resource in resources:
        first = seen.get(resource.key)
        if first is None:
            seen[resource.key] = resource
            continue
        line, col = resource.origin.position("metadata/name")
        diagnostics.append(
            Diagnostic(
                "SBX009",
                Severity.ERROR,
                f"{resource.kind} {resource.namespace}/{resource.name} is already defined at "
                f"{first.origin.file}:{first.origin.first_line}; this definition is ignored",
                resource.origin.file,
                line,
                col,
                "metadata/name",
                resource.ref,
            )
        )
    return list(seen.values())
