"""`sandbox load`: fortio's `load` for the mesh's tasks (circuit breaking, mirroring, shifting)."""

from __future__ import annotations

from typing import Annotated

import typer

from sandbox.commands import EXIT_FINDINGS, EXIT_OK, usage_error


def register(app: typer.Typer) -> None:
    app.command("load")(load)


def load(
    url: Annotated[str, typer.Argument(help="http://host[:port]/path to call (GET).")],
    connections: Annotated[int, typer.Option("-c", "--connections", help="Concurrent connections.")] = 1,
    qps: Annotated[float, typer.Option("--qps", help="Total calls per second; 0 = as fast as possible.")] = 0.0,
    requests: Annotated[int | None, typer.Option("-n", "--requests", help="Exactly this many calls.")] = None,
    duration: Annotated[
        str | None, typer.Option("-t", "--duration", help="Run this long (5s, 1m, 500ms); default 5s.")
    ] = None,
    header: Annotated[list[str] | None, typer.Option("-H", "--header", help="'Name: value' (repeatable).")] = None,
    proxy: Annotated[
        str | None, typer.Option("--proxy", help="Send through this HTTP proxy (e.g. a sidecar's outbound).")
    ] = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds per call, connect included.")] = 10.0,
    output: Annotated[str, typer.Option("--output", "-o", help="text or json.")] = "text",
) -> None:
    """Send HTTP load and print fortio's summary: latency histogram, percentiles, count per code.

    Bounded: at most 1,000,000 calls, 600 s and 1,000 connections. Goes straight to URL unless
    --proxy is given (HTTP_PROXY is not read). Exit status: 0 done, 1 no call got an HTTP answer,
    2 unusable arguments.
    """
    import asyncio
    import json

    from sandbox.load import LoadPlan, PlanError, parse_duration, parse_header
    from sandbox.load.report import starting_line, text, to_json
    from sandbox.load.runner import run

    if output not in ("text", "json"):
        raise usage_error(f"--output must be text or json, not {output!r}")
    try:
        plan = LoadPlan(
            url,
            connections=connections,
            qps=qps,
            requests=requests,
            duration=parse_duration(duration) if duration is not None else None,
            headers=tuple(parse_header(h) for h in header or ()),
            proxy=proxy,
            timeout=timeout,
        )
    except PlanError as exc:
        raise usage_error(str(exc)) from None
    if output == "text":
        typer.echo(starting_line(plan))
    result = asyncio.run(run(plan))
    typer.echo(json.dumps(to_json(result), indent=2) if output == "json" else text(result))
    answered = sum(n for code, n in result.codes.items() if code > 0)
    raise typer.Exit(EXIT_OK if answered or not result.calls else EXIT_FINDINGS)
