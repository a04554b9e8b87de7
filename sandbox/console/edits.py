"""What the console's writes are made of, before and after the operator plans them. Pure.

A request body (YAML or JSON, as Kiali's frontend sends JSON) becomes the text of one document
for `sandbox apply`'s planner: its kind, namespace and name are checked against the URL (the URL's
namespace fills a missing one, as the Kubernetes API does), a JSON merge patch (RFC 7386, what
Kiali's editor sends) is applied to the manifest as written, and the planner's verdict becomes the
JSON the API answers: the changes, the diagnostics that refused it (with their line in the text
the user sent) and the warnings.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sandbox.mesh.diagnostics import Diagnostic, Severity
from sandbox.mesh.loader import load_text
from sandbox.mesh.resources import lookup_kind
from sandbox.mesh.resources.meta import KindInfo
from sandbox.mesh.yamlsrc import dump_yaml, parse_documents
from sandbox.operator.apply import Plan

SENT = "<stdin>"  # how the planner names the text a request sent (operator.apply.Input "-")
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "text/plain")
MAX_BODY = 1 << 20  # one Istio object is a few KB; a megabyte is plenty


class EditError(ValueError):
    """A write the console cannot make as asked (the message says why and what to do)."""

    def __init__(self, message: str, status: int = 400, checks: Sequence[dict[str, Any]] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.checks = list(checks)  # with lines in the text sent, when the problem has one


@dataclass(frozen=True)
class Document:
    """One resource's document in the Istio directory, as its author wrote it."""

    file: str
    line: int  # where the document starts in the file
    text: str


def kind_of(text: str) -> KindInfo:
    info = lookup_kind(text)
    if info is None:
        raise EditError(f"unknown Istio kind {text!r} (use virtualservices, destinationrules, gateways, ...)", 404)
    return info


def parse_body(body: bytes, content_type: str, what: str = "the request body") -> tuple[str, Any]:
    """(the text, its data): JSON when the content type says so, else YAML (JSON is YAML too)."""
    if len(body) > MAX_BODY:
        raise EditError(f"{what} is larger than {MAX_BODY // 1024} KB", 413)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise EditError(f"{what} is not UTF-8 text") from None
    if not text.strip():
        raise EditError(f"{what} is empty: send the object as YAML or JSON")
    if content_type.endswith("json"):
        try:
            return text, json.loads(text)
        except ValueError as exc:
            raise EditError(f"{what} is not JSON: {exc}") from None
    documents, problems = parse_documents(text, SENT)
    errors = [p for p in problems if p.severity is Severity.ERROR]  # warnings are the planner's to report
    if errors:
        first = errors[0]
        raise EditError(
            f"Nothing was written: {what} is not valid YAML at line {first.line}: {first.message}. "
            "Fix it and save again.",
            422,
            [check_json(p) for p in errors],
        )
    if len(documents) != 1:
        raise EditError(f"{what} holds {len(documents)} documents: send one object")
    return text, documents[0].data


def object_text(
    text: str, data: Any, info: KindInfo, namespace: str, name: str | None = None, *, json_body: bool = False
) -> tuple[str, str]:
    """(the document's text for the planner, the object's name), after checking the object is the
    one the URL names. YAML keeps its comments unless a namespace must be added to it."""
    if not isinstance(data, dict):
        raise EditError("the body must be one object (a map with apiVersion, kind, metadata, spec)")
    found = lookup_kind(str(data.get("kind", "")))
    if found is None or found.kind != info.kind:
        raise EditError(f"the body's kind is {data.get('kind')!r}, but the URL is for {info.kind}")
    metadata = data.get("metadata")
    if not isinstance(metadata, dict) or not metadata.get("name"):
        raise EditError(f"the {info.kind} has no metadata.name")
    own = str(metadata["name"])
    if name is not None and own != name:
        raise EditError(
            f"the body's name is {own!r}, not {name!r}: an object cannot be renamed (create the new one, "
            "then delete the old one)"
        )
    given = metadata.get("namespace")
    if given not in (None, "") and str(given) != namespace:
        raise EditError(f"the body's namespace is {given!r}, but the URL is for namespace {namespace!r}")
    if given in (None, "") and (namespace != "default" or json_body):
        data = {**data, "metadata": {**metadata, "namespace": namespace}}
        return dump_yaml(data), own
    if json_body:
        return dump_yaml(data), own
    return text, own


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: a map merges key by key, null removes a key, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def manifest_of(document: Document) -> dict[str, Any]:
    """The document's object as a manifest (apiVersion, kind, metadata, spec), for a merge patch."""
    documents, problems = parse_documents(document.text, document.file)
    if problems or not documents or not isinstance(documents[0].data, dict):
        raise EditError(f"{document.file}:{document.line}: the document does not parse; edit it as YAML", 409)
    return dict(documents[0].data)


def check_json(d: Diagnostic) -> dict[str, Any]:
    """A diagnostic as Kiali's check, with where it is: `line` in the text the user sent when the
    problem is in it (`file` is then the name the request gave it), else in its file."""
    return {
        "code": d.code,
        "message": d.message,
        "severity": {"error": "error", "warning": "warning"}.get(str(d.severity), "unknown"),
        "path": d.path,
        "resource": d.resource,
        "file": d.file,
        "line": d.line,
        "column": d.column,
    }


def request_checks(text: str, plan: Plan, after: Sequence[Diagnostic]) -> list[dict[str, Any]]:
    """Every finding on the objects the request sent, at their line and column in its text: the
    analyzer's on the directory as it would be after the change, and what refused loading it."""
    refs = {r.ref: r for r in load_text(text, SENT).resources} if text else {}
    out, seen = [], set()
    for d in (*plan.refused, *after):
        if d.resource not in refs and d.file != SENT:
            continue
        key = (d.code, d.resource, d.path, d.message)
        if key in seen:
            continue
        seen.add(key)
        line, column = refs[d.resource].origin.position(d.path) if d.resource in refs else (d.line, d.column)
        out.append(check_json(d) | {"line": line, "column": column})
    return out


def result_json(
    plan: Plan, written: bool, text: str = "", after: Sequence[Diagnostic] = (), sources: Sequence[str] = (SENT,)
) -> dict[str, Any]:
    """The API's answer to a write: what changed (or would), why it was refused, and every check of
    the objects sent (`checks`, at their lines in `text`)."""
    ours = set(sources)
    out: dict[str, Any] = {
        "written": written,
        "changes": [
            {"kind": c.kind, "namespace": c.namespace, "name": c.name, "action": c.action, "file": c.file}
            for c in plan.changes
        ],
        "warnings": [check_json(d) | {"inRequest": d.file in ours} for d in plan.warnings],
    }
    out["checks"] = request_checks(text, plan, after)
    if not plan.ok:
        refused = [check_json(d) | {"inRequest": d.file in ours} for d in plan.refused]
        out["refused"] = refused
        out["error"] = refusal_message(plan.refused, ours)
    return out


def refusal_message(refused: Sequence[Diagnostic], sources: set[str]) -> str:
    first = refused[0]
    where = f"line {first.line}" if first.file in sources else f"{first.file}:{first.line}"
    more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
    hint = (
        " A route to a subset no DestinationRule defines answers 503 (NR): define the subset first."
        if any(d.code == "KIA1107" for d in refused)
        else ""
    )
    return (
        f"Nothing was written: the change would bring {first.code} at {where}: {first.message}{more}."
        f"{hint} Fix what is marked and save again."
    )


def loaded_lines(text: str, checks: Sequence[dict[str, Any]], file: str = "<document>") -> list[dict[str, Any]]:
    """Kiali's checks with the line of their path in `text` (the document the page shows)."""
    loaded = load_text(text, file)
    if not loaded.resources:
        return [dict(c) for c in checks]
    origin = loaded.resources[0].origin
    return [{**c, "line": origin.position(str(c.get("path") or ""))[0]} for c in checks]
