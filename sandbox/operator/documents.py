"""A YAML file as a list of documents, each with its text as written and the resources it defines.

`sandbox apply` and `delete` edit the Istio directory a document at a time, so the rest of a file
(comments, formatting, other resources) stays exactly as its author wrote it. Pure.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sandbox.mesh.legacy.common import document as manifest
from sandbox.mesh.loader import LoadResult, load_text
from sandbox.mesh.resources import Resource
from sandbox.mesh.yamlsrc import dump_yaml, parse_documents

Key = tuple[str, str, str]  # (kind, namespace, name)


@dataclass
class Chunk:
    """One document: its text without the `---` line, and the keys of the resources it defines."""

    text: str
    keys: list[Key] = field(default_factory=list)


@dataclass
class YamlFile:
    path: str
    chunks: list[Chunk]
    loaded: LoadResult
    json: bool = False  # a .json file holds one document and is written back as JSON

    @classmethod
    def parse(cls, path: str, text: str) -> YamlFile:
        loaded = load_text(text, path)
        by_document: dict[int, list[Key]] = {}
        for r in loaded.resources:
            if not r.origin.translated_from:  # a legacy document's translation is not written there
                by_document.setdefault(r.origin.document, []).append(r.key)
        documents, _ = parse_documents(text, path)
        lines = text.splitlines(keepends=True)
        starts = [1 if i == 0 else d.line for i, d in enumerate(documents)]
        chunks = []
        for i, doc in enumerate(documents):
            end = starts[i + 1] - 1 if i + 1 < len(starts) else len(lines)
            chunks.append(Chunk(_as_written(lines[starts[i] - 1 : end]), by_document.get(doc.index, [])))
        if not documents and text.strip():  # unparseable: keep it whole, it defines nothing
            chunks.append(Chunk(text))
        return cls(path, chunks, loaded, path.endswith(".json"))

    def resource(self, key: Key) -> Resource[Any] | None:
        return next((r for r in self.loaded.resources if r.key == key), None)

    def replace(self, key: Key, resource: Resource[Any] | None, text: str | None) -> None:
        """Put `text` (None: nothing) where `key`'s document is; a document defining several
        resources (a List) is split into one document per resource first."""
        for i, chunk in enumerate(self.chunks):
            if key not in chunk.keys:
                continue
            if len(chunk.keys) > 1:
                parts = []
                for other in chunk.keys:
                    if other == key:
                        if text is not None:
                            parts.append(Chunk(text, [key]))
                        continue
                    existing = self.resource(other)
                    if existing is not None:
                        parts.append(Chunk(dump_yaml(manifest(existing)), [other]))
                self.chunks[i : i + 1] = parts
            elif text is None:
                del self.chunks[i]
            else:
                self.chunks[i] = Chunk(text, [key])
            return

    def append(self, key: Key, text: str) -> None:
        self.chunks.append(Chunk(text, [key]))

    @property
    def empty(self) -> bool:
        """No document left that says anything (only blank lines and comments)."""
        return not any(_meaningful(c.text) for c in self.chunks)

    def render(self) -> str:
        if self.json and len(self.chunks) == 1 and self.chunks[0].keys:
            return self.chunks[0].text if self.chunks[0].text.lstrip().startswith("{") else _to_json(self.chunks[0])
        parts = [c.text if c.text.endswith("\n") or not c.text else c.text + "\n" for c in self.chunks]
        return "---\n".join(parts)


def _to_json(chunk: Chunk) -> str:
    loaded = load_text(chunk.text, "<chunk>")
    data = [manifest(r) for r in loaded.resources]
    return (
        json.dumps(data[0] if len(data) == 1 else {"apiVersion": "v1", "kind": "List", "items": data}, indent=2) + "\n"
    )


def _meaningful(text: str) -> bool:
    return any(line.strip() and not line.lstrip().startswith("#") for line in text.splitlines())


def _as_written(lines: list[str]) -> str:
    """A document's own text, without its `---` start and `...` end markers."""
    if lines and lines[0].rstrip() == "---":
        lines = lines[1:]
    elif lines and lines[0].startswith("--- "):
        lines = [lines[0][4:], *lines[1:]]
    while lines and lines[-1].rstrip() == "...":
        lines = lines[:-1]
    return "".join(lines)


def document_texts(path: str, text: str) -> list[tuple[str, list[Resource[Any]]]]:
    """An input file's documents as written, each with the resources it defines (in order)."""
    parsed = YamlFile.parse(path, text)
    by_key = {r.key: r for r in parsed.loaded.resources}
    out = []
    for chunk in parsed.chunks:
        resources = [by_key[k] for k in chunk.keys if k in by_key]
        if resources:
            out.append((chunk.text, resources))
    return out
