"""`sandbox render` and `sandbox inject`: the meshed Compose project, without starting it.

`render` writes what `sandbox up --runtime compose` runs (docker-compose.yaml, prometheus.yml);
`inject` prints the meshed Compose file, as `istioctl kube-inject` prints a meshed manifest, for
people who run `docker compose` themselves.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from sandbox.commands import EXIT_FINDINGS, usage_error

if TYPE_CHECKING:
    from sandbox.runtime.compose_render import Rendered
    from sandbox.runtime.project import Project

TRACING = ("jaeger", "console", "off")
ComposeOption = Annotated[
    Path | None,
    typer.Option("--file", "-f", help="Compose file of the mesh (default: compose.yaml here or in a parent)."),
]
IstioOption = Annotated[
    Path | None, typer.Option("--istio", help="Directory of Istio YAML (default: istio/ beside the compose file).")
]
ImageOption = Annotated[
    str, typer.Option("--image", help="The sandbox image the control plane, proxies and console run.")
]
TracingOption = Annotated[
    str, typer.Option("--tracing", help="Where sidecars send spans: jaeger, console (its collector) or off.")
]


def register(app: typer.Typer) -> None:
    app.command()(render)
    app.command()(inject)


def render(
    compose_file: ComposeOption = None,
    istio: IstioOption = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Directory to write (default: .sandbox/compose beside the compose file)."),
    ] = None,
    image: ImageOption = "sandbox:latest",
    tracing: TracingOption = "jaeger",
) -> None:
    """Write the Compose project `sandbox up --runtime compose` would run, and start nothing.

    Exit status: 0 written, 1 the inputs have errors (listed on stderr), 2 unusable arguments.
    """
    from sandbox.runtime.compose_project import write_rendered

    project, rendered = _render(compose_file, istio, output, image, tracing)
    directory = output or _default_dir(project)
    write_rendered(rendered, directory)
    for name in sorted(rendered.files):
        typer.echo(f"wrote {directory / name}")
    typer.echo(
        f"\nRun it with:\n  docker compose -p {project.name} --project-directory {project.directory} "
        f"-f {directory / 'docker-compose.yaml'} up -d\n(`sandbox up --runtime compose` also builds the image)"
    )


def inject(
    compose_file: ComposeOption = None,
    istio: IstioOption = None,
    image: ImageOption = "sandbox:latest",
    tracing: TracingOption = "jaeger",
) -> None:
    """Print the meshed Compose file (like `istioctl kube-inject`): each workload with its sidecar.

    Paths in it are relative to the compose file's directory, so save it there. prometheus.yml,
    which it mounts, is written to .sandbox/compose/ beside the compose file.
    Exit status: 0 printed, 1 the inputs have errors (listed on stderr), 2 unusable arguments.
    """
    from sandbox.runtime.compose_project import write_rendered

    project, rendered = _render(compose_file, istio, None, image, tracing)
    directory = _default_dir(project)
    write_rendered(rendered, directory)
    typer.echo(rendered.compose_text, nl=False)


def _default_dir(project: Project) -> Path:
    from sandbox.runtime.compose_project import compose_dir

    return compose_dir(project)


def _render(
    compose_file: Path | None, istio: Path | None, output: Path | None, image: str, tracing: str
) -> tuple[Project, Rendered]:
    from dataclasses import replace

    from sandbox.mesh.topology import load_compose
    from sandbox.runtime.base import RuntimeFailure
    from sandbox.runtime.compose_project import console_available, render_project, upstream_images
    from sandbox.runtime.project import ProjectNotFound, find_project

    if tracing not in TRACING:
        raise usage_error(f"--tracing must be one of {', '.join(TRACING)}, not {tracing!r}")
    if output is not None and output.exists() and not output.is_dir():
        raise usage_error(f"--output {output} is not a directory")
    try:
        project = find_project(compose_file, istio)
    except ProjectNotFound as exc:
        raise usage_error(str(exc)) from None
    topology = load_compose(project.compose_file)
    errors = [d for d in topology.diagnostics if d.severity == "error"]
    for diagnostic in errors:
        typer.echo(diagnostic.format(), err=True)
    if errors:
        raise typer.Exit(EXIT_FINDINGS)
    if tracing == "console" and not console_available():
        raise usage_error("--tracing console needs `sandbox console`, which this version does not have")
    chosen = None if tracing == "off" else tracing
    images = replace(upstream_images(), sandbox=image)
    try:
        from sandbox.runtime import consoletoken

        console = console_available()
        rendered = render_project(
            project,
            topology,
            output_dir=output,
            images=images,
            tracing=chosen,
            console=console,
            console_token=consoletoken.ensure(project) if console else None,
        )
    except RuntimeFailure as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_FINDINGS) from None
    return project, rendered
