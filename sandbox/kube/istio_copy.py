"""Istio YAML for a cluster: the file as written, with `metadata.namespace` added where it was implicit.

In the sandbox a resource without a namespace is in `default` (mesh.loader); `kubectl apply` would
put it in the current context's namespace instead, so the copy says it. The line is inserted into
the text beside `name:`, keeping comments and layout; only a document whose metadata is written in
flow style (`metadata: {name: x}`) makes the file be written out again from its data.
"""

from __future__ import annotations

from dataclasses import dataclass

from sandbox.kube.objects import ADAPTED
from sandbox.mesh import legacy  # noqa: F401 - importing it registers the legacy kinds in KINDS
from sandbox.mesh.diagnostics import Diagnostic, Severity
from sandbox.mesh.loader import DEFAULT_NAMESPACE, ROOT_NAMESPACE
from sandbox.mesh.resources import KINDS, KindInfo
from sandbox.mesh.yamlsrc import Document, dump_all_yaml, parse_documents


@dataclass(frozen=True)
class Copied:
    text: str
    namespaces: frozenset[str]  # of every Istio resource in the file
    diagnostics: tuple[Diagnostic, ...]


def copy_with_namespaces(source: str, file: str) -> Copied:
    documents, problems = parse_documents(source, file)
    diagnostics = list(problems)
    namespaces: set[str] = set()
    inserts: dict[int, str] = {}  # 0-based line index -> the line to put before it
    rewrite = False
    lines = source.splitlines(keepends=True)
    for document in documents:
        missing = _implicit_namespace(document, namespaces, diagnostics)
        if missing is None:
            continue
        line, column = document.position("metadata/name")
        text = lines[line - 1] if 0 < line <= len(lines) else ""
        indent = text[: column - 1]
        if indent.strip() or not text[column - 1 :].startswith("name"):  # flow style: no line to put it on
            rewrite = True
            continue
        ending = text[len(text.rstrip("\r\n")) :] or "\n"
        inserts[line - 1] = f"{indent}namespace: {missing}{ending}"
    if rewrite:
        return Copied(_rewritten(documents, file, diagnostics), frozenset(namespaces), tuple(diagnostics))
    out = [inserts[i] + text if i in inserts else text for i, text in enumerate(lines)]
    return Copied("".join(out), frozenset(namespaces), tuple(diagnostics))


def _implicit_namespace(document: Document, namespaces: set[str], diagnostics: list[Diagnostic]) -> str | None:
    """The namespace to add to this document's resource, or None when it names one (or is not Istio's)."""
    data = document.data
    info = _istio_kind(data)
    if info is None:
        return None
    meta = data["metadata"]
    if info.legacy:
        line, column = document.position("kind")
        diagnostics.append(
            Diagnostic(
                ADAPTED,
                Severity.WARNING,
                f"{info.kind} is a legacy {info.group} API that no current Istio serves; it is copied as written: "
                f"`sandbox convert {document.file}` prints its modern equivalent",
                document.file,
                line,
                column,
                "kind",
            )
        )
    namespace = meta.get("namespace")
    if isinstance(namespace, str) and namespace:
        namespaces.add(namespace)
        return None
    implicit = ROOT_NAMESPACE if info.cluster_scoped else DEFAULT_NAMESPACE
    namespaces.add(implicit)
    return implicit


def _istio_kind(data: object) -> KindInfo | None:
    """The kind of an Istio resource with a metadata map, else None (other objects pass through)."""
    if not isinstance(data, dict) or not isinstance(data.get("metadata"), dict):
        return None
    info = KINDS.get(str(data.get("kind")))
    group = str(data.get("apiVersion", "")).rpartition("/")[0]
    return info if info is not None and info.group == group else None


def _rewritten(documents: list[Document], file: str, diagnostics: list[Diagnostic]) -> str:
    out = []
    for document in documents:
        data = document.data
        info = _istio_kind(data)
        if info is not None and not data["metadata"].get("namespace"):
            implicit = ROOT_NAMESPACE if info.cluster_scoped else DEFAULT_NAMESPACE
            data = {**data, "metadata": {**data["metadata"], "namespace": implicit}}
        if data is not None:
            out.append(data)
    diagnostics.append(
        Diagnostic(
            ADAPTED,
            Severity.INFO,
            "metadata in flow style: the file is written out again with namespaces added, without its comments",
            file,
            1,
            1,
        )
    )
    return f"# From {file}, with metadata.namespace added where it was implicit\n" + dump_all_yaml(out)
