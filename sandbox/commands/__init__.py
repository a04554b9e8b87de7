"""CLI command groups, one module per area (operator verbs, runtime lifecycle, load, console).

Each module defines `register(app)` and keeps its commands thin: parse options, call the library,
print. sandbox/cli.py registers them all, so adding a command never means editing a shared file
beyond one line there.
"""

from __future__ import annotations

import typer

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2


def usage_error(message: str) -> typer.Exit:
    """Print `error: ...` to stderr; raise the returned Exit (code 2, as Click's usage errors)."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(EXIT_USAGE)
