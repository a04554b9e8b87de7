"""`sandbox export kubernetes` and `sandbox import kubernetes`: the bridge to a real cluster.

Reports (file:line, the object or Compose service, what was left out or changed) go to stderr in
`sandbox analyze`'s format; nothing is written when the input has an error, and no existing file is
overwritten without --force.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from sandbox.commands import EXIT_FINDINGS, usage_error

if TYPE_CHECKING:
    from sandbox.mesh.diagnostics import Diagnostic

export_app = typer.Typer(help="Write the mesh for another platform.", no_args_is_help=True)
import_app = typer.Typer(help="Read a mesh from another platform's files.", no_args_is_help=True)
ForceOption = Annotated[bool, typer.Option("--force", help="Overwrite files that exist.")]


def register(app: typer.Typer) -> None:
    app.add_typer(export_app, name="export")
    app.add_typer(import_app, name="import")


@export_app.command("kubernetes")
def export_kubernetes(
    output: Annotated[Path, typer.Option("--output", "-o", help="Directory to write the manifests into.")],
    compose_file: Annotated[
        Path | None,
        typer.Option("--file", "-f", help="Compose file of the mesh (default: compose.yaml here or in a parent)."),
    ] = None,
    istio: Annotated[
        Path | None, typer.Option("--istio", help="Directory of Istio YAML (default: istio/ beside the compose file).")
    ] = None,
    force: ForceOption = False,
) -> None:
    """Write the mesh as Kubernetes manifests: Deployments, Services, ServiceAccounts, Namespaces
    labelled for sidecar injection, the Istio YAML as written, and a kustomization.yaml
    (`kubectl apply -k DIR`).

    Exit status: 0 written, 1 the inputs have errors (listed on stderr), 2 unusable arguments.
    """
    from sandbox.kube.export import export_mesh
    from sandbox.kube.objects import LOCAL_BUILD
    from sandbox.mesh.loader import collect_files
    from sandbox.runtime.project import ProjectNotFound, find_project

    if output.exists() and not output.is_dir():
        raise usage_error(f"--output {output} is not a directory")
    if istio is not None and not istio.is_dir():
        raise usage_error(f"--istio {istio} is not a directory")
    try:
        project = find_project(compose_file, istio)
    except ProjectNotFound as exc:
        raise usage_error(str(exc)) from None
    sources = []
    istio_files = collect_files([project.istio_dir]) if project.istio_dir.is_dir() else []
    for path in istio_files:
        sources.append((path.relative_to(project.istio_dir).as_posix(), _shown(path), _read(path)))
    result = export_mesh(_read(project.compose_file), _shown(project.compose_file), sources, project.name)
    _report(result.diagnostics)
    if result.errors:
        raise typer.Exit(EXIT_FINDINGS)
    _refuse_overwrite((output / name for name in result.files), force)
    for name, text in result.files.items():
        target = output / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {target}")
    built = [d for d in result.diagnostics if d.code == LOCAL_BUILD]
    if built:
        typer.echo(
            "\nImages Compose builds from a local Dockerfile (push them, then set the image in deployments.yaml):"
        )
        for diagnostic in built:
            typer.echo(f"  {diagnostic.message}")
    typer.echo(f"\nApply with (Istio installed in the cluster):\n  kubectl apply -k {output}")


@import_app.command("kubernetes")
def import_kubernetes(
    paths: Annotated[
        list[str],
        typer.Argument(help="Manifest files or directories (e.g. `kubectl kustomize` output); '-' for stdin."),
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Compose file to write; the Istio resources go to istio/ beside it.")
    ] = Path("compose.yaml"),
    force: ForceOption = False,
) -> None:
    """Read Deployments, StatefulSets, Services, ServiceAccounts and Namespaces into a Compose file
    with x-sandbox keys, and the Istio resources among them into istio/. What cannot be translated
    (volumes, probes, init containers, resources, ...) is reported per object on stderr and left out.

    Exit status: 0 written, 1 the manifests have errors (listed on stderr), 2 unusable arguments.
    """
    from sandbox.kube.importer import import_manifests
    from sandbox.mesh.loader import collect_files

    for target in paths:
        if target != "-" and not Path(target).exists():
            raise usage_error(f"no such file or directory: {target}")
    files = collect_files([p for p in paths if p != "-"])
    sources: list[tuple[str, str | bytes]] = [(str(path), path.read_bytes()) for path in files]
    if "-" in paths:
        sources.append(("<stdin>", sys.stdin.buffer.read()))
    if not sources:
        raise usage_error(f"no YAML files in {', '.join(paths)}")
    result = import_manifests(sources, str(output))
    _report(result.diagnostics)
    if result.errors:
        raise typer.Exit(EXIT_FINDINGS)
    istio_dir = output.parent / "istio"
    _refuse_overwrite([output, *(istio_dir / name for name in result.istio_files)], force)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(result.compose, encoding="utf-8")
    typer.echo(f"wrote {output}")
    for name, text in result.istio_files.items():
        istio_dir.mkdir(exist_ok=True)
        (istio_dir / name).write_text(text, encoding="utf-8")
        typer.echo(f"wrote {istio_dir / name}")
    typer.echo(f"\nNext:\n  sandbox analyze {istio_dir} --compose {output}\n  sandbox up -f {output} --runtime compose")


def _read(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except OSError as exc:
        typer.echo(f"error: cannot read {path}: {exc.strerror}", err=True)
    except UnicodeDecodeError as exc:
        typer.echo(f"error: {path} is not UTF-8 text (byte {exc.start})", err=True)
    raise typer.Exit(EXIT_FINDINGS)


def _shown(path: Path) -> str:
    """A path as the user would write it: relative to the current directory when it is under it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _report(diagnostics: Iterable[Diagnostic]) -> None:
    for diagnostic in sorted(diagnostics, key=lambda d: d.sort_key()):
        typer.echo(diagnostic.format(), err=True)


def _refuse_overwrite(targets: Iterable[Path], force: bool) -> None:
    existing = [str(path) for path in targets if path.exists()]
    if existing and not force:
        raise usage_error(f"would overwrite {', '.join(existing)} (use --force)")
