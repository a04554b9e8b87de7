"""`sandbox console`: the web console (overview, JSON API) and, without --tracing, the built-in
trace collector the sidecars send Zipkin spans to."""

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


def register(app: typer.Typer) -> None:
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
        max_traces: Annotated[
            int, typer.Option(help="Built-in collector: traces kept (oldest evicted).")
        ] = DEFAULT_MAX_TRACES,
        max_spans: Annotated[
            int, typer.Option(help="Built-in collector: spans kept in all (about 1 KB each).")
        ] = DEFAULT_MAX_SPANS,
    ) -> None:
        """Serve the console: an overview of workloads, proxy sync state and recent traces, a JSON API
        (/api/status), and Jaeger's query API on a built-in Zipkin collector (POST /api/v2/spans)."""
        from sandbox.console.app import ConsoleSettings, run
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
            project = find_project(compose_file)
        except ProjectNotFound as exc:
            if compose_file is not None:
                raise usage_error(str(exc)) from None
            project = None  # no mesh here: the console still serves its collector and the control plane's view
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
        )
        raise typer.Exit(run(settings))
