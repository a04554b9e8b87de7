"""The `sandbox proxy` process: one sidecar (or the ingress gateway), until SIGTERM/SIGINT.

`Sidecar` assembles the pieces (clusters, pools, telemetry, the outbound and inbound listeners,
the admin endpoints) around one ProxySnapshot and can take a new one at any time (`update`, or
`apply`, which also opens and closes a gateway's listeners); tests and the benchmark run it
in-process. A router snapshot (the ingress gateway) gets one listener per Gateway server port
instead of 15001/15006, bound at the port Istio's ingressgateway Service maps it to (80->8080,
443->8443, others as they are; `ProxyOptions.port_map`). `run` runs a sidecar as a process on
uvloop, from a snapshot file and/or subscribed to the control plane (sandbox/proxy/agent.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import logging
import os
import random
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sandbox.control.snapshot import NO_RETRY, PASSTHROUGH_CLUSTER, Cluster, Endpoint, InboundListener, ProxySnapshot
from sandbox.mesh.names import DOMAIN_SUFFIX
from sandbox.proxy import http1, native
from sandbox.proxy.accesslog import AccessLog
from sandbox.proxy.admin import AdminServers, start_admin
from sandbox.proxy.cluster import ClusterManager
from sandbox.proxy.decision import DecisionKind, RequestHead, RouteDecision, no_route
from sandbox.proxy.forwarder import Exchange, ForwardContext
from sandbox.proxy.routing import CachingRouter, GatewayRouter, OutboundRouter
from sandbox.proxy.server import Listener, ListenerSettings
from sandbox.proxy.telemetry import Telemetry
from sandbox.proxy.upstream import Upstreams

if TYPE_CHECKING:
    from sandbox.proxy.agent import ProxyAgent


# istio-ingressgateway's Service: port 80 -> targetPort 8080, 443 -> 8443 (the gateway runs unprivileged)
DEFAULT_PORT_MAP = ((80, 8080), (443, 8443))


@dataclass(frozen=True, slots=True)
class ProxyOptions:
    """Every knob of one sidecar process; ports 0 pick free ones, None turns a listener off."""

    bind: str = "127.0.0.1"
    outbound_port: int | None = 15001
    inbound_port: int | None = 15006
    admin_port: int | None = 15000
    stats_port: int | None = 15020
    ready_port: int | None = 15021
    header_timeout: float = 10.0
    idle_timeout: float = 3600.0
    max_request_headers_kb: int = 60
    access_log: str | None = "-"  # "-" stdout, a file path, or None for off
    transparent: bool = True  # read SO_ORIGINAL_DST on the outbound listener
    seed: int | None = None
    zipkin_url: str | None = None  # Zipkin v2 spans endpoint, e.g. http://jaeger:9411/api/v2/spans
    app_address: str | None = None  # overrides every inbound listener's app address (local runtime)
    port_map: tuple[tuple[int, int], ...] = DEFAULT_PORT_MAP  # gateway: Gateway server port -> bind port

    def bind_port(self, gateway_port: int) -> int:
        """Where a gateway listens for a Gateway server port (Istio's Service port -> targetPort)."""
        return dict(self.port_map).get(gateway_port, gateway_port)


class Sidecar:
    def __init__(
        self,
        snapshot: ProxySnapshot,
        options: ProxyOptions | None = None,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
        telemetry: Telemetry | None = None,
        on_complete: Callable[[Exchange], None] | None = None,
    ) -> None:
        self.options = options = options or ProxyOptions()
        self.loop = loop or asyncio.get_running_loop()
        self.rng = random.Random(options.seed)
        self.snapshot = snapshot = self._localise(snapshot)
        if telemetry is None:
            telemetry = Telemetry(
                snapshot.identity,
                access_log=_access_log(options.access_log),
                rng=self.rng,
                zipkin_url=options.zipkin_url,
                trust_domain=snapshot.mesh.trust_domain,
            )
        self.telemetry = telemetry
        self.clusters = ClusterManager(clock=self.loop.time, rng=self.rng)
        self.upstreams = Upstreams(self.loop)
        self._inbound: dict[int, tuple[InboundListener, RouteDecision]] = {}
        # The listeners' routers (compiled callables: one call per request)
        self.route_outbound = OutboundRouter(snapshot, self.rng)
        self.route_inbound = CachingRouter(self._inbound_route)
        self.update(snapshot)
        outbound = ForwardContext(
            self.loop, self.clusters, self.upstreams, "outbound", telemetry, on_complete, self.rng
        )
        inbound = ForwardContext(self.loop, self.clusters, self.upstreams, "inbound", telemetry, on_complete, self.rng)
        settings = ListenerSettings(
            header_timeout=options.header_timeout,
            idle_timeout=options.idle_timeout,
            max_request_headers_kb=options.max_request_headers_kb,
        )
        self.outbound = Listener(
            outbound, self.route_outbound, dataclasses.replace(settings, original_dst=options.transparent)
        )
        self.inbound = Listener(inbound, self.route_inbound, settings)
        self._outbound_ctx, self._settings = outbound, settings
        self.gateway_listeners: dict[int, Listener] = {}  # Gateway server port -> its listener
        self.gateway_problems: list[str] = []  # Gateway ports the last snapshot could not listen on
        self.ports: dict[str, int] = {}
        self._tasks: list[asyncio.Task[Any]] = []
        self._admin: AdminServers | None = None
        self._started = False

    @property
    def router(self) -> bool:
        """The ingress gateway: Gateway server listeners instead of the sidecar's 15001/15006."""
        return self.snapshot.identity.kind == "router"

    # ------------------------------------------------------------------ configuration

    def _localise(self, snapshot: ProxySnapshot) -> ProxySnapshot:
        """This runtime's spelling of the app's address (the version stays the pushed one)."""
        address = self.options.app_address
        if address is None or all(il.app_address == address for il in snapshot.inbound):
            return snapshot
        inbound = tuple(dataclasses.replace(il, app_address=address) for il in snapshot.inbound)
        return dataclasses.replace(snapshot, inbound=inbound)

    def update(self, snapshot: ProxySnapshot) -> None:
        """Take a new snapshot: routes at once, clusters keep their hosts' state and warm pools.
        A gateway's listeners follow in `apply` (opening a socket is asynchronous)."""
        self.snapshot = snapshot = self._localise(snapshot)
        inbound_clusters = tuple(self._inbound_cluster(il) for il in snapshot.inbound)
        self.clusters.update(dataclasses.replace(snapshot, clusters=snapshot.clusters + inbound_clusters))
        self._inbound = {il.port: (il, self._inbound_decision(il)) for il in snapshot.inbound}
        self.route_outbound.snapshot = snapshot
        self.route_inbound.clear()
        live = {(state.name, host.address) for state in self.clusters for host in state.hosts.hosts}
        # PassthroughCluster's hosts are wherever requests went, not in the snapshot: keep those pools.
        live |= {key for key in self.upstreams.pools if key[0] == PASSTHROUGH_CLUSTER and self.clusters.get(key[0])}
        self.upstreams.retain(live)

    def _inbound_cluster(self, il: InboundListener) -> Cluster:
        identity = self.snapshot.identity
        app = Endpoint(
            address=il.app_address,
            workload=identity.workload,
            namespace=identity.namespace,
            service_account=identity.service_account,
            labels=identity.labels,
            sidecar=False,
        )
        return Cluster(name=il.cluster, service="", port=il.port, endpoints=(app,))

    def _inbound_decision(self, il: InboundListener) -> RouteDecision:
        # Istio's inbound route: everything to the app, no timeout, no retries, and the span named
        # after the workload's own service (TraceOperation(service hostname, port)), whatever the Host.
        identity = self.snapshot.identity
        service = f"{identity.app}.{identity.namespace}.{DOMAIN_SUFFIX}" if identity.app else ""
        return RouteDecision(
            DecisionKind.FORWARD,
            cluster=il.cluster,
            retry=NO_RETRY,
            route_name="default",
            virtual_host=f"inbound|http|{il.port}",
            service=service,
            operation=f"{service}:{il.port}/*" if service else "",
        )

    # ------------------------------------------------------------------ routers

    def _inbound_route(self, head: RequestHead) -> RouteDecision:
        entry = self._inbound.get(head.port)
        if entry is None:
            if not self._inbound:
                return no_route()
            entry = next(iter(self._inbound.values()))  # a loopback runtime: one app port per sidecar
        decision = entry[1]
        # The destination service FQDN the request named (its Host), for telemetry.
        host = http1.split_authority(head.authority, 0)[0].lower()
        if not host or host[0].isdigit() or host.startswith("[") or host == "localhost":
            return decision
        service = host if "." in host else f"{host}.{self.snapshot.identity.namespace}.{DOMAIN_SUFFIX}"
        return dataclasses.replace(decision, service=service)

    # ------------------------------------------------------------------ lifecycle

    async def apply(self, snapshot: ProxySnapshot) -> None:
        """`update`, plus a gateway's listeners: new Gateway server ports open first, gone ones
        close after. A port that cannot be bound does not stop the rest (Envoy rejects just that
        listener): the snapshot applies, and OSError says which ports are missing (so the agent
        NACKs with the reason); the next snapshot tries them again."""
        problems = await self._open_gateway_listeners(snapshot) if self._started else []
        self.update(snapshot)
        if self._started:
            wanted = _gateway_ports(snapshot)
            for port in sorted(self.gateway_listeners.keys() - wanted):
                await self.gateway_listeners.pop(port).close()
                self.ports.pop(f"gateway.{port}", None)
        if problems:
            raise OSError(errno.EADDRNOTAVAIL, "; ".join(problems))

    async def _open_gateway_listeners(self, snapshot: ProxySnapshot) -> list[str]:
        """Listen on each Gateway server port not listened on yet; what failed, one line each."""
        problems = []
        bind = self.options.bind
        for port in sorted(_gateway_ports(snapshot) - self.gateway_listeners.keys()):
            listener = Listener(self._outbound_ctx, GatewayRouter(port, self.route_outbound), self._settings)
            try:
                bound = await listener.start(bind, self.options.bind_port(port))
            except OSError as exc:
                at = f"{bind}:{self.options.bind_port(port)}"
                problems.append(f"cannot listen on {at} (Gateway port {port}): {exc.strerror or exc}")
                continue
            self.gateway_listeners[port] = listener
            self.ports[f"gateway.{port}"] = bound
        self.gateway_problems = problems
        return problems

    async def start(self, admin: bool = True) -> None:
        """Listen. `admin=False` when someone else (the agent) already serves the admin ports."""
        opts = self.options
        if self.router:
            await self._open_gateway_listeners(self.snapshot)  # what failed is in gateway_problems
        else:
            for name, listener, port in (
                ("outbound", self.outbound, opts.outbound_port),
                ("inbound", self.inbound, opts.inbound_port),
            ):
                if port is None:
                    continue
                try:
                    self.ports[name] = await listener.start(opts.bind, port)
                except OSError as exc:
                    raise OSError(exc.errno, f"cannot listen on {opts.bind}:{port} ({name}): {exc.strerror}") from None
        self._started = True
        self._tasks.append(self.loop.create_task(self.telemetry.run()))
        if admin:
            await self._start_admin()

    async def _start_admin(self) -> None:
        """Admin (15000), Prometheus (15020) and readiness (15021); None ports stay off."""
        self._admin = await start_admin(self)

    async def stop(self) -> None:
        await self.outbound.close()
        await self.inbound.close()
        for listener in self.gateway_listeners.values():
            await listener.close()
        self.gateway_listeners.clear()
        self._started = False
        if self._admin is not None:
            await self._admin.close()
            self._admin = None
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        self.upstreams.close()
        if self.telemetry.access_log is not None:
            self.telemetry.access_log.flush()


def _gateway_ports(snapshot: ProxySnapshot) -> set[int]:
    """A router listens on each Gateway server port it has a route configuration for."""
    return {rc.port for rc in snapshot.route_configs} if snapshot.identity.kind == "router" else set()


def _access_log(target: str | None) -> AccessLog | None:
    if target is None:
        return None
    if target == "-":
        return AccessLog()
    stream = open(target, "a", buffering=1 << 16)  # noqa: SIM115 - lives as long as the process

    def write(text: str) -> None:
        stream.write(text)
        stream.flush()

    return AccessLog(write)


def load_snapshot(path: Path) -> ProxySnapshot:
    """Read a snapshot file; ValueError with a readable message when it is not one."""
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        snapshot = ProxySnapshot.from_json(text)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    return snapshot if snapshot.version else snapshot.seal()


def install_uvloop() -> bool:
    try:
        import uvloop
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


@dataclass(frozen=True)
class Subscribe:
    """Where the sidecar gets its config (`--control-plane`) and who it says it is."""

    control_plane: str
    node: str
    workload: str
    namespace: str
    service_account: str
    token: str = dataclasses.field(repr=False)


async def serve(
    options: ProxyOptions,
    snapshot: ProxySnapshot | None = None,
    subscribe: Subscribe | None = None,
    ready: Callable[[ProxyAgent], None] | None = None,
) -> int:
    """Run one sidecar until SIGTERM or SIGINT, then close listeners and flush telemetry.
    0 after a clean shutdown, 2 when its first listeners cannot be bound."""
    from sandbox.proxy.agent import ProxyAgent
    from sandbox.proxy.subscription import Identity

    loop = asyncio.get_running_loop()
    identity = None
    if subscribe is not None:
        s = subscribe
        identity = Identity(s.node, s.workload, s.namespace, s.service_account, s.token)

    agent = ProxyAgent(
        options,
        snapshot=snapshot,
        control_plane=subscribe.control_plane if subscribe else None,
        identity=identity,
        on_ready=ready,
    )
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, agent.done.set)
    try:
        try:
            await agent.start()
        except OSError as exc:
            agent.failed = exc
        if agent.failed is None:
            await agent.done.wait()
    finally:
        await agent.stop()
    if agent.failed is not None:
        print(f"error: {agent.failed.strerror or agent.failed}", file=sys.stderr)
        return 2
    return 0


def run(options: ProxyOptions, snapshot_path: Path | None = None, subscribe: Subscribe | None = None) -> int:
    """The `sandbox proxy` command: 0 after a clean shutdown, 2 for an unusable snapshot or port."""
    snapshot = None
    if snapshot_path is not None:
        try:
            snapshot = load_snapshot(snapshot_path)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiohttp").setLevel(logging.WARNING)
    uvloop = install_uvloop()

    def ready(agent: ProxyAgent) -> None:
        snapshot = agent.snapshot
        assert snapshot is not None
        ports = " ".join(f"{name}={port}" for name, port in agent.ports.items())
        loop_name = "uvloop" if uvloop else "asyncio"
        print(
            f"sandbox proxy {snapshot.identity.workload} ready: {ports} version {snapshot.version} "
            f"({loop_name}, data path {native.STATUS}, pid {os.getpid()})",
            file=sys.stderr,
            flush=True,
        )

    return asyncio.run(serve(options, snapshot, subscribe, ready))
