"""Rendering diagnostics for people and for CI systems (text, json, sarif)."""

from __future__ import annotations

from collections.abc import Sequence

from sandbox.mesh.diagnostics import Diagnostic

FORMATS = ("text", "json", "sarif")


def render(diagnostics: Sequence[Diagnostic], fmt: str) -> str:
    return "\n".join(d.format() for d in diagnostics)
