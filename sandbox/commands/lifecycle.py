"""`sandbox up`, `down`, `status`, `logs`: run the mesh of a compose file, on Docker Compose or as
local processes, and look at it.

The mesh is found as Compose finds its project: `-f FILE`, else compose.yaml from the current
directory upwards; its state lives in `.sandbox/` beside that file (runtime/project.py).
"""

from __future__ import annotations

import signal
import time
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any

import typer

from sandbox.commands import EXIT_FINDINGS, EXIT_OK, usage_error
from sandbox.runtime.start import engine_answers, runtime_named

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from sandbox.runtime.base import ComponentFailed, ProgressEvent, StatusReport
    from sandbox.runtime.project import MeshRecord, Project

FileOption = Annotated[
    Path | None,
    typer.Option("--file", "-f", help="Compose file of the mesh (default: compose.yaml here or in a parent)."),
]
EXIT_INTERRUPTED = 130


def register(app: typer.Typer) -> None:
    app.command()(up)
    app.command()(down)
    app.command()(status)
    app.command()(logs)

    @app.command("local-daemon", hidden=True)
    def local_daemon(
        run_dir: Annotated[Path | None, typer.Argument(help="The run directory with plan.json.")] = None,
        warm: Annotated[bool, typer.Option("--warm", help="Preload now; read the run directory from stdin.")] = False,
        serve: Annotated[
            str | None, typer.Option("--serve", help="Fork a supervisor per request on this Unix socket.")
        ] = None,
    ) -> None:
        """The local runtime's supervisor (started by `up`), or a server of supervisors (the pytest fixture's)."""
        from sandbox.runtime import localdaemon

        if serve is not None:
            raise typer.Exit(localdaemon.serve(serve, ForkedEntry(app)))
        if (run_dir is None) != warm:
            raise usage_error("pass RUN_DIR or --warm")

        raise typer.Exit(localdaemon.main(run_dir, ForkedEntry(app)))


class ForkedEntry:
    """How a component forked from the daemon's preloaded code runs its command line: through the
    click command typer makes of the app, built once in `warm()` during the preload. Typer otherwise
    rebuilds it on every call (~0.1 s of CPU for sandbox's commands) and imports its parameter
    adapters, pydantic among them, on the first parse (~0.2 s): measured in each forked child, that
    was a third of a sidecar's start."""

    def __init__(self, app: typer.Typer) -> None:
        self.app = app
        self.command: Any = None

    def warm(self) -> None:
        import contextlib

        import typer.main

        command = typer.main.get_command(self.app)
        with contextlib.suppress(Exception):  # only warms the parser: nothing runs
            command.make_context("sandbox", [], resilient_parsing=True)
        self.command = command

    def __call__(self, args: list[str]) -> None:
        if self.command is None:
            self.app(args=args, prog_name="sandbox")
        else:
            self.command(args=args, prog_name="sandbox")


def _project(file: Path | None, istio: Path | None = None) -> Project:
    from sandbox.runtime.project import ProjectNotFound, find_project

    try:
        return find_project(file, istio)
    except ProjectNotFound as exc:
        raise usage_error(str(exc)) from None


class ProgressPrinter:
    """Prints each component's progress as it comes (line by line, so CI logs read well too)."""

    def __init__(self) -> None:
        self.width = 24

    def report(self, event: ProgressEvent) -> None:
        detail = f"  {event.detail}" if event.detail else ""
        typer.echo(f"  {event.component:<{self.width}} {event.phase.value:<9}{detail}")

    def warn(self, message: str) -> None:
        typer.echo(f"warning: {message}", err=True)


def _print_failure(failure: ComponentFailed) -> None:
    typer.echo(f"error: {failure}", err=True)
    if failure.log_tail:
        where = f" ({failure.log_file})" if failure.log_file else ""
        typer.echo(f"--- last {len(failure.log_tail)} lines of its log{where} ---", err=True)
        for line in failure.log_tail:
            typer.echo(f"  {line}", err=True)
    typer.echo("Everything that was started has been stopped.", err=True)


def _url_table(record: MeshRecord, project: Project) -> str:
    from sandbox.runtime.project import URL_KEYS

    urls = user_urls(record.urls, project)
    width = max(len(k) for k in URL_KEYS)
    rows = [f"  {key:<{width}}  {urls.get(key) or 'off'}" for key in URL_KEYS]
    return "\n".join(rows)


def user_urls(urls: Mapping[str, str | None], project: Project) -> dict[str, str | None]:
    """The URLs as a person opens them: the console's page with the mesh's token (which lets the
    browser change the mesh through the console)."""
    from sandbox.runtime import consoletoken

    out = dict(urls)
    out["console"] = consoletoken.console_url(urls.get("console"), consoletoken.read(project))
    return out


def up(
    file: FileOption = None,
    istio: Annotated[
        Path | None, typer.Option(help="Directory of Istio YAML (default: istio/ beside the file).")
    ] = None,
    runtime: Annotated[
        str, typer.Option(help="auto (compose when a Docker engine answers), compose or local.")
    ] = "auto",
    detach: Annotated[bool, typer.Option("--detach", "-d", help="Return once the mesh is ready.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds for every component to become ready.")] = 60.0,
) -> None:
    """Start the mesh: control plane, a sidecar beside every workload, the ingress gateway,
    Prometheus, tracing and the console. Nothing starts if the input has errors.

    Without --detach it stays in the foreground and Ctrl-C stops everything.
    Exit status: 0 ready (or stopped cleanly), 1 a problem in the input or a component that
    did not become ready, 2 unusable arguments.
    """
    from sandbox.runtime.base import ComponentFailed, RuntimeFailure, UpOptions
    from sandbox.runtime.preflight import check_runtime
    from sandbox.runtime.start import prepare, running

    for problem in check_runtime(runtime):
        raise usage_error(f"--runtime: {problem.message}")
    if timeout <= 0:
        raise usage_error("--timeout must be positive")
    project = _project(file, istio)
    found = running(project)
    if found is not None:
        typer.echo(
            f"error: the mesh of {project.compose_file} is already running ({found[0].runtime} runtime): "
            "see `sandbox status`, or stop it with `sandbox down`",
            err=True,
        )
        raise typer.Exit(EXIT_FINDINGS)
    launch = prepare(project, runtime)
    chosen, engine = launch.runtime, launch.engine
    for diagnostic in launch.warnings:
        typer.echo(diagnostic.format(), err=True)
    if launch.problems:
        launch.cancel()
        for diagnostic in launch.problems:
            typer.echo(diagnostic.format(), err=True)
        typer.echo(f"error: {len(launch.problems)} problem(s) found; nothing was started", err=True)
        raise typer.Exit(EXIT_FINDINGS)

    typer.echo(f"Starting the mesh of {project.compose_file} ({chosen} runtime)")
    began = time.monotonic()
    record: MeshRecord | None = None
    # One handler from here on, no moment where Ctrl-C skips the stop; `restore` puts back the
    # caller's handlers (run in-process, as tests and the pytest plugin do, later children inherit them).
    restore = _signals_as_interrupts()
    try:
        record = launch.up(UpOptions(detach=detach, timeout=timeout), ProgressPrinter())
        typer.echo(f"\nMesh '{record.project}' is ready ({chosen} runtime, {time.monotonic() - began:.1f} s):")
        typer.echo(_url_table(record, project))
        if detach:
            typer.echo("\nStop it with: sandbox down" + (f" -f {file}" if file else ""))
            raise typer.Exit(EXIT_OK)
        typer.echo("\nPress Ctrl-C to stop the mesh (or run `sandbox up --detach` to keep it running).")
        while engine.is_running(project, record):
            time.sleep(0.5)
        typer.echo("The mesh was stopped from elsewhere.")
    except ComponentFailed as failure:
        _print_failure(failure)
        raise typer.Exit(EXIT_FINDINGS) from None
    except RuntimeFailure as failure:
        typer.echo(f"error: {failure}", err=True)
        raise typer.Exit(EXIT_FINDINGS) from None
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the stop short
        if record is None:
            typer.echo("\nInterrupted; stopping what was started...", err=True)
            engine.down(project, None)
            raise typer.Exit(EXIT_INTERRUPTED) from None
        typer.echo("\nStopping the mesh...")
        for line in engine.down(project, record):
            typer.echo(f"  {line}")
        typer.echo("Stopped.")
    finally:
        restore()
        launch.cancel()  # the warm supervisor, unused if up failed before handing it the plan


def _signals_as_interrupts() -> Callable[[], None]:
    """SIGTERM (and SIGHUP) act as Ctrl-C while `up` runs, so each stops the mesh cleanly."""

    def interrupt(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = {s: signal.signal(s, interrupt) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}

    def restore() -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    return restore


def down(
    file: FileOption = None,
    volumes: Annotated[bool, typer.Option("--volumes", "-v", help="Also remove Prometheus data and logs.")] = False,
) -> None:
    """Stop the mesh and remove everything it created (containers and networks, or processes).

    Exit status: 0 stopped (or nothing was running), 1 something could not be stopped.
    """
    from sandbox.runtime.base import RuntimeFailure
    from sandbox.runtime.project import read_record

    project = _project(file)
    record = read_record(project)
    if record is not None:
        names = [record.runtime]
    else:  # no record: a failed or interrupted up may have left either runtime's parts behind
        names = ["local", *(["compose"] if (project.state_dir / "compose").is_dir() and engine_answers() else [])]
    lines = []
    try:
        for name in names:
            lines += runtime_named(name).down(project, record, volumes=volumes)
    except RuntimeFailure as failure:
        typer.echo(f"error: {failure}", err=True)
        raise typer.Exit(EXIT_FINDINGS) from None
    if not lines and record is None:
        typer.echo(f"No mesh is running for {project.compose_file}.")
    for line in lines:
        typer.echo(line)


def status(
    file: FileOption = None,
    output: Annotated[str, typer.Option("--output", "-o", help="text or json.")] = "text",
) -> None:
    """Components, workloads with their replicas' readiness and sidecar sync state, and URLs.

    Exit status: 0 running with every workload ready, 1 not running or not all ready, 2 unusable
    arguments. `--output json` keys: runtime, project, running, urls {ingress, console, prometheus,
    tracing}, components, workloads [{name, app, version, namespace, ready, sync, address, replicas
    [{node, ready, sync, address}]}]. `address` is where a client outside the mesh (a workload
    without a sidecar, a test) reaches the workload's inbound listener; `sync` is NONE without a sidecar.
    """
    import json

    from sandbox.runtime.base import StatusReport
    from sandbox.runtime.project import read_record

    if output not in ("text", "json"):
        raise usage_error(f"--output must be text or json, not {output!r}")
    project = _project(file)
    record = read_record(project)
    if record is None:
        report = StatusReport.not_running(project)
    else:
        report = runtime_named(record.runtime).status(project, record)
        report = replace(report, urls=user_urls(report.urls, project))
    if output == "json":
        typer.echo(json.dumps(report.to_data(), indent=2))
    else:
        typer.echo(render_status(report, project))
    healthy = report.running and all(w.ready for w in report.workloads)
    raise typer.Exit(EXIT_OK if healthy else EXIT_FINDINGS)


def render_status(report: StatusReport, project: Project) -> str:
    from sandbox.runtime.base import NO_SIDECAR

    if not report.running and not report.components:
        return f"No mesh is running for {project.compose_file} (start one with `sandbox up`)."
    state = "running" if report.running else "NOT RUNNING (its supervisor is gone; `sandbox down` cleans up)"
    lines = [f"Mesh '{report.project}' ({report.runtime} runtime): {state}"]
    if report.control_plane:
        lines.append(f"Control plane: {report.control_plane}")
    lines.append("")
    lines.append(
        _table(
            ("COMPONENT", "KIND", "STATE", "RESTARTS", "DETAIL"),
            [(c.name, c.kind.value, c.phase.value, str(c.restarts), c.detail) for c in report.components],
        )
    )
    lines.append("")
    rows = []
    for w in report.workloads:
        ready = sum(r.ready for r in w.replicas)
        address = ", ".join(r.address for r in w.replicas if r.address) or "-"
        sync = "no sidecar" if w.sync == NO_SIDECAR else w.sync
        rows.append((w.name, w.app, w.version or "-", w.namespace, f"{ready}/{len(w.replicas)}", sync, address))
    lines.append(_table(("WORKLOAD", "APP", "VERSION", "NAMESPACE", "READY", "SYNC", "ADDRESS"), rows))
    lines.append("")
    lines.append("URLS")
    width = max(len(k) for k in report.urls)
    lines += [f"  {key:<{width}}  {url or 'off'}" for key, url in report.urls.items()]
    return "\n".join(lines)


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in (header, *rows)
    )


def logs(
    workload: Annotated[str | None, typer.Argument(help="A workload (or component); default: every one.")] = None,
    file: FileOption = None,
    proxy: Annotated[bool, typer.Option("--proxy", help="The workload's sidecar(s) instead of its app.")] = False,
    follow: Annotated[bool, typer.Option("--follow", help="Keep printing new lines until Ctrl-C.")] = False,
    tail: Annotated[int | None, typer.Option("--tail", help="Only the last N lines of each.")] = None,
) -> None:
    """Print the logs of a workload's app (or, with --proxy, its sidecar's access log), of a
    component (controlplane, istio-ingressgateway, istio-egressgateway, prometheus, console), or of everything.

    Exit status: 0, 1 nothing is running, 2 an unknown workload or unusable arguments.
    """
    from sandbox.runtime.base import RuntimeFailure
    from sandbox.runtime.project import read_record

    if tail is not None and tail < 0:
        raise usage_error("--tail must be 0 or more")
    project = _project(file)
    record = read_record(project)
    if record is None:
        typer.echo(f"error: no mesh is running for {project.compose_file}", err=True)
        raise typer.Exit(EXIT_FINDINGS)
    engine = runtime_named(record.runtime)
    try:
        for line in engine.logs(project, record, workload, proxy=proxy, follow=follow, tail=tail):
            typer.echo(line)
    except RuntimeFailure as failure:
        raise usage_error(str(failure)) from None
    except KeyboardInterrupt:
        raise typer.Exit(EXIT_OK) from None
    except BrokenPipeError:  # `sandbox logs | head`
        raise typer.Exit(EXIT_OK) from None
