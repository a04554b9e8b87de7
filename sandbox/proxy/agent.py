"""The sidecar's agent (the part of Istio's pilot-agent we need): subscribe, then serve what arrives.

`ProxyAgent` owns the admin ports from the start, so readiness (15021) answers 503 until the first
snapshot is applied and 200 after. The first snapshot (from `--snapshot FILE` or the control
plane) builds the `Sidecar` and opens its listeners before it is ACKed; later ones go through
`Sidecar.apply`. A snapshot for another workload, or one that does not decode, is NACKed and the
sidecar keeps serving what it has. A gateway applies what it can and NACKs naming the Gateway
ports it cannot listen on (as Envoy rejects just that listener). Failing to bind a sidecar's own
ports (admin, 15001, 15006) is fatal: the process exits 2, as a sidecar that cannot listen is useless.

The workload certificate (the SDS secret) stays in this object's memory; the admin endpoint shows
its serial, SPIFFE ID and validity, never the key. As a sandbox.service component, `done` and
`failure` say when and why the process must end.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

from sandbox.proxy.admin import AdminServers, start_admin
from sandbox.proxy.cluster import ClusterState
from sandbox.proxy.sidecar import ProxyOptions, Sidecar
from sandbox.proxy.subscription import Subscription
from sandbox.proxy.tracing import SpanReporter
from sandbox.service import StartupError
from sandbox.xds.certificate import WorkloadCertificate
from sandbox.xds.messages import PUSH_PATH, Hello
from sandbox.xds.snapshot import ProxySnapshot

log = logging.getLogger(__name__)


class _NoTelemetry:
    """What the admin endpoints read before the first snapshot: nothing yet."""

    spans: SpanReporter | None = None

    def prometheus_text(self) -> str:
        return ""


class ProxyAgent:
    def __init__(
        self,
        options: ProxyOptions,
        *,
        snapshot: ProxySnapshot | None = None,
        control_plane: str | None = None,
        hello: Hello | None = None,
        on_ready: Callable[[ProxyAgent], None] | None = None,
        certificate: WorkloadCertificate | None = None,
    ) -> None:
        if snapshot is None and control_plane is None:
            raise ValueError("a sidecar needs a snapshot file or a control plane")
        if control_plane is not None and hello is None:
            raise ValueError("subscribing needs the proxy's identity")
        self.options = options
        self.identity = hello.identity if hello is not None else None
        self.sidecar: Sidecar | None = None
        self.certificate = certificate  # from files (`--certs`) until the control plane pushes one
        self.failure: Exception | None = None  # why the process must end (its first listeners cannot bind)
        self.done = asyncio.Event()  # set on a fatal error
        self._initial = snapshot
        self.on_ready = on_ready
        self._admin: AdminServers | None = None
        self._lock = asyncio.Lock()  # one snapshot at a time (file and control plane may race at start)
        self.subscription = None
        if control_plane is not None and hello is not None:
            self.subscription = Subscription(push_url(control_plane), hello, self)

    # -- what the admin endpoints read (AdminSource) ---------------------------------------------
    @property
    def snapshot(self) -> ProxySnapshot | None:
        return self.sidecar.snapshot if self.sidecar is not None else None

    @property
    def clusters(self) -> Iterable[ClusterState]:
        return self.sidecar.clusters if self.sidecar is not None else ()

    @property
    def telemetry(self) -> Any:
        return self.sidecar.telemetry if self.sidecar is not None else _NoTelemetry()

    @property
    def certificate_in_use(self) -> WorkloadCertificate | None:
        """What the sidecar's TLS presents now; before it runs, the certificate it will start with."""
        in_use = self.sidecar.certificate_in_use if self.sidecar is not None else None
        return in_use or self.certificate

    @property
    def filter_stats(self) -> list[tuple[str, int]]:
        return self.sidecar.filter_stats if self.sidecar is not None else []

    @property
    def ports(self) -> dict[str, int]:
        admin = self._admin.ports if self._admin is not None else {}
        return {**(self.sidecar.ports if self.sidecar is not None else {}), **admin}

    # -- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        """Admin ports first (readiness says 503 meanwhile), then the file's snapshot, then subscribe."""
        opts = self.options
        try:
            self._admin = await start_admin(self, opts)
        except OSError as exc:
            ports = f"admin {opts.admin_port}, stats {opts.stats_port}, ready {opts.ready_port}"
            raise OSError(exc.errno, f"cannot listen on {opts.bind} ({ports}): {exc.strerror or exc}") from None
        if self._initial is not None:
            await self._apply(self._initial)
        if self.subscription is not None:
            self.subscription.start()

    async def stop(self) -> None:
        if self.subscription is not None:
            await self.subscription.stop()
        if self.sidecar is not None:
            await self.sidecar.stop()
        if self._admin is not None:
            await self._admin.close()
            self._admin = None

    # -- the subscription's sink -----------------------------------------------------------------
    async def on_snapshot(self, payload: dict[str, Any]) -> None:
        """Decode, check, apply; raising NACKs the snapshot and keeps the current one (except that
        a gateway applies what it can and NACKs the Gateway ports it cannot listen on)."""
        snapshot = ProxySnapshot.from_data(payload)
        me = self.identity
        if me is not None and (snapshot.identity.workload, snapshot.identity.namespace) != (me.workload, me.namespace):
            ident = snapshot.identity
            raise ValueError(f"snapshot is for {ident.workload}.{ident.namespace}, not {me.workload}.{me.namespace}")
        first = self.sidecar is None
        await self._apply(snapshot)
        if first and self.sidecar is not None:
            problems = self.sidecar.gateway_problems + self.sidecar.tls_problems
            if problems:
                raise OSError(errno.EADDRNOTAVAIL, "; ".join(problems))

    def on_certificate(self, certificate: WorkloadCertificate) -> None:
        me = self.identity
        if me is not None and not certificate.spiffe_id.endswith(f"/ns/{me.namespace}/sa/{me.service_account}"):
            raise ValueError(f"certificate for {certificate.spiffe_id}, not {me.namespace}/{me.service_account}")
        if self.certificate is None or self.certificate.serial != certificate.serial:
            log.info(
                "workload certificate %s serial %s, valid until %s",
                certificate.spiffe_id,
                certificate.serial_hex,
                certificate.not_after.isoformat(),
            )
        self.certificate = certificate
        if self.sidecar is not None:
            self.sidecar.set_certificate(certificate)

    async def _apply(self, snapshot: ProxySnapshot) -> None:
        async with self._lock:
            if self.sidecar is None:
                await self._install(snapshot)
                return
            kind, running = snapshot.identity.kind, self.sidecar.snapshot.identity.kind
            if kind != running:
                raise ValueError(f"snapshot is for a {kind}, this proxy runs as a {running}")
            await self.sidecar.apply(snapshot)

    async def _install(self, snapshot: ProxySnapshot) -> None:
        sidecar = Sidecar(snapshot, self.options)
        if self.certificate is not None:  # pushed before the first snapshot: mTLS from the first connection
            sidecar.set_certificate(self.certificate)
        try:
            await sidecar.start(admin=False)
        except OSError as exc:
            await sidecar.stop()
            self.failure = StartupError(str(exc.strerror or exc))
            self.done.set()
            raise
        self.sidecar = sidecar
        if sidecar.gateway_problems or sidecar.tls_problems:  # it serves what it can; the NACK says the rest
            for problem in sidecar.gateway_problems + sidecar.tls_problems:
                log.error("%s", problem)
        # Everything built so far lives as long as the process: keep it out of the cyclic GC's full
        # collections, which otherwise rescan it every few thousand requests (measured: ~12 us/request).
        gc.collect()
        gc.freeze()
        if self.on_ready is not None:
            self.on_ready(self)


def push_url(control_plane: str) -> str:
    """`http://host:15010` -> its push endpoint; a URL with a path is taken as it is."""
    parts = urlsplit(control_plane if "://" in control_plane else f"http://{control_plane}")
    if parts.path in ("", "/"):
        parts = parts._replace(path=PUSH_PATH)
    return parts.geturl()
