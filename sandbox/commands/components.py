"""The mesh's own processes: `sandbox proxy` (a sidecar or the ingress gateway) and `sandbox controlplane`.

Runtimes start these; people rarely do. Option names are an interface the runtimes rely on.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from sandbox.commands import usage_error

TOKEN_ENV = "SANDBOX_TOKEN"


def register(app: typer.Typer) -> None:
    app.command()(proxy)
    app.command()(controlplane)


def _port_map(values: list[str]) -> tuple[tuple[int, int], ...]:
    from sandbox.proxy.sidecar import DEFAULT_PORT_MAP

    mapping = dict(DEFAULT_PORT_MAP)
    for value in values:
        gateway, sep, bind = value.partition("=")
        if not sep or not gateway.strip().isdigit() or not bind.strip().isdigit():
            raise usage_error(f"--port-map takes GWPORT=BINDPORT, e.g. 80=8080, not {value!r}")
        g, b = int(gateway), int(bind)
        if not 0 < g < 65536 or not 0 <= b < 65536:
            raise usage_error(f"--port-map {value}: ports are 1-65535 (a bind port of 0 picks a free one)")
        mapping[g] = b
    return tuple(sorted(mapping.items()))


def _address(value: str | None, option: str) -> str | None:
    if value is None:
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise usage_error(f"{option} takes HOST:PORT, e.g. 127.0.0.1:9080, not {value!r}")
    return value


def proxy(
    snapshot: Annotated[
        Path | None,
        typer.Option("--snapshot", help="ProxySnapshot JSON file to serve (alone, or until the first push)."),
    ] = None,
    control_plane: Annotated[
        str | None,
        typer.Option(
            "--control-plane",
            help=f"Control plane URL, e.g. http://127.0.0.1:15010; the bootstrap token comes from ${TOKEN_ENV}.",
        ),
    ] = None,
    node: Annotated[str | None, typer.Option(help="This sidecar's unique name (default: the workload).")] = None,
    workload: Annotated[str | None, typer.Option(help="The Compose service this sidecar runs beside.")] = None,
    namespace: Annotated[str, typer.Option(help="The workload's namespace.")] = "default",
    service_account: Annotated[
        str | None, typer.Option(help="The workload's service account (its SPIFFE identity).")
    ] = None,
    outbound_port: Annotated[int, typer.Option(help="Outbound listener (HTTP_PROXY and captured traffic).")] = 15001,
    inbound_port: Annotated[int, typer.Option(help="Inbound listener (forwards to the app).")] = 15006,
    admin_port: Annotated[int, typer.Option(help="Admin: /config_dump, /clusters, /stats, /certs.")] = 15000,
    stats_port: Annotated[int, typer.Option(help="Prometheus: /stats/prometheus.")] = 15020,
    ready_port: Annotated[int, typer.Option(help="Readiness: /healthz/ready (200 once configured).")] = 15021,
    bind: Annotated[str, typer.Option(help="Address every listener binds.")] = "127.0.0.1",
    app_address: Annotated[
        str | None, typer.Option(help="HOST:PORT of the app, for every inbound listener (default: the snapshot's).")
    ] = None,
    zipkin: Annotated[
        str | None, typer.Option("--zipkin", help="Send spans to this Zipkin v2 endpoint (.../api/v2/spans).")
    ] = None,
    port_map: Annotated[
        list[str] | None,
        typer.Option(
            "--port-map",
            help="Ingress gateway: listen for Gateway port GWPORT on BINDPORT (repeatable; default 80=8080, 443=8443).",
        ),
    ] = None,
    access_log: Annotated[str, typer.Option(help="'-' for stdout, a file path, or 'off'.")] = "-",
    certs: Annotated[
        Path | None,
        typer.Option(
            "--certs",
            help="Directory with cert-chain.pem, key.pem and root-cert.pem: the workload certificate until "
            "the control plane pushes one (for a sidecar run from --snapshot alone).",
        ),
    ] = None,
    header_timeout: Annotated[float, typer.Option(help="Seconds a client may take to send its headers.")] = 10.0,
) -> None:
    """Run one sidecar (or the ingress gateway) until SIGTERM or SIGINT.

    Config comes from --snapshot FILE, from --control-plane URL (pushed, hot), or both (the file serves until the
    first push). /healthz/ready answers 200 once a snapshot is applied.

    Exit status: 0 after a clean shutdown, 2 for unusable options, an unreadable snapshot or a port already taken.
    """
    from sandbox.proxy.process import Subscribe, run
    from sandbox.proxy.sidecar import ProxyOptions
    from sandbox.xds.identity import ProxyIdentity

    if snapshot is None and control_plane is None:
        raise usage_error("pass --snapshot FILE or --control-plane URL (or both)")
    subscribe = None
    if control_plane is not None:
        token = os.environ.get(TOKEN_ENV, "")
        if not token:
            raise usage_error(f"--control-plane needs the bootstrap token in ${TOKEN_ENV}")
        if not workload or not service_account:
            raise usage_error("--control-plane needs --workload and --service-account")
        subscribe = Subscribe(
            control_plane, node or workload, ProxyIdentity(workload, namespace, service_account), token
        )
    options = ProxyOptions(
        bind=bind,
        outbound_port=outbound_port,
        inbound_port=inbound_port,
        admin_port=admin_port,
        stats_port=stats_port,
        ready_port=ready_port,
        access_log=None if access_log == "off" else access_log,
        header_timeout=header_timeout,
        zipkin_url=zipkin,
        app_address=_address(app_address, "--app-address"),
        port_map=_port_map(port_map or []),
    )
    raise typer.Exit(run(options, snapshot, subscribe, certs))


def controlplane(
    istio: Annotated[Path, typer.Option("--istio", help="Directory of Istio YAML to watch (recursively).")],
    compose: Annotated[Path | None, typer.Option("--compose", "-c", help="Compose file with the workloads.")] = None,
    port: Annotated[int, typer.Option(help="Push WebSocket, /metrics, /debug/syncz and /api/v1.")] = 15010,
    bind: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    state_dir: Annotated[
        Path | None, typer.Option(help="Mesh CA and token secret (default: .sandbox/state beside the compose file).")
    ] = None,
    cert_ttl: Annotated[str, typer.Option(help="Workload certificate lifetime, e.g. 24h or 2m.")] = "24h",
    endpoints: Annotated[
        Path | None,
        typer.Option(
            "--endpoints",
            help='JSON {"<workload>": ["host:port", ...one per replica]}: where each replica\'s sidecar '
            "inbound listener is (re-read when it changes).",
        ),
    ] = None,
    endpoint_port: Annotated[
        int | None,
        typer.Option(help="Every endpoint is <node>:N (Compose: each replica's sidecar by its service name)."),
    ] = None,
) -> None:
    """Watch the Istio YAML and the Compose file and push each sidecar its config and certificate.

    Without --endpoints or --endpoint-port an endpoint is <node>:<service port>.
    """
    import datetime as dt

    from sandbox.control.plane import ControlPlaneSettings
    from sandbox.control.server import run
    from sandbox.mesh.schema import Duration

    if not istio.is_dir():
        raise usage_error(f"no such directory: {istio}")
    if compose is not None and not compose.is_file():
        raise usage_error(f"no such compose file: {compose}")
    if endpoints is not None and endpoint_port is not None:
        raise usage_error("pass --endpoints or --endpoint-port, not both")
    if endpoint_port is not None and not 0 < endpoint_port < 65536:
        raise usage_error(f"--endpoint-port must be 1-65535, not {endpoint_port}")
    try:
        ttl = Duration.parse(cert_ttl).seconds
    except ValueError as exc:
        raise usage_error(f"--cert-ttl: {exc}") from None
    state = state_dir or (compose.parent if compose else Path(".")) / ".sandbox" / "state"
    settings = ControlPlaneSettings(
        istio,
        compose,
        state,
        bind,
        port,
        dt.timedelta(seconds=ttl),
        endpoints_file=endpoints,
        endpoint_port=endpoint_port,
    )
    raise typer.Exit(run(settings))
