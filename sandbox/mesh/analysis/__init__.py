"""The analyzer: small checkers, one rule each, with Kiali's codes and messages (see codes.py).

`analyze(state)` runs every checker over a MeshState. The same checkers serve `sandbox analyze`,
the control plane's validated write path and the console's config editor.
"""

from __future__ import annotations

from collections.abc import Collection

from sandbox.mesh.analysis import (
    destinationrules,
    enforcement,
    gateways,
    generic,
    mtls_conflicts,
    schema,
    schema_resources,
    security,
    serviceentries,
    sidecars,
    virtualservices,
)
from sandbox.mesh.analysis.context import Checker, Context
from sandbox.mesh.diagnostics import Diagnostic
from sandbox.mesh.state import MeshState

CHECKERS: tuple[Checker, ...] = (
    *schema.CHECKERS,
    *schema_resources.CHECKERS,
    *generic.CHECKERS,
    *virtualservices.CHECKERS,
    *destinationrules.CHECKERS,
    *mtls_conflicts.CHECKERS,
    *gateways.CHECKERS,
    *serviceentries.CHECKERS,
    *sidecars.CHECKERS,
    *security.CHECKERS,
    *enforcement.CHECKERS,
)


def run(ctx: Context, ignore: Collection[str] = ()) -> list[Diagnostic]:
    """Every checker's findings in `ctx`, minus the `ignore`d codes, in file/line order."""
    for checker in CHECKERS:
        checker(ctx)
    skip = {code.strip().upper() for code in ignore}
    return sorted((d for d in ctx.diagnostics if d.code not in skip), key=lambda d: d.sort_key())


def analyze(state: MeshState, ignore: Collection[str] = ()) -> list[Diagnostic]:
    """Every checker's findings on `state`, minus ignored codes, in file/line order."""
    return run(Context(state), ignore)


__all__ = ["CHECKERS", "Context", "analyze", "run"]
