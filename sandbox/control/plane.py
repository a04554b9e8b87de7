"""The control plane's core: watcher -> store -> compile per proxy -> push, and the mesh's identities.

`ControlPlane` owns the config store, the file watcher, the push server, the mesh CA and the
bootstrap-token authority, and one compile cache per config generation. It serves nothing itself:
control/server.py puts its push endpoint, metrics and read API on an HTTP port. Convergence time
runs from the first file event of a change to each proxy's ACK (pilot_proxy_convergence_time).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sandbox.control.ca import DEFAULT_WORKLOAD_TTL, MeshCA
from sandbox.control.compile import CompileCache, EndpointResolver, UnknownProxy, compile, default_endpoints
from sandbox.control.compile_clusters import endpoints_from_mapping
from sandbox.control.debounce import DEFAULT_MAX_DELAY, DEFAULT_QUIET, DEFAULT_SETTLE
from sandbox.control.jwks import REFRESH, TIMEOUT, JwksCache
from sandbox.control.push import ProxyStatus, PushServer, SyncState
from sandbox.control.store import ConfigStore, FileState, FileStatus
from sandbox.control.tokens import TokenAuthority
from sandbox.control.watcher import ConfigWatcher, WatchUpdate
from sandbox.mesh.analysis.enforcement import not_enforced
from sandbox.mesh.diagnostics import Diagnostic, Severity
from sandbox.mesh.names import node_name
from sandbox.mesh.topology import Workload, parse_compose
from sandbox.xds.certificate import WorkloadCertificate
from sandbox.xds.identity import ProxyIdentity

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
    jwks_refresh: float = REFRESH  # seconds between fetches of each RequestAuthentication jwksUri


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
        self._compiled = CompileCache()  # this generation's
        self._unenforced: set[str] = set()  # SBX7xx findings already logged
        self._compiled_generation: tuple[int, int, int] = (-1, -1, -1)
        # jwksUri -> keys, fetched here and pushed inline (control/jwks.py); a new key set is a new push
        self.jwks = JwksCache(self._jwks_changed, settings.jwks_refresh, self._jwks_timeout)

    def start(self) -> None:
        """Load everything on disk, then watch it."""
        self.on_update(self.watcher.initial())
        self.watcher.start()

    def stop(self) -> None:
        self.watcher.stop()
        self.jwks.track(())

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
            self.jwks.track(self._jwks_uris())
            self._warn_unenforced()
            self.push.push_all(update.first_seen)
            self._waiting = {
                node for node, p in self.push.proxies.items() if p.connected and p.state is not SyncState.SYNCED
            }
            if self._waiting and self._waiting_since is None:
                self._waiting_since = update.first_seen

    def _warn_unenforced(self) -> None:
        """Log, once each, what the config asks for and the sidecars do not enforce (SBX7xx): a user
        must never believe a policy protects them when it does not."""
        findings = {d.format() for d in not_enforced(self.store.state)}
        for line in sorted(findings - self._unenforced):
            log.warning("%s", line)
        self._unenforced = findings

    def _jwks_uris(self) -> set[str]:
        return {r.jwks_uri for ra in self.store.state.request_authentications for r in ra.spec.jwt_rules if r.jwks_uri}

    def _jwks_timeout(self, uri: str) -> float:
        for ra in self.store.state.request_authentications:
            for rule in ra.spec.jwt_rules:
                if rule.jwks_uri == uri and rule.timeout is not None:
                    return rule.timeout.seconds
        return TIMEOUT

    def _jwks_changed(self) -> None:
        """A jwksUri answered with new keys: the proxies it concerns get them."""
        self.push.push_all()

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
        generation = (self.store.generation, self._endpoints_generation, self.jwks.generation)
        if self._compiled_generation != generation:
            self._compiled = CompileCache()
            self._compiled_generation = generation
        snapshots = self._compiled.snapshots
        if identity.workload not in snapshots:
            snapshots[identity.workload] = None
            try:
                snapshots[identity.workload] = compile(
                    self.store.state, identity.workload, self._endpoints, cache=self._compiled, jwks=self.jwks.get
                )
            except UnknownProxy as exc:
                log.warning("%s: %s", node, exc)
            except Exception:  # a compile bug must not take the push loop down; the proxy keeps its snapshot
                log.exception("compiling the snapshot of %s failed", identity.workload)
        snapshot = snapshots[identity.workload]
        return (snapshot.version, snapshot.to_json()) if snapshot is not None else None

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
    """`{"reviews-v1": ["127.0.0.1:20001", ...]}` -> {(workload, replica): address}; ValueError says what
    is wrong. A key `<workload>:<port>` addresses one service port of a gateway (compile_clusters)."""
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
    """Every replica at `<node>:port`: Compose reaches each replica's sidecar by its service name;
    a workload without a sidecar at its own port (nothing listens on `port` there), a gateway's
    service port at its targetPort (istio-egressgateway:8080 for port 80)."""

    def resolve(workload: Workload, replica: int, service_port: int) -> str:
        if workload.builtin:
            return f"{node_name(workload.name, replica, workload.replicas)}:{workload.target_port(service_port)}"
        return f"{node_name(workload.name, replica, workload.replicas)}:{port if workload.inject else service_port}"

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
