"""The `sandbox proxy` process: one sidecar from a snapshot file, until SIGTERM/SIGINT.

`Sidecar` assembles the pieces (clusters, pools, telemetry, the outbound and inbound listeners,
the admin endpoints) around one ProxySnapshot and can take a new one at any time (`update`);
tests and the benchmark run it in-process, `run` runs it as a process on uvloop when available.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import os
import random
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandbox.control.snapshot import NO_RETRY, PASSTHROUGH_CLUSTER, Cluster, Endpoint, InboundListener, ProxySnapshot
from sandbox.mesh.names import DOMAIN_SUFFIX
from sandbox.proxy import http1
from sandbox.proxy.accesslog import AccessLog
from sandbox.proxy.admin import AdminServers, start_admin
from sandbox.proxy.cluster import ClusterManager
from sandbox.proxy.decision import DecisionKind, RequestHead, RouteDecision, no_route
from sandbox.proxy.forwarder import Exchange, ForwardContext
from sandbox.proxy.routing import route
from sandbox.proxy.server import Listener, ListenerSettings
from sandbox.proxy.telemetry import Telemetry
from sandbox.proxy.upstream import Upstreams


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
        self.snapshot = snapshot
        if telemetry is None:
            telemetry = Telemetry(snapshot.identity, access_log=_access_log(options.access_log), rng=self.rng)
        self.telemetry = telemetry
        self.clusters = ClusterManager(clock=self.loop.time, rng=self.rng)
        self.upstreams = Upstreams(self.loop)
        self._inbound: dict[int, tuple[InboundListener, RouteDecision]] = {}
        self._inbound_cache: dict[tuple[int, str], RouteDecision] = {}
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
        self.ports: dict[str, int] = {}
        self._tasks: list[asyncio.Task[Any]] = []
        self._admin: AdminServers | None = None

    # ------------------------------------------------------------------ configuration

    def update(self, snapshot: ProxySnapshot) -> None:
        """Take a new snapshot: routes at once, clusters keep their hosts' state and warm pools."""
        self.snapshot = snapshot
        inbound_clusters = tuple(self._inbound_cluster(il) for il in snapshot.inbound)
        self.clusters.update(dataclasses.replace(snapshot, clusters=snapshot.clusters + inbound_clusters))
        self._inbound = {il.port: (il, self._inbound_decision(il)) for il in snapshot.inbound}
        self._inbound_cache = {}
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
        # Istio's inbound route: everything to the app, no timeout, no retries.
        return RouteDecision(
            DecisionKind.FORWARD,
            cluster=il.cluster,
            retry=NO_RETRY,
            route_name="default",
            virtual_host=f"inbound|http|{il.port}",
        )

    # ------------------------------------------------------------------ routers

    def route_outbound(self, head: RequestHead) -> RouteDecision:
        return route(head, self.snapshot, self.rng)

    def route_inbound(self, head: RequestHead) -> RouteDecision:
        key = (head.port, head.authority)
        decision = self._inbound_cache.get(key)
        if decision is None:
            decision = self._inbound_route(head)
            if len(self._inbound_cache) > 1024:  # authorities are client input: keep the cache bounded
                self._inbound_cache.clear()
            self._inbound_cache[key] = decision
        return decision

    def _inbound_route(self, head: RequestHead) -> RouteDecision:
        entry = self._inbound.get(head.port)
        if entry is None:
            if not self._inbound:
                return no_route()
            entry = next(iter(self._inbound.values()))  # a loopback runtime: one app port per sidecar
        il, decision = entry
        # The destination service FQDN the request named (its Host), for telemetry and the span name.
        host = http1.split_authority(head.authority, 0)[0].lower()
        if not host or host[0].isdigit() or host.startswith("[") or host == "localhost":
            return decision
        service = host if "." in host else f"{host}.{self.snapshot.identity.namespace}.{DOMAIN_SUFFIX}"
        return dataclasses.replace(decision, service=service, operation=f"{service}:{il.port}/*")

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        opts = self.options
        if opts.outbound_port is not None:
            self.ports["outbound"] = await self.outbound.start(opts.bind, opts.outbound_port)
        if opts.inbound_port is not None:
            self.ports["inbound"] = await self.inbound.start(opts.bind, opts.inbound_port)
        self._tasks.append(self.loop.create_task(self.telemetry.run()))
        await self._start_admin()

    async def _start_admin(self) -> None:
        """Admin (15000), Prometheus (15020) and readiness (15021); None ports stay off."""
        self._admin = await start_admin(self)

    async def stop(self) -> None:
        await self.outbound.close()
        await self.inbound.close()
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


async def serve(snapshot: ProxySnapshot, options: ProxyOptions, ready: Callable[[Sidecar], None] | None = None) -> None:
    """Run one sidecar until SIGTERM or SIGINT, then close listeners and flush telemetry."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    sidecar = Sidecar(snapshot, options)
    await sidecar.start()
    # Everything built so far lives as long as the process: keep it out of the cyclic GC's full
    # collections, which otherwise rescan it every few thousand requests (measured: ~12 us/request).
    gc.collect()
    gc.freeze()
    if ready is not None:
        ready(sidecar)
    try:
        await stop.wait()
    finally:
        await sidecar.stop()


def run(snapshot_path: Path, options: ProxyOptions) -> int:
    """The `sandbox proxy` command: 0 after a clean shutdown, 2 for an unusable snapshot or port."""
    try:
        snapshot = load_snapshot(snapshot_path)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    uvloop = install_uvloop()

    def ready(sidecar: Sidecar) -> None:
        ports = " ".join(f"{name}={port}" for name, port in sidecar.ports.items())
        loop_name = "uvloop" if uvloop else "asyncio"
        print(
            f"sandbox proxy {snapshot.identity.workload} ready: {ports} ({loop_name}, pid {os.getpid()})",
            file=sys.stderr,
        )

    try:
        asyncio.run(serve(snapshot, options, ready))
    except OSError as exc:
        print(f"error: cannot listen: {exc.strerror or exc}", file=sys.stderr)
        return 2
    return 0
