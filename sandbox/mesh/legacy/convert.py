"""`sandbox convert`: files with legacy resources -> the same files with modern resources instead.

Modern documents pass through as written (comments included); each legacy document is replaced by
the YAML of what it translates to. Files are loaded together, so a ServiceRoleBinding in one file
finds its ServiceRole and the ClusterRbacConfig in another.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandbox.mesh.diagnostics import Diagnostic, Severity
from sandbox.mesh.legacy import DEPRECATED, translate
from sandbox.mesh.legacy.common import document
from sandbox.mesh.loader import collect_files, load_texts
from sandbox.mesh.resources import KINDS, Resource
from sandbox.mesh.yamlsrc import Document, dump_all_yaml, parse_documents


@dataclass(frozen=True)
class Conversion:
    text: str  # the converted multi-document YAML
    diagnostics: tuple[Diagnostic, ...]  # everything but the deprecations the conversion answers

    @property
    def errors(self) -> tuple[Diagnostic, ...]:
        return tuple(d for d in self.diagnostics if d.severity is Severity.ERROR)


def convert_paths(paths: Sequence[str | Path], stdin: bytes | None = None) -> Conversion:
    sources: list[tuple[str, str | bytes]] = []
    unreadable: list[Diagnostic] = []
    for path in collect_files([p for p in paths if str(p) != "-"]):
        try:
            sources.append((str(path), path.read_bytes()))
        except OSError as exc:
            unreadable.append(Diagnostic("SBX000", Severity.ERROR, f"cannot read: {exc.strerror}", str(path)))
    if any(str(p) == "-" for p in paths):
        sources.append(("<stdin>", stdin if stdin is not None else sys.stdin.buffer.read()))
    result = convert_texts(sources)
    return Conversion(result.text, (*unreadable, *result.diagnostics))


def convert_texts(sources: Sequence[tuple[str, str | bytes]]) -> Conversion:
    loaded = load_texts(sources)
    legacy = [r for r in loaded.resources if KINDS[r.kind].legacy]
    translated, _ = translate(legacy)
    by_document: dict[tuple[str, int], list[Resource[Any]]] = defaultdict(list)
    for resource in legacy:  # a legacy document that failed to load stays as written
        by_document[(resource.origin.file, resource.origin.document)] = []
    for resource in translated:
        by_document[(resource.origin.file, resource.origin.document)].append(resource)
    chunks: list[str] = []
    for file, source in sources:
        text = source.decode("utf-8", "replace") if isinstance(source, bytes) else source
        documents, _ = parse_documents(source, file)
        converted = _convert_file(text, documents, by_document, file)
        if converted and len(sources) > 1:
            converted[0] = f"# Source: {file}\n{converted[0]}"
        chunks.extend(converted)
    diagnostics = tuple(sorted((d for d in loaded.diagnostics if d.code != DEPRECATED), key=lambda d: d.sort_key()))
    return Conversion("---\n".join(chunks), diagnostics)


def _convert_file(
    text: str, documents: list[Document], by_document: dict[tuple[str, int], list[Resource[Any]]], file: str
) -> list[str]:
    lines = text.splitlines(keepends=True)
    starts = [1 if i == 0 else d.line for i, d in enumerate(documents)]
    out: list[str] = []
    for i, doc in enumerate(documents):
        if doc.data is None:
            continue
        loaded = (file, doc.index) in by_document
        produced = [document(r) for r in by_document.get((file, doc.index), [])]
        if _is_legacy(doc.data) and loaded:
            out.extend(_split(dump_all_yaml(produced)) if produced else [])
        elif loaded and _is_list(doc.data) and any(_is_legacy(item) for item in doc.data["items"]):
            kept = [item for item in doc.data["items"] if not _is_legacy(item)]
            out.extend(_split(dump_all_yaml([*kept, *produced])))
        else:
            end = starts[i + 1] - 1 if i + 1 < len(starts) else len(lines)
            out.append(_as_written(lines[starts[i] - 1 : end]))
    return out


def _as_written(lines: list[str]) -> str:
    """A document's own text, without its `---` start and `...` end markers."""
    if lines and lines[0].rstrip() == "---":
        lines = lines[1:]
    elif lines and lines[0].startswith("--- "):
        lines = [lines[0][4:], *lines[1:]]
    body = "".join(line for line in lines if line.rstrip() != "...")
    return body if body.endswith("\n") else body + "\n"


def _split(dumped: str) -> list[str]:
    return [part if part.endswith("\n") else part + "\n" for part in dumped.split("\n---\n")] if dumped else []


def _is_legacy(data: Any) -> bool:
    if not isinstance(data, dict):
        return False
    info = KINDS.get(str(data.get("kind")))
    return info is not None and info.legacy and str(data.get("apiVersion", "")).startswith(info.group + "/")


def _is_list(data: Any) -> bool:
    return isinstance(data, dict) and data.get("kind") == "List" and isinstance(data.get("items"), list)
