"""Operator verbs, kubectl/istioctl style: apply, delete, get, proxy-status, proxy-config, wait.

They find the running mesh like Compose finds its project (the compose file given, or the first
one from the current directory upwards) and read its record in `.sandbox/mesh.json`.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from sandbox.commands import EXIT_FINDINGS, EXIT_OK, usage_error

if TYPE_CHECKING:
    from sandbox.operator.mesh import Located

FilenameOption = Annotated[
    list[str] | None, typer.Option("--filename", "-f", help="FILE, DIR of YAML, or - for stdin (repeatable).")
]
ComposeOption = Annotated[
    Path | None, typer.Option("--file", "-f", help="The mesh's compose file (default: found from here upwards).")
]


def register(app: typer.Typer) -> None:
    app.command()(apply)
    app.command()(delete)
    app.command()(get)
    app.command("proxy-status")(proxy_status)
    app.command("proxy-config")(proxy_config)
    app.command()(wait)


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(EXIT_FINDINGS)


def _locate(compose: Path | None, istio: Path | None = None) -> Located:
    from sandbox.operator.mesh import ProjectNotFound, locate

    try:
        return locate(compose, istio)
    except ProjectNotFound as exc:
        raise usage_error(str(exc)) from None


def _control_plane(compose: Path | None) -> str:
    from sandbox.operator.mesh import NoMesh

    try:
        return _locate(compose).running().control_plane
    except NoMesh as exc:
        raise _fail(str(exc)) from None


def _change(
    files: list[str],
    compose: Path | None,
    istio: Path | None,
    deleting: bool,
    keys: list[tuple[str, str, str]] | None = None,
) -> None:
    from sandbox.operator.apply import read_inputs, write
    from sandbox.operator.edit import plan_change

    if not files and not keys:
        raise usage_error("pass -f FILE, -f DIR or -f - (stdin)" + (", or KIND NAME..." if deleting else ""))
    located = _locate(compose, istio)
    inputs, problems = read_inputs(files, sys.stdin.read)
    for problem in problems:
        typer.echo(f"error: {problem}", err=True)
    if problems:
        raise typer.Exit(EXIT_FINDINGS)
    istio_dir = located.istio_dir
    plan = plan_change(istio_dir, located.project.compose_file, inputs, deleting=deleting, keys=keys)
    for d in plan.warnings:
        typer.echo(f"Warning: {d.format()}", err=True)
    if not plan.ok:
        for d in plan.refused:
            typer.echo(d.format(), err=True)
        if any(d.severity != "error" for d in plan.refused):
            typer.echo(
                "note: a route to a subset no DestinationRule defines answers 503 (NR): refused like an error", err=True
            )
        verb = "deleted" if deleting else "applied"
        typer.echo(f"error: nothing {verb}: the change would bring the problems above (nothing was written)", err=True)
        raise typer.Exit(EXIT_FINDINGS)
    write(plan)
    missing = False
    for change in plan.changes:
        if change.action == "not found":
            missing = True
            typer.echo(f"Error from server (NotFound): {change.line}", err=True)
        else:
            typer.echo(change.line)
    if located.record is None and plan.writes:
        typer.echo(f"(no mesh is running: {istio_dir} changed; sandbox up picks it up)", err=True)
    raise typer.Exit(EXIT_FINDINGS if missing else EXIT_OK)


def apply(
    file: FilenameOption = None,
    compose: Annotated[Path | None, typer.Option("--compose", "-c", help="The mesh's compose file.")] = None,
    istio: Annotated[Path | None, typer.Option("--istio", help="The Istio directory (default: the mesh's).")] = None,
) -> None:
    """Create or update Istio resources in the mesh's Istio directory, like kubectl apply.

    Validated first (schema and analyzer, with the whole directory and the Compose workloads): a change
    that brings an error is refused and nothing is written. An existing resource is replaced in the file
    that has it; a new one goes to a file named after the applied one (stdin: <kind>-<namespace>-<name>.yaml).

    Files are written atomically, so a running mesh applies the change at once; with no mesh running
    the files change all the same and the next sandbox up uses them.

    Exit status: 0 applied, 1 refused (or unreadable input), 2 unusable arguments.
    """
    _change(file or [], compose, istio, deleting=False)


def delete(
    names: Annotated[list[str] | None, typer.Argument(help="KIND NAME... (instead of -f), e.g. vs reviews.")] = None,
    file: FilenameOption = None,
    namespace: Annotated[str, typer.Option("--namespace", "-n", help="The namespace of KIND NAME...")] = "default",
    compose: Annotated[Path | None, typer.Option("--compose", "-c", help="The mesh's compose file.")] = None,
    istio: Annotated[Path | None, typer.Option("--istio", help="The Istio directory (default: the mesh's).")] = None,
) -> None:
    """Delete Istio resources from the mesh's Istio directory, like kubectl delete.

    Exactly the named resources go: those the -f files define (by kind, namespace and name), or KIND NAME...
    A file left with no resource is removed. Refused, changing nothing, when what remains would have a new
    error (e.g. a route to a subset whose DestinationRule is deleted). Works with no mesh running too.

    Exit status: 0 deleted, 1 refused or a resource not found, 2 unusable arguments.
    """
    import sandbox.mesh.legacy  # noqa: F401 - registers the legacy kinds (sandbox delete clusterrbacconfig default)
    from sandbox.mesh.resources import lookup_kind

    keys = None
    if names:
        if file:
            raise usage_error("pass -f FILE or KIND NAME..., not both")
        if len(names) < 2:
            raise usage_error("name the resources: KIND NAME... (e.g. sandbox delete vs reviews)")
        info = lookup_kind(names[0])
        if info is None:
            raise usage_error(f'the server doesn\'t have a resource type "{names[0]}"')
        keys = [(info.kind, namespace, name) for name in names[1:]]
    _change(file or [], compose, istio, deleting=True, keys=keys)


def get(
    kind: Annotated[str, typer.Argument(help="vs, dr, gw, se, pa, ra, ap, or a kind's full name/plural.")],
    name: Annotated[str | None, typer.Argument(help="One resource's name.")] = None,
    namespace: Annotated[str | None, typer.Option("--namespace", "-n", help="Only this namespace.")] = None,
    output: Annotated[str, typer.Option("--output", "-o", help="table, yaml or json.")] = "table",
    compose: ComposeOption = None,
) -> None:
    """List the Istio resources in force in the running mesh (the last good version of each file).

    Exit status: 0 found, 1 not found or no mesh running, 2 unusable arguments.
    """
    from sandbox.mesh.resources import lookup_kind
    from sandbox.operator.client import Unreachable, get_json
    from sandbox.operator.views import OUTPUTS, resources_output

    if output not in OUTPUTS:
        raise usage_error(f"--output must be one of {', '.join(OUTPUTS)}, not {output!r}")
    info = lookup_kind(kind)
    if info is None:
        raise usage_error(f'the server doesn\'t have a resource type "{kind}"')
    base = _control_plane(compose)
    params = {"kind": info.kind, "namespace": namespace or "", "name": name or ""}
    try:
        found = get_json(base, "/api/v1/resources", params)["resources"]
    except Unreachable as exc:
        raise _fail(str(exc)) from None
    if not found:
        plural = info.plural or info.kind.lower()
        where = f" in namespace {namespace}" if namespace else ""
        if name:
            raise _fail(f'{plural}.{info.group} "{name}" not found{where}')
        typer.echo(f"No resources found{where}.", err=True)
        raise typer.Exit(EXIT_OK)
    typer.echo(resources_output(found, output, time.time(), str(Path.cwd())))


def proxy_status(compose: ComposeOption = None) -> None:
    """Every sidecar's sync state with the control plane, like istioctl proxy-status.

    SYNCED: it ACKed the current config; STALE: sent, not ACKed yet; NACK: it rejected the current
    config (the reason says why) and keeps serving the previous one; DISCONNECTED: gone.
    """
    from sandbox.operator.client import Unreachable, get_json
    from sandbox.operator.mesh import NoMesh
    from sandbox.operator.views import proxy_status_table

    try:
        record = _locate(compose).running()
    except NoMesh as exc:
        raise _fail(str(exc)) from None
    try:
        proxies = get_json(record.control_plane, "/debug/syncz")
    except Unreachable as exc:
        raise _fail(str(exc)) from None
    expected = [(p.node, p.workload, p.namespace) for p in record.proxies]
    if not proxies and not expected:
        typer.echo("no sidecar has connected to the control plane", err=True)
        raise typer.Exit(EXIT_OK)
    typer.echo(proxy_status_table(proxies, expected))


def proxy_config(
    first: Annotated[str, typer.Argument(help="WORKLOAD, or a section followed by WORKLOAD (istioctl order).")],
    second: Annotated[
        str | None, typer.Argument(help="all, routes, clusters, endpoints, listeners, authz, secrets.")
    ] = None,
    compose: Annotated[
        Path | None, typer.Option("--compose", "-c", help="Compile offline from this compose file (with --istio).")
    ] = None,
    istio: Annotated[Path | None, typer.Option("--istio", help="Directory (or file) of Istio YAML, offline.")] = None,
    file: ComposeOption = None,
    output: Annotated[str, typer.Option("--output", "-o", help="table, json or yaml.")] = "table",
) -> None:
    """Show the config one sidecar runs: from its admin endpoint when a mesh runs, or compiled offline
    from --compose and --istio (nothing needs to run).

    WORKLOAD is a workload (its first replica) or a sidecar's node name, as proxy-status shows.
    """
    from sandbox.control.proxyconfig import FORMATS, SECTIONS

    sections = (*SECTIONS, "secrets")
    workload, section = (second, first) if first in sections and second is not None else (first, second or "all")
    if section not in sections:
        raise usage_error(f"the section must be one of {', '.join(sections)}, not {section!r}")
    if output not in FORMATS:
        raise usage_error(f"--output must be one of {', '.join(FORMATS)}, not {output!r}")
    if compose is not None or istio is not None:
        _offline_proxy_config(workload, section, compose, istio, output)
    else:
        _live_proxy_config(workload, section, file, output)


def _offline_proxy_config(workload: str, section: str, compose: Path | None, istio: Path | None, output: str) -> None:
    from sandbox.control.compile import UnknownProxy
    from sandbox.control.compile import compile as compile_snapshot
    from sandbox.control.proxyconfig import render
    from sandbox.mesh.loader import load_paths
    from sandbox.mesh.state import MeshState
    from sandbox.mesh.topology import load_compose

    if compose is None or istio is None:
        raise usage_error("offline, pass both --compose FILE and --istio DIR")
    if section == "secrets":
        raise usage_error("secrets exist only in a running sidecar (drop --compose/--istio)")
    if not compose.is_file():
        raise usage_error(f"no such compose file: {compose}")
    if not istio.exists():
        raise usage_error(f"no such file or directory: {istio}")
    loaded = load_paths([istio])
    topology = load_compose(compose)
    problems = [d for d in (*loaded.errors, *topology.diagnostics) if d.severity == "error"]
    for diagnostic in problems:
        typer.echo(diagnostic.format(), err=True)
    try:
        snapshot = compile_snapshot(MeshState(loaded.resources, topology), workload)
    except UnknownProxy as exc:
        raise usage_error(str(exc)) from None
    typer.echo(render(snapshot, section, output))
    raise typer.Exit(EXIT_FINDINGS if problems else EXIT_OK)


def _live_proxy_config(workload: str, section: str, compose: Path | None, output: str) -> None:
    import json

    from sandbox.control.proxyconfig import render
    from sandbox.operator.client import Unreachable, get_json
    from sandbox.operator.mesh import NoMesh
    from sandbox.operator.views import live_endpoints_table, secrets_table
    from sandbox.xds.snapshot import ProxySnapshot

    try:
        record = _locate(compose).running()
    except NoMesh as exc:
        raise _fail(f"{exc}; or pass --compose FILE --istio DIR to compile offline") from None
    matches = [p for p in record.proxies if p.node == workload] or [p for p in record.proxies if p.workload == workload]
    if not matches:
        known = ", ".join(sorted({p.node for p in record.proxies})) or "none"
        raise usage_error(f"no sidecar named {workload!r} in the running mesh (sidecars: {known})")
    target = sorted(matches, key=lambda p: p.replica)[0]
    if len(matches) > 1:
        typer.echo(f"(showing {target.node}, replica 1 of {len(matches)})", err=True)
    try:
        if section == "secrets":
            certs = get_json(target.admin, "/certs")
            text = json.dumps(certs, indent=2) if output == "json" else None
            if output == "yaml":
                from sandbox.mesh.yamlsrc import dump_yaml

                text = dump_yaml(certs).rstrip("\n")
            now = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
            typer.echo(text if text is not None else secrets_table(certs, now))
            return
        if section == "endpoints" and output == "table":
            typer.echo(live_endpoints_table(get_json(target.admin, "/clusters", {"format": "json"})))
            return
        data = get_json(target.admin, "/config_dump")
    except Unreachable as exc:
        raise _fail(f"{target.node}: {exc}") from None
    try:
        snapshot = ProxySnapshot.from_data(data)
    except ValueError as exc:
        raise _fail(f"{target.node}: unexpected /config_dump: {exc}") from None
    typer.echo(render(snapshot, section, output))


def wait(
    synced: Annotated[bool, typer.Option("--synced", help="Until every sidecar runs the current config.")] = False,
    timeout: Annotated[str, typer.Option(help="Give up after this long, e.g. 10s, 1m.")] = "30s",
    compose: ComposeOption = None,
) -> None:
    """Wait until the mesh is in sync, instead of sleeping in scripts and tests.

    In sync: no change on disk is waiting to be applied, and every sidecar of the running mesh is
    connected and has ACKed the current config. Exit status: 0 in sync, 1 timed out (what is still
    stale is printed) or no mesh running, 2 unusable arguments.
    """
    from sandbox.mesh.schema import Duration
    from sandbox.operator.mesh import NoMesh
    from sandbox.operator.sync import wait_synced

    if not synced:
        raise usage_error("say what to wait for: --synced")
    try:
        limit = Duration.parse(timeout).seconds
    except ValueError as exc:
        raise usage_error(f"--timeout: {exc}") from None
    try:
        record = _locate(compose).running()
    except NoMesh as exc:
        raise _fail(str(exc)) from None
    result = wait_synced(record, limit)
    if result.synced:
        for name in result.rejected:
            typer.echo(f"warning: {name} is rejected; its last good version is in force", err=True)
        raise typer.Exit(EXIT_OK)
    typer.echo(f"error: not in sync after {timeout}:", err=True)
    for problem in result.problems:
        typer.echo(f"  {problem}", err=True)
    raise typer.Exit(EXIT_FINDINGS)
