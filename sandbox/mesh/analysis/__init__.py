"""The analyzer: small checkers, one rule each, with Kiali's codes and messages (see codes.py)."""

from __future__ import annotations

from collections.abc import Collection

from sandbox.mesh.diagnostics import Diagnostic
from sandbox.mesh.state import MeshState


def analyze(state: MeshState, ignore: Collection[str] = ()) -> list[Diagnostic]:
    """Every checker's findings on `state`, minus ignored codes, in file/line order."""
    return []  # placeholder until the checkers land
