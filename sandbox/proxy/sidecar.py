"""One sidecar (or a gateway: istio-ingressgateway, istio-egressgateway), assembled around a ProxySnapshot.

`Sidecar` assembles the pieces (clusters, pools, telemetry, the outbound and inbound listeners,
the admin endpoints) around one ProxySnapshot and can take a new one at any time (`update`, or
`apply`, which also opens and closes a gateway's listeners); tests and the benchmark run it
in-process. A router snapshot (a gateway) gets one listener per Gateway server port instead of
15001/15006, bound at the port Istio's gateway Services map it to (80->8080, 443->8443, others as
they are; `ProxyOptions.port_map`). The process around it (admin ports, the
subscription, signals) is agent.py and process.py.

Mutual TLS: `set_certificate` gives the sidecar its workload certificate (the agent does, at
start and at each rotation); `Credentials` (tls.py) then serve both sides. The inbound listener
inspects each connection and chooses its transport by the PeerAuthentication mode of its port
(filterchain.py); a snapshot that changes a mode drains the connections the new mode refuses.
Upstream pools whose transport changes (auto mTLS, a DestinationRule's `tls`) are retired. A
gateway's HTTPS ports terminate TLS with their servers' certificates (files read when a snapshot
or a new certificate arrives, and again when they change on disk: looked at every FILE_POLL
seconds, as Istio's SDS hands a gateway a Secret's new version without a config push).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandbox.mesh.names import DOMAIN_SUFFIX
from sandbox.proxy import http1
from sandbox.proxy.accesslog import AccessLog
from sandbox.proxy.admin import AdminServers, start_admin
from sandbox.proxy.cluster import ClusterManager
from sandbox.proxy.context import ForwardContext, ListenerClass
from sandbox.proxy.decision import DecisionKind, RequestHead, RouteDecision, no_route
from sandbox.proxy.filterchain import Accepted, FilterChain, GatewayChains, InboundChains
from sandbox.proxy.filters import AccessFilters, FilterStats
from sandbox.proxy.record import RequestRecord
from sandbox.proxy.routing import CachingRouter, GatewayRouter, OutboundRouter, RouteTable
from sandbox.proxy.server import Listener, ListenerSettings
from sandbox.proxy.tcproute import TcpRoutes
from sandbox.proxy.telemetry import Telemetry
from sandbox.proxy.timers import LoopTimers
from sandbox.proxy.tls import Credentials, OriginationError, file_stamps, termination_context
from sandbox.proxy.tunnel import Tunnels
from sandbox.proxy.upstream import SocketConnector, Upstreams
from sandbox.proxy.writes import WriteBatch
from sandbox.xds.certificate import WorkloadCertificate
from sandbox.xds.snapshot import (
    NO_RETRY,
    PASSTHROUGH_CLUSTER,
    Cluster,
    Endpoint,
    InboundListener,
    ProxySnapshot,
    ServerTLS,
)

# istio-ingressgateway's Service: port 80 -> targetPort 8080, 443 -> 8443 (the gateway runs unprivileged)
log = logging.getLogger(__name__)

DEFAULT_PORT_MAP = ((80, 8080), (443, 8443))
FILE_POLL = 2.0  # seconds between looks at the TLS files a gateway or a DestinationRule names


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
        on_complete: Callable[[RequestRecord], None] | None = None,
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
        loop = self.loop
        timers = LoopTimers(loop)
        self.writes = writes = WriteBatch(loop)  # every connection's writes of this pass, upstream and downstream
        self.clusters = ClusterManager(clock=timers.now, rng=self.rng)
        self.credentials = Credentials()
        self.upstreams = Upstreams(timers, SocketConnector(loop, writes, self.credentials))
        self.inbound_chains = InboundChains()
        self._inbound: dict[int, tuple[InboundListener, RouteDecision]] = {}
        self.filters: AccessFilters | None = None  # the snapshot's authentication and authorization
        self._filter_stats: FilterStats | None = None
        # The listeners' routers (compiled callables: one call per request)
        table = RouteTable(snapshot)
        self.route_outbound = OutboundRouter(table, self.rng)
        self.route_inbound = CachingRouter(self._inbound_route)

        def context(listener_class: ListenerClass) -> ForwardContext:
            return ForwardContext(
                timers, self.clusters, self.upstreams, listener_class, telemetry, on_complete, self.rng
            )

        settings = ListenerSettings(
            header_timeout=options.header_timeout,
            idle_timeout=options.idle_timeout,
            max_request_headers_kb=options.max_request_headers_kb,
        )
        outbound_settings = dataclasses.replace(settings, original_dst=options.transparent)
        outbound_ctx = context(ListenerClass.SIDECAR_OUTBOUND)
        # HTTPS_PROXY: the outbound listener answers CONNECT with a TCP tunnel (tunnel.py)
        self.tunnels = Tunnels(outbound_ctx, loop, self.credentials)
        self.outbound = Listener(
            outbound_ctx, self.route_outbound, outbound_settings, loop, writes, tunnels=self.tunnels
        )
        self.inbound = Listener(
            context(ListenerClass.SIDECAR_INBOUND),
            self.route_inbound,
            dataclasses.replace(settings, original_dst=options.transparent),
            loop,
            writes,
            chains=self.inbound_chains,
        )
        self._gateway_ctx, self._settings = context(ListenerClass.GATEWAY), settings
        self.inbound.ctx.filters = self._gateway_ctx.filters = self.filters
        self.gateway_listeners: dict[int, Listener] = {}  # Gateway server port -> its listener
        self.gateway_problems: list[str] = []  # Gateway ports the last snapshot could not listen on
        self.gateway_chains: dict[int, GatewayChains] = {}  # Gateway server port -> its TLS servers
        self.tls_problems: list[str] = []  # Gateway servers whose certificate is unusable
        # server -> (its files' stamps and the workload certificate's serial, its chain, what is wrong)
        self._terminations: dict[ServerTLS, tuple[object, FilterChain | None, str]] = {}
        self.ports: dict[str, int] = {}
        self._tasks: list[asyncio.Task[Any]] = []
        self._admin: AdminServers | None = None
        self._started = False
        self.update(snapshot, table)

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

    def update(self, snapshot: ProxySnapshot, table: RouteTable | None = None) -> None:
        """Take a new snapshot: routes at once (compiled here, once), clusters keep their hosts'
        state and warm pools. A gateway's listeners follow in `apply` (opening a socket is asynchronous)."""
        self.snapshot = snapshot = self._localise(snapshot)
        inbound_clusters = tuple(self._inbound_cluster(il) for il in snapshot.inbound)
        transports = self._transports()
        self.clusters.update(dataclasses.replace(snapshot, clusters=snapshot.clusters + inbound_clusters))
        self._inbound = {il.port: (il, self._inbound_decision(il)) for il in snapshot.inbound}
        modes = {il.port: il.mtls for il in snapshot.inbound}
        if modes != self.inbound_chains.modes:
            self.inbound_chains.modes = modes
            self.inbound.drain(self._inbound_keeps)
        self.route_outbound.table = table or RouteTable(snapshot)
        self.tunnels.routes = TcpRoutes(snapshot)
        self.telemetry.configure(snapshot.telemetry)
        self._update_terminations()
        self._compile_filters(snapshot)
        self.route_inbound.clear()
        # A pool lives on while its cluster and host do, with the transport its connections were made for.
        live = {key for key, transport in self._transports().items() if transports.get(key, transport) == transport}
        # PassthroughCluster's hosts are wherever requests went, not in the snapshot: keep those pools.
        live |= {key for key in self.upstreams.pools if key[0] == PASSTHROUGH_CLUSTER and self.clusters.get(key[0])}
        self.upstreams.retain(live)

    def _transports(self) -> dict[tuple[str, str], tuple[object, ...]]:
        """(cluster, host) -> what decides its connections' TLS (the DR's `tls`, auto mTLS's per endpoint)."""
        return {
            (state.name, host.address): (
                state.config.traffic_policy.tls,
                host.endpoint is not None and host.endpoint.mtls,
            )
            for state in self.clusters
            for host in state.hosts.hosts
        }

    @property
    def certificate_in_use(self) -> WorkloadCertificate | None:
        """The workload certificate new mTLS connections present (admin /certs)."""
        return self.credentials.mesh.certificate if self.credentials.mesh is not None else None

    def set_certificate(self, cert: WorkloadCertificate) -> None:
        """The workload certificate, new or rotated: new connections use it, open ones keep theirs."""
        self.credentials.set_certificate(cert)
        mesh = self.credentials.mesh
        assert mesh is not None
        self.inbound_chains.mesh = FilterChain(mesh.server, mutual=True, own_id=cert.spiffe_id)
        self._update_terminations()

    def _update_terminations(self) -> None:
        """Each gateway port's TLS servers, their contexts built again only when a server's settings,
        its files on disk or (ISTIO_MUTUAL) the workload certificate changed. Files that no longer
        read (a certificate half copied in) leave the server with the ones it had, and say so."""
        problems, cache = [], {}
        mesh = self.credentials.mesh
        for rc in self.snapshot.route_configs if self.router else ():
            servers = []
            for server in rc.tls:
                files = file_stamps(server.server_certificate, server.private_key, server.ca_certificates)
                stamp: object = (files, mesh.certificate.serial if mesh else None)
                cached = self._terminations.get(server)
                if cached is None or cached[0] != stamp:
                    try:
                        context = termination_context(server, mesh)
                        chain: FilterChain | None = FilterChain(
                            context,
                            mutual=server.mode != "SIMPLE",
                            own_id=self.credentials.spiffe_id if server.mode == "ISTIO_MUTUAL" else "",
                            client_names=server.subject_alt_names,
                        )
                        problem = ""
                    except OriginationError as exc:
                        chain = cached[1] if cached is not None else None
                        kept = "; keeps the certificate it had" if chain is not None else ""
                        problem = f"{server.source} port {rc.port}: {exc}{kept}"
                    cached = (stamp, chain, problem)
                if cached[2]:
                    problems.append(cached[2])
                cache[server] = cached
                servers.append((server.hosts, cached[1]))
            self.gateway_chains.setdefault(rc.port, GatewayChains()).servers = tuple(servers)
        self._terminations = cache
        self.credentials.reread_changed_files()
        self.tls_problems = problems + self.credentials.problems()

    async def _watch_files(self) -> None:
        """Every FILE_POLL seconds, TLS files changed on disk are read again (logged if they fail)."""
        while True:
            await asyncio.sleep(FILE_POLL)
            before = self.tls_problems
            try:
                self._update_terminations()
            except Exception:  # one failed look must not end the later ones
                log.exception("re-reading TLS files")
                continue
            for problem in self.tls_problems:
                if problem not in before:
                    log.warning("%s", problem)

    def _inbound_keeps(self, accepted: Accepted) -> bool:
        dst = accepted.original_dst
        return self.inbound_chains.accepts(dst[1] if dst else 0, accepted.chain)

    def _compile_filters(self, snapshot: ProxySnapshot) -> None:
        """The inbound side's (a gateway's) filters before the router, once per snapshot; none at
        all when no RequestAuthentication or AuthorizationPolicy selects this proxy."""
        access = snapshot.access
        if access.empty:
            self.filters = None
        elif self.filters is None or self.filters.access != access:
            # Envoy's stat prefix of the listener's HTTP connection manager
            if self.router:
                port = min((rc.port for rc in snapshot.route_configs), default=0)
                prefix = f"outbound_0.0.0.0_{self.options.bind_port(port)}"
            else:
                prefix = f"inbound_0.0.0.0_{snapshot.inbound[0].port if snapshot.inbound else 0}"
            if self._filter_stats is None or self._filter_stats.prefix != prefix:
                self._filter_stats = FilterStats(prefix)
            self.filters = AccessFilters(access, self._filter_stats)
        if hasattr(self, "inbound"):  # (the listeners exist after the first snapshot)
            self.inbound.ctx.filters = self._gateway_ctx.filters = self.filters

    @property
    def filter_stats(self) -> list[tuple[str, int]]:
        """The jwt_authn, ext_authz and RBAC counters (admin /stats)."""
        return self._filter_stats.items() if self._filter_stats is not None else []

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
        NACKs with the reason); the next snapshot tries them again. So does a Gateway server whose
        certificate cannot be used: its port refuses handshakes for that server's hosts."""
        problems = await self._open_gateway_listeners(snapshot) if self._started else []
        self.update(snapshot)
        problems += self.tls_problems
        if self._started:
            wanted = _gateway_ports(snapshot)
            for port in sorted(self.gateway_listeners.keys() - wanted):
                await self.gateway_listeners.pop(port).close()
                self.ports.pop(f"gateway.{port}", None)
                self.gateway_chains.pop(port, None)
        if problems:
            raise OSError(errno.EADDRNOTAVAIL, "; ".join(problems))

    async def _open_gateway_listeners(self, snapshot: ProxySnapshot) -> list[str]:
        """Listen on each Gateway server port not listened on yet; what failed, one line each."""
        problems = []
        bind = self.options.bind
        for port in sorted(_gateway_ports(snapshot) - self.gateway_listeners.keys()):
            router = GatewayRouter(port, self.route_outbound)
            chains = self.gateway_chains.setdefault(port, GatewayChains())
            listener = Listener(self._gateway_ctx, router, self._settings, self.loop, self.writes, chains=chains)
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
        self._tasks.append(self.loop.create_task(self._watch_files()))
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
