"""`sandbox console`: the web console (Kiali's pages and JSON API) and, without --tracing, the
built-in trace collector the sidecars send Zipkin spans to. `sandbox dashboard`: open a running
mesh's console, Prometheus or tracing UI in the browser, as `istioctl dashboard kiali` does."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import typer

from sandbox.commands import usage_error
from sandbox.console.store import DEFAULT_MAX_SPANS, DEFAULT_MAX_TRACES


def _base_url(option: str, value: str | None) -> str | None:
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise usage_error(f"{option} must be an http(s) base URL like http://127.0.0.1:9090, not {value!r}")
    return value.rstrip("/")


DASHBOARDS = {
    "console": "console",
    "kiali": "console",
    "prometheus": "prometheus",
    "tracing": "tracing",
    "jaeger": "tracing",
}
CONSOLE_HOME = "/console/overview"


def register(app: typer.Typer) -> None:
    app.command()(dashboard)

    @app.command()
    def console(
        port: Annotated[int, typer.Option(help="Port of the console (Kiali's is 20001).")] = 20001,
        bind: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
        control_plane: Annotated[
            str | None,
            typer.Option("--control-plane", help="Control plane base URL (default: the mesh record's, else :15010)."),
        ] = None,
        prometheus: Annotated[
            str | None, typer.Option(help="Prometheus base URL (default: the mesh record's, if any).")
        ] = None,
        tracing: Annotated[
            str | None,
            typer.Option(help="An external Jaeger query base URL; without it the console collects spans itself."),
        ] = None,
        zipkin_port: Annotated[
            int | None,
            typer.Option(help="Also take Zipkin spans on this port (Zipkin's is 9411); built-in collector only."),
        ] = None,
        compose_file: Annotated[
            Path | None,
            typer.Option("--file", "-f", help="Compose file of the mesh (default: found from the current directory)."),
        ] = None,
        istio: Annotated[
            Path | None,
            typer.Option(help="The Istio directory the console edits (default: the running mesh's, else istio/)."),
        ] = None,
        max_traces: Annotated[
            int, typer.Option(help="Built-in collector: traces kept (oldest evicted).")
        ] = DEFAULT_MAX_TRACES,
        max_spans: Annotated[
            int, typer.Option(help="Built-in collector: spans kept in all (about 1 KB each).")
        ] = DEFAULT_MAX_SPANS,
    ) -> None:
        """Serve the console: Kiali's pages (overview, traffic graph, applications, workloads, services,
        Istio config with its editor and the service wizards, security, proxy status) and its JSON API
        (/api/namespaces/...), /api/status, and Jaeger's query API on a built-in Zipkin collector
        (POST /api/v2/spans).

        Changing the mesh needs the console's token: $SANDBOX_CONSOLE_TOKEN (sandbox up sets it), else
        the project's .sandbox/state/console-token, else one made now and printed with the URL."""
        import os

        from sandbox.console.app import ConsoleSettings, run
        from sandbox.runtime import consoletoken
        from sandbox.runtime.project import ProjectNotFound, find_project

        if not 0 <= port <= 65535:
            raise usage_error(f"--port must be between 0 and 65535, not {port}")
        if zipkin_port is not None and not 0 <= zipkin_port <= 65535:
            raise usage_error(f"--zipkin-port must be between 0 and 65535, not {zipkin_port}")
        if zipkin_port is not None and tracing is not None:
            raise usage_error("--zipkin-port is for the built-in collector; with --tracing, sidecars send to Jaeger")
        if max_traces < 1 or max_spans < 1:
            raise usage_error("--max-traces and --max-spans must be at least 1")
        try:
            project = find_project(compose_file, istio)
        except ProjectNotFound as exc:
            if compose_file is not None:
                raise usage_error(str(exc)) from None
            project = None  # no mesh here: the console still serves its collector and the control plane's view
        token = os.environ.pop(consoletoken.TOKEN_ENV, None) or (consoletoken.read(project) if project else None)
        if token is None:  # started by hand, no mesh of ours: a token for this run, shown to whoever started it
            import secrets

            token = secrets.token_urlsafe(24)
            url = consoletoken.console_url(f"http://{'127.0.0.1' if bind in ('0.0.0.0', '') else bind}:{port}", token)
            typer.echo(f"console: open {url} to change the mesh from the browser", err=True)
        settings = ConsoleSettings(
            port=port,
            bind=bind,
            control_plane=_base_url("--control-plane", control_plane),
            prometheus=_base_url("--prometheus", prometheus),
            tracing=_base_url("--tracing", tracing),
            zipkin_port=zipkin_port,
            project=project,
            max_traces=max_traces,
            max_spans=max_spans,
            istio_dir=istio.resolve() if istio else None,
            token=token,
        )
        raise typer.Exit(run(settings))


def dashboard(
    which: Annotated[str, typer.Argument(help="console (or kiali), prometheus, or tracing (or jaeger).")] = "console",
    compose_file: Annotated[
        Path | None,
        typer.Option("--file", "-f", help="Compose file of the mesh (default: found from the current directory)."),
    ] = None,
    no_open: Annotated[bool, typer.Option("--no-open", help="Print the URL only; open no browser.")] = False,
) -> None:
    """Open a running mesh's console, Prometheus or tracing UI in the browser (like `istioctl dashboard
    kiali`) and print its URL. The browser is Python's choice: $BROWSER when set, else the desktop's."""
    import webbrowser

    from sandbox.runtime.project import ProjectNotFound, find_project, read_record

    key = DASHBOARDS.get(which)
    if key is None:
        raise usage_error(f"the dashboard must be one of console, prometheus, tracing, not {which!r}")
    try:
        project = find_project(compose_file)
    except ProjectNotFound as exc:
        raise usage_error(str(exc)) from None
    record = read_record(project)
    if record is None:
        typer.echo(f"error: no mesh is running for {project.compose_file} (run sandbox up)", err=True)
        raise typer.Exit(1)
    base = record.urls.get(key)
    if not base:
        reason = {"prometheus": "Prometheus is not installed", "tracing": "no tracing backend runs"}.get(key, "")
        typer.echo(f"error: this mesh has no {which} URL{': ' + reason if reason else ''}", err=True)
        raise typer.Exit(1)
    if key == "console":
        from sandbox.runtime import consoletoken

        url = consoletoken.console_url(base, consoletoken.read(project), CONSOLE_HOME) or base
    else:
        url = base.rstrip("/")
    typer.echo(url)
    if not no_open and not webbrowser.open(url):
        typer.echo("(no browser found: open the URL yourself)", err=True)
