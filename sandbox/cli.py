"""The `sandbox` command line: thin typer commands over library functions."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from sandbox import __version__
from sandbox.commands import EXIT_FINDINGS, EXIT_OK, usage_error

app = typer.Typer(
    name="sandbox",
    help="A real Istio-compatible service mesh on a laptop, without Kubernetes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"sandbox {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """A real Istio-compatible service mesh on a laptop, without Kubernetes."""


_usage_error = usage_error


@app.command()
def analyze(
    paths: Annotated[
        list[str] | None, typer.Argument(help="Files or directories of Istio YAML; '-' for stdin.")
    ] = None,
    compose: Annotated[
        Path | None, typer.Option("--compose", "-c", help="Compose file with the workloads (app/version labels).")
    ] = None,
    output: Annotated[str, typer.Option("--output", "-o", help="text, json or sarif.")] = "text",
    ignore: Annotated[list[str] | None, typer.Option("--ignore", help="A code to leave out (repeatable).")] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 on warnings too.")] = False,
) -> None:
    """Validate Istio YAML offline, like `istioctl analyze` and Kiali's validations together.

    Exit status: 0 clean, 1 errors (or warnings with --strict), 2 unusable arguments.
    """
    from sandbox.mesh.analysis import analyze as run_checks
    from sandbox.mesh.loader import load_paths
    from sandbox.mesh.state import MeshState
    from sandbox.mesh.topology import empty_topology, load_compose
    from sandbox.output import FORMATS, render

    if output not in FORMATS:
        raise _usage_error(f"--output must be one of {', '.join(FORMATS)}, not {output!r}")
    targets = paths or ["."]
    for target in targets:
        if target != "-" and not Path(target).exists():
            raise _usage_error(f"no such file or directory: {target}")
    if compose is not None and not compose.is_file():
        raise _usage_error(f"no such compose file: {compose}")
    loaded = load_paths(targets)
    topology = load_compose(compose) if compose else empty_topology()
    state = MeshState(loaded.resources, topology)
    ignored = {code.strip().upper() for code in ignore or ()}
    found = [*loaded.diagnostics, *topology.diagnostics, *run_checks(state, ignore=ignored)]
    found = sorted((d for d in found if d.code not in ignored), key=lambda d: d.sort_key())
    text = render(found, output)
    if text:
        typer.echo(text)
    failing = {"error", "warning"} if strict else {"error"}
    raise typer.Exit(EXIT_FINDINGS if any(d.severity in failing for d in found) else EXIT_OK)


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Where to create the project (made if missing).")] = Path("."),
    force: Annotated[bool, typer.Option("--force", help="Write into a non-empty directory.")] = False,
) -> None:
    """Create a small working project: compose.yaml (web calls api v1/v2), istio/ rules, apps/, README.md.

    Exit status: 0 created, 2 the directory is not empty (without --force) or not a directory.
    """
    from sandbox.scaffold import ScaffoldError, create

    try:
        written = create(directory, force=force)
    except ScaffoldError as exc:
        raise _usage_error(str(exc)) from None
    for path in written:
        typer.echo(f"created {path}")
    typer.echo(f"\nNext:\n  sandbox analyze {directory / 'istio'} --compose {directory / 'compose.yaml'}")
    commands = {c.name or getattr(c.callback, "__name__", "") for c in app.registered_commands}
    if "up" in commands:  # the runtime lands in a later issue: only suggest what exists
        typer.echo(f"  cd {directory} && sandbox up    (see {directory / 'README.md'})")


@app.command()
def convert(
    paths: Annotated[list[str], typer.Argument(help="Files or directories of Istio YAML; '-' for stdin.")],
) -> None:
    """Print the files with each legacy v1alpha1 security resource (ServiceRole, ServiceRoleBinding,
    ClusterRbacConfig, RbacConfig, MeshPolicy, Policy) replaced by its modern equivalent.

    Other resources pass through as written, so the output replaces the input. Problems go to stderr.
    Exit status: 0 converted, 1 a file has errors, 2 unusable arguments.
    """
    from sandbox.mesh.legacy.convert import convert_paths

    for target in paths:
        if target != "-" and not Path(target).exists():
            raise _usage_error(f"no such file or directory: {target}")
    result = convert_paths(paths)
    for diagnostic in result.diagnostics:
        typer.echo(diagnostic.format(), err=True)
    if result.text:
        typer.echo(result.text, nl=False)
    raise typer.Exit(EXIT_FINDINGS if result.errors else EXIT_OK)


def _register_groups() -> None:
    """Commands that live in sandbox/commands/ (one line per module)."""
    from sandbox.commands import components

    components.register(app)
    from sandbox.commands import console

    console.register(app)
    from sandbox.commands import lifecycle

    lifecycle.register(app)
    from sandbox.commands import load

    load.register(app)
    from sandbox.commands import render

    render.register(app)
    from sandbox.commands import operator

    operator.register(app)
    from sandbox.commands import demo

    demo.register(app)
    from sandbox.commands import kube

    kube.register(app)


_register_groups()


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:  # pragma: no cover - interactive
        sys.exit(130)
