"""The control plane process: watcher -> store -> compile per proxy -> push, plus its HTTP endpoints.

One aiohttp port serves the push WebSocket (/v1/push), Prometheus metrics (/metrics, named after
istiod's: pilot_xds, pilot_xds_pushes, pilot_total_xds_rejects, pilot_proxy_convergence_time),
per-proxy sync state for proxy-status (/debug/syncz, as istiod's), per-file config status
(/debug/configz) and the read API over the live store (/api/v1/resources, /files, /sync; see
api.py). Convergence time runs from the first file event of a change to each proxy's ACK.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sandbox.control import api
from sandbox.control.ca import DEFAULT_WORKLOAD_TTL, MeshCA, WorkloadCertificate
from sandbox.control.compile import EndpointResolver, UnknownProxy, compile, default_endpoints
from sandbox.control.compile_clusters import endpoints_from_mapping
from sandbox.control.debounce import DEFAULT_MAX_DELAY, DEFAULT_QUIET, DEFAULT_SETTLE
from sandbox.control.push import ProxyStatus, PushServer, SyncState
from sandbox.control.store import ConfigStore, FileState, FileStatus
from sandbox.control.tokens import ProxyIdentity, TokenAuthority
from sandbox.control.watcher import ConfigWatcher, WatchUpdate
from sandbox.mesh.diagnostics import Diagnostic, Severity
from sandbox.mesh.topology import Workload, parse_compose
from sandbox.runtime.project import node_name
from sandbox.signals import until_stopped

log = logging.getLogger(__name__)

DEFAULT_PORT = 15010  # istiod's plaintext xDS port
# Istio's pilot_proxy_convergence_time buckets start at 100 ms; ours must resolve milliseconds.
CONVERGENCE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 3.0, 5.0, 10.0, 20.0, 30.0)


@dataclass
class ControlPlaneSettings:
    istio_dir: Path
    compose_file: Path | None = None
    state_dir: Path = field(default_factory=lambda: Path(".sandbox/state"))
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    cert_ttl: dt.timedelta = DEFAULT_WORKLOAD_TTL
    quiet: float = DEFAULT_QUIET
    max_delay: float = DEFAULT_MAX_DELAY
    settle: float = DEFAULT_SETTLE  # the quiet period after a write that says it is finished
    endpoints_file: Path | None = None  # {"<workload>": ["host:port", ...]}, re-read when it changes
    endpoint_port: int | None = None  # every endpoint is <node>:N (Compose: each replica's sidecar inbound)


class ControlPlane:
    def __init__(self, settings: ControlPlaneSettings, endpoints: EndpointResolver | None = None) -> None:
        self.settings = settings
        if endpoints is None:
            endpoints = node_endpoints(settings.endpoint_port) if settings.endpoint_port else default_endpoints
        self._endpoints = endpoints
        self.endpoints_status: FileStatus | None = None
        self._endpoints_generation = 0
        self.store = ConfigStore()
        self.tokens = TokenAuthority.load_or_create(settings.state_dir)
        self.ca = MeshCA.load_or_create(settings.state_dir)
        self.registry = CollectorRegistry()
        self.convergence = Histogram(
            "pilot_proxy_convergence_time",
            "Seconds from a config file change being seen to a proxy acknowledging the resulting snapshot",
            buckets=CONVERGENCE_BUCKETS,
            registry=self.registry,
        )
        self.mesh_convergence = Histogram(
            "sandbox_config_convergence_time",
            "Seconds from a config file change being seen to the last connected proxy acknowledging it",
            buckets=CONVERGENCE_BUCKETS,
            registry=self.registry,
        )
        self.push = PushServer(
            self._snapshot_for, self._authenticate, self._certificate_for, on_converged=self.convergence.observe
        )
        self.push.ack_listeners.append(self._on_ack)
        self.push.current_listeners.append(self._on_ack)
        self._waiting: set[str] = set()  # proxies the latest change has not reached yet
        self._waiting_since: float | None = None  # monotonic: the earliest change they have not all ACKed
        self.registry.register(_PushCollector(self))
        self.watcher = ConfigWatcher(
            settings.istio_dir,
            settings.compose_file,
            self.on_update,
            quiet=settings.quiet,
            max_delay=settings.max_delay,
            settle=settings.settle,
            endpoints_file=settings.endpoints_file,
        )
        self._cache: dict[str, tuple[str, str] | None] = {}  # workload -> (version, snapshot JSON)
        self._cache_generation: tuple[int, int] = (-1, -1)
        self._runner: web.AppRunner | None = None

    # -- wiring ----------------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application()
        self.push.add_routes(app)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/debug/syncz", self._syncz)
        app.router.add_get("/debug/configz", self._configz)
        app.router.add_get("/ready", self._ready)
        api.add_routes(app, self)
        return app

    async def start(self) -> int:
        """Load everything, start watching, listen; returns the bound port."""
        self.on_update(self.watcher.initial())
        self.watcher.start()
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.settings.host, self.settings.port).start()
        port: int = self._runner.addresses[0][1]
        log.info("control plane listening on %s:%d, watching %s", self.settings.host, port, self.settings.istio_dir)
        return port

    async def stop(self) -> None:
        self.watcher.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def on_update(self, update: WatchUpdate) -> None:
        """Files changed on disk: update the store, report what was rejected, push what changed."""
        try:
            self._apply(update)
        except Exception:  # a bug in loading must not stop the watcher: the last good config stays
            log.exception("applying a config change failed; keeping the last good config")

    def _apply(self, update: WatchUpdate) -> None:
        before = {**self.store.statuses, "<compose>": self.store.topology_status}
        now = time.time()
        changed = False
        if update.compose is not None and self.settings.compose_file is not None:
            topology = parse_compose(update.compose, str(self.settings.compose_file))
            changed |= self.store.set_topology(topology, now)
            self.ca.trust_domain = self.store.topology.settings.trust_domain_or_default
        if update.istio:
            changed |= self.store.apply(update.istio, now)
        if update.endpoints is not None and self.settings.endpoints_file is not None:
            changed |= self._set_endpoints(update.endpoints, now)
        after = {**self.store.statuses, "<compose>": self.store.topology_status}
        _report(before, after)
        if changed:
            self.push.push_all(update.first_seen)
            self._waiting = {
                node for node, p in self.push.proxies.items() if p.connected and p.state is not SyncState.SYNCED
            }
            if self._waiting and self._waiting_since is None:
                self._waiting_since = update.first_seen

    def _set_endpoints(self, text: bytes, now: float) -> bool:
        """A new endpoints file: a bad one is reported and the last good addresses stay."""
        name = str(self.settings.endpoints_file)
        try:
            mapping = parse_endpoints(text)
        except ValueError as exc:
            diagnostic = Diagnostic("SBX400", Severity.ERROR, str(exc), name, 1, 1)
            last = self.endpoints_status.last_good if self.endpoints_status else None
            self.endpoints_status = FileStatus(name, FileState.REJECTED, (diagnostic,), last, now)
            log.error("%s rejected: %s; keeping the last good endpoints", name, exc)
            return False
        self.endpoints_status = FileStatus(name, FileState.OK, (), now, now)
        self._endpoints = endpoints_from_mapping(mapping)
        self._endpoints_generation += 1
        return True

    # -- the push server's callbacks --------------------------------------------------------------
    def _on_ack(self, status: ProxyStatus) -> None:
        """The mesh converged when the last proxy a change concerned ACKed it (a proxy that NACKs or
        disconnects holds the measurement open until a later change)."""
        if status.node in self._waiting and status.version_acked == status.version_current:
            self._waiting.discard(status.node)
            if not self._waiting and self._waiting_since is not None:
                self.mesh_convergence.observe(max(0.0, time.monotonic() - self._waiting_since))
                self._waiting_since = None

    def _snapshot_for(self, identity: ProxyIdentity, node: str) -> tuple[str, str] | None:
        """Compiled once per config generation and workload, shared by its replicas."""
        generation = (self.store.generation, self._endpoints_generation)
        if self._cache_generation != generation:
            self._cache.clear()
            self._cache_generation = generation
        if identity.workload not in self._cache:
            try:
                snapshot = compile(self.store.state, identity.workload, self._endpoints)
            except UnknownProxy as exc:
                log.warning("%s: %s", node, exc)
                self._cache[identity.workload] = None
            except Exception:  # a compile bug must not take the push loop down; the proxy keeps its snapshot
                log.exception("compiling the snapshot of %s failed", identity.workload)
                self._cache[identity.workload] = None
            else:
                self._cache[identity.workload] = (snapshot.version, snapshot.to_json())
        return self._cache[identity.workload]

    def _authenticate(self, identity: ProxyIdentity, token: str) -> bool:
        if not self.tokens.verify(identity, token):
            return False
        workload = self.store.topology.workload(identity.workload)  # a token from an older compose file
        return workload is None or (workload.namespace, workload.service_account) == (
            identity.namespace,
            identity.service_account,
        )

    def _certificate_for(self, identity: ProxyIdentity) -> WorkloadCertificate:
        return self.ca.issue(identity.namespace, identity.service_account, ttl=self.settings.cert_ttl)

    # -- HTTP endpoints ---------------------------------------------------------------------------
    async def _metrics(self, _request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.registry), content_type="text/plain", charset="utf-8")

    async def _syncz(self, _request: web.Request) -> web.Response:
        return web.json_response(self.push.sync_status())

    async def _configz(self, _request: web.Request) -> web.Response:
        return web.json_response(api.files_json(self))

    async def _ready(self, _request: web.Request) -> web.Response:
        return web.Response(text="ok")


class _PushCollector(Collector):
    def __init__(self, plane: ControlPlane) -> None:
        self._plane = plane

    def collect(self) -> list[Metric]:
        push, store = self._plane.push, self._plane.store
        stats = push.stats
        pushes = CounterMetricFamily("pilot_xds_pushes", "Pushes sent to proxies, by type", labels=["type"])
        pushes.add_metric(["snapshot"], stats.pushes)
        pushes.add_metric(["secret"], stats.certificates)
        files = GaugeMetricFamily("sandbox_config_files", "Watched Istio config files by state", labels=["state"])
        for state in FileState:
            files.add_metric([state.value], sum(1 for s in store.statuses.values() if s.state is state))
        return [
            GaugeMetricFamily("pilot_xds", "Proxies connected to this control plane", value=push.connected),
            pushes,
            CounterMetricFamily("pilot_total_xds_rejects", "Snapshots proxies rejected (NACK)", value=stats.nacks),
            CounterMetricFamily(
                "sandbox_refused_connections", "Connections refused (bad hello or token)", value=stats.refused
            ),
            GaugeMetricFamily("sandbox_config_generation", "Config store generation", value=store.generation),
            files,
        ]


def parse_endpoints(text: str | bytes) -> dict[tuple[str, int], str]:
    """`{"reviews-v1": ["127.0.0.1:20001", ...]}` -> {(workload, replica): address}; ValueError says what is wrong."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError('expected an object like {"<workload>": ["host:port", ...]}')
    mapping: dict[tuple[str, int], str] = {}
    for workload, addresses in data.items():
        if isinstance(addresses, str):
            addresses = [addresses]
        if not isinstance(addresses, list):
            raise ValueError(f"{workload}: expected a list of host:port, one per replica")
        for replica, address in enumerate(addresses):
            host, sep, port = str(address).rpartition(":") if isinstance(address, str) else ("", "", "")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{workload}[{replica}]: expected host:port, got {address!r}")
            mapping[(workload, replica)] = address
    return mapping


def node_endpoints(port: int) -> EndpointResolver:
    """Every replica at `<node>:port`: Compose reaches each replica's sidecar by its service name."""

    def resolve(workload: Workload, replica: int, _service_port: int) -> str:
        return f"{node_name(workload.name, replica, workload.replicas)}:{port}"

    return resolve


def _report(before: dict[str, FileStatus], after: dict[str, FileStatus]) -> None:
    """Log each file whose verdict changed, with its diagnostics in compiler style."""
    for name, status in after.items():
        old = before.get(name)
        if old is not None and (old.state, old.diagnostics) == (status.state, status.diagnostics):
            continue
        if status.state is FileState.REJECTED:
            kept = f"; keeping its last good version ({len(status.resources)} resources)" if status.resources else ""
            log.error("%s rejected%s", status.file, kept)
            for d in status.diagnostics:
                log.error("  %s", d.format())
        elif old is not None and old.state is FileState.REJECTED:
            log.info("%s applied", status.file)
    for name in before.keys() - after.keys():
        log.info("%s deleted", name)


def run(settings: ControlPlaneSettings) -> int:
    """`sandbox controlplane`: serve until SIGINT/SIGTERM. 0 after a clean stop, 2 when it cannot
    start (the port is taken, the state directory cannot be written)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    try:
        import uvloop  # the push fan-out is event-loop bound: uvloop's loop is about twice as quick

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:  # pragma: no cover - uvloop is a dependency, but optional on some platforms
        pass

    async def main() -> int:
        try:
            plane = ControlPlane(settings)
        except OSError as exc:
            print(f"error: cannot use the state directory {settings.state_dir}: {exc.strerror or exc}", file=sys.stderr)
            return 2
        try:
            await plane.start()
        except OSError as exc:
            await plane.stop()
            where = f"{settings.host}:{settings.port}"
            print(f"error: cannot listen on {where}: {exc.strerror or exc}", file=sys.stderr)
            return 2
        try:
            await until_stopped()
        finally:
            await plane.stop()
        return 0

    return asyncio.run(main())
