"""`sandbox demo bookinfo`: the seed talk's demos on Bookinfo (and httpbin), step by step."""

from __future__ import annotations

import signal
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from sandbox.commands import EXIT_FINDINGS, EXIT_OK, usage_error

EXIT_INTERRUPTED = 130


def register(app: typer.Typer) -> None:
    app.command()(demo)


def find_sample(name: str, given: Path | None, beside: Path | None = None) -> Path | None:
    """The sample's compose file: as given, else samples/NAME/ from the current directory, beside
    the other sample, or in the source tree sandbox runs from (a clone with `pip install -e`)."""
    if given is not None:
        return given.resolve() if given.is_file() else None
    candidates = [Path.cwd() / "samples" / name / "compose.yaml"]
    if beside is not None:
        candidates.append(beside.parent.parent / name / "compose.yaml")
    candidates.append(Path(__file__).resolve().parents[2] / "samples" / name / "compose.yaml")
    return next((c.resolve() for c in candidates if c.is_file()), None)


def demo(
    name: Annotated[str, typer.Argument(help="The demo: bookinfo.")],
    file: Annotated[
        Path | None, typer.Option("--file", "-f", help="Bookinfo's compose file (default: samples/bookinfo/).")
    ] = None,
    httpbin: Annotated[
        Path | None, typer.Option("--httpbin", help="httpbin's compose file (default: beside Bookinfo's sample).")
    ] = None,
    auto: Annotated[bool, typer.Option("--auto", help="Play every step unattended and check its outcome.")] = False,
    step: Annotated[int, typer.Option("--step", help="Start at step N (see --list).")] = 1,
    list_steps: Annotated[bool, typer.Option("--list", help="Print the steps and exit.")] = False,
    no_open: Annotated[bool, typer.Option("--no-open", help="Do not open console pages in a browser.")] = False,
    runtime: Annotated[str, typer.Option(help="For a mesh not running yet: auto, compose or local.")] = "auto",
) -> None:
    """Walk through the seed talk's demos: mesh visualization, weighted routing (canary, A/B),
    routing by user, mirroring, fault injection (delay, abort), circuit breaking and outlier
    detection (on httpbin), configuration validation, tracing, traffic stats; mutual TLS and
    authorization where the mesh enforces them.

    Each step says what it does and why, shows and applies its YAML, sends traffic, says what to look
    at and opens the console page that shows it, then waits for Enter. A mesh already running is used
    as it is; one that is not is started (Bookinfo in place, as `sandbox up` would) and stopped at the
    end. Leaving (the end, or Ctrl-C) puts the starting rules back.

    Exit status: 0 done (with --auto: every step as expected), 1 a step not as expected or a mesh
    that cannot start, 2 unusable arguments, 130 interrupted.
    """
    from sandbox.runtime.preflight import check_runtime
    from sandbox.workshop.runner import Options, Walk, listing
    from sandbox.workshop.show import colour_wanted
    from sandbox.workshop.steps import DEMOS

    steps = DEMOS.get(name)
    if steps is None:
        raise usage_error(f"no demo named {name!r} (demos: {', '.join(DEMOS)})")
    if list_steps:
        typer.echo(listing(steps))
        raise typer.Exit(EXIT_OK)
    if not 1 <= step <= len(steps):
        raise usage_error(f"--step must be 1 to {len(steps)}, not {step}")
    for problem in check_runtime(runtime):
        raise usage_error(f"--runtime: {problem.message}")
    bookinfo = find_sample("bookinfo", file)
    if bookinfo is None:
        raise usage_error(f"no Bookinfo compose file {'at ' + str(file) if file else 'found'} (pass -f FILE)")
    samples = {"bookinfo": bookinfo, "httpbin": find_sample("httpbin", httpbin, bookinfo)}
    options = Options(auto=auto, first=step, open_pages=not no_open, colour=colour_wanted(), runtime=runtime)
    previous = signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM leaves as Ctrl-C does: rules back
    try:
        result = Walk(steps, samples, options, say=typer.echo).run()
    finally:
        signal.signal(signal.SIGTERM, previous)
    if result.interrupted:
        raise typer.Exit(EXIT_INTERRUPTED)
    summary = f"{len(result.passed)} step(s) as expected, {len(result.failed)} not, {len(result.skipped)} skipped"
    typer.echo(f"\n{summary}.")
    for number, why in result.failed:
        typer.echo(f"  step {number}: {why}", err=True)
    raise typer.Exit(EXIT_OK if result.ok else EXIT_FINDINGS)


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt
