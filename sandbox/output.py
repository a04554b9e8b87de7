"""Rendering diagnostics for people and for CI systems (text, json, sarif).

`text` is the compiler-style `file:line:col: severity CODE message` line editors and CI parse;
`json` is a list of flat objects with a stable key order; `sarif` is SARIF 2.1.0, which GitHub
code scanning and other CI systems turn into pull-request annotations.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import PurePath
from typing import Any
from urllib.parse import quote

from sandbox import __version__
from sandbox.mesh.analysis.codes import describe
from sandbox.mesh.diagnostics import Diagnostic, Severity

FORMATS = ("text", "json", "sarif")
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
SARIF_LEVEL = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note"}


def render(diagnostics: Sequence[Diagnostic], fmt: str) -> str:
    if fmt == "json":
        return json.dumps([as_json(d) for d in diagnostics], indent=2)
    if fmt == "sarif":
        return json.dumps(as_sarif(diagnostics), indent=2)
    if fmt == "text":
        return "\n".join(d.format() for d in diagnostics)
    raise ValueError(f"unknown output format {fmt!r}; use one of {', '.join(FORMATS)}")


def as_json(d: Diagnostic) -> dict[str, Any]:
    return d.to_data()


def artifact_uri(file: str) -> str:
    """A relative URI reference for a file name (SARIF wants URIs; keep '/' separators)."""
    return quote(PurePath(file).as_posix(), safe="/:")


def as_sarif(diagnostics: Sequence[Diagnostic]) -> dict[str, Any]:
    codes = sorted({d.code for d in diagnostics})
    rule_index = {code: i for i, code in enumerate(codes)}
    rules = []
    for code in codes:
        check = describe(code)
        rules.append(
            {
                "id": code,
                "shortDescription": {"text": check.message},
                "defaultConfiguration": {"level": SARIF_LEVEL[check.severity]},
            }
        )
    results = []
    for d in diagnostics:
        location: dict[str, Any] = {"artifactLocation": {"uri": artifact_uri(d.file)}}
        if d.line > 0:
            location["region"] = {"startLine": d.line, "startColumn": max(d.column, 1)}
        result: dict[str, Any] = {
            "ruleId": d.code,
            "ruleIndex": rule_index[d.code],
            "level": SARIF_LEVEL[d.severity],
            "message": {"text": d.message},
            "locations": [{"physicalLocation": location}],
        }
        if d.resource:
            name = f"{d.resource} {d.path}".strip()
            result["locations"][0]["logicalLocations"] = [{"fullyQualifiedName": name, "kind": "resource"}]
        results.append(result)
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "sandbox",
                        "version": __version__,
                        "rules": rules,
                    }
                },
                "results": results,
            }
        ],
    }
