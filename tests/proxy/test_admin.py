"""Admin (15000), Prometheus (15020) and readiness (15021) endpoints, through aiohttp's test client."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import random
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives import serialization
from prometheus_client.parser import text_string_to_metric_families

from sandbox.control.ca import MeshCA
from sandbox.proxy.admin import admin_app, certs_json, ready_app, start_admin, stats_app
from sandbox.proxy.cluster import ClusterManager
from sandbox.proxy.record import record
from sandbox.proxy.telemetry import Telemetry
from sandbox.xds.certificate import WorkloadCertificate
from sandbox.xds.snapshot import (
    Cluster,
    ConnectionPool,
    Endpoint,
    OutlierDetectionPolicy,
    ProxyIdentity,
    ProxySnapshot,
    TrafficPolicy,
)

NAME = "outbound|9080|v2|reviews.default.svc.cluster.local"
IDENTITY = ProxyIdentity(
    workload="productpage-v1",
    namespace="default",
    service_account="bookinfo-productpage",
    spiffe_id="spiffe://cluster.local/ns/default/sa/bookinfo-productpage",
    app="productpage",
    version="v1",
)


def snapshot() -> ProxySnapshot:
    cluster = Cluster(
        name=NAME,
        service="reviews.default.svc.cluster.local",
        port=9080,
        subset="v2",
        traffic_policy=TrafficPolicy(
            connection_pool=ConnectionPool(max_connections=1, http1_max_pending_requests=1),
            outlier_detection=OutlierDetectionPolicy(consecutive_5xx_errors=1, max_ejection_percent=50),
        ),
        endpoints=tuple(
            Endpoint(address=f"127.0.0.{i}:15006", workload=f"reviews-v2-{i}", namespace="default", service_account="r")
            for i in (1, 2)
        ),
    )
    return ProxySnapshot(identity=IDENTITY, clusters=(cluster,)).seal()


@dataclass
class FakeSidecar:
    """Implements AdminSource with the real cluster manager and telemetry."""

    snapshot: ProxySnapshot | None = None
    clusters: ClusterManager = field(default_factory=lambda: ClusterManager(lambda: 0.0, random.Random(1)))
    telemetry: Telemetry = field(default_factory=lambda: Telemetry(IDENTITY))
    ports: dict[str, int] = field(default_factory=dict)

    def load(self, snap: ProxySnapshot) -> None:
        self.snapshot = snap
        self.clusters.update(snap)


def loaded() -> FakeSidecar:
    sidecar = FakeSidecar()
    sidecar.load(snapshot())
    state = sidecar.clusters.get(NAME)
    assert state is not None
    bad, good = state.hosts.hosts
    state.start(bad)
    state.finish(bad, 503)  # ejects (consecutive5xxErrors 1)
    state.start(good)  # still active
    assert state.breaker.try_connection() and not state.breaker.try_connection()
    return sidecar


def run(app: web.Application, check: Callable[[TestClient[Any, Any]], Awaitable[None]]) -> None:
    async def main() -> None:
        async with TestClient(TestServer(app)) as client:
            await check(client)

    asyncio.run(main())


def test_clusters_text_shows_health_ejections_and_breakers() -> None:
    async def check(client: TestClient[Any, Any]) -> None:
        resp = await client.get("/clusters")
        assert resp.status == 200
        lines = set((await resp.text()).splitlines())
        assert f"{NAME}::127.0.0.1:15006::health_flags::failed_outlier_check" in lines
        assert f"{NAME}::127.0.0.1:15006::outlier_ejections::1" in lines
        assert f"{NAME}::127.0.0.2:15006::health_flags::healthy" in lines
        assert f"{NAME}::127.0.0.2:15006::rq_active::1" in lines
        assert f"{NAME}::default_priority::max_connections::1" in lines
        assert f"{NAME}::default_priority::max_retries::4294967295" in lines
        assert f"{NAME}::circuit_breakers::cx_open::1" in lines
        assert f"{NAME}::circuit_breakers::upstream_cx_overflow::1" in lines
        assert f"{NAME}::outlier_detection::ejections_active::1" in lines

    run(admin_app(loaded()), check)


def test_clusters_json() -> None:
    async def check(client: TestClient[Any, Any]) -> None:
        data = await (await client.get("/clusters", params={"format": "json"})).json()
        (cluster,) = data["cluster_statuses"]
        assert cluster["name"] == NAME
        assert cluster["circuit_breakers"]["thresholds"][0]["max_pending_requests"] == 1
        assert cluster["circuit_breakers"]["stats"]["upstream_cx_overflow"] == 1
        bad, good = cluster["host_statuses"]
        assert bad["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 15006}
        assert bad["health_status"]["failed_outlier_check"] is True and bad["ejection_count"] == 1
        assert good["health_status"]["failed_outlier_check"] is False
        assert {"name": "rq_active", "value": "1"} in good["stats"]

    run(admin_app(loaded()), check)


def test_config_dump_is_the_snapshot() -> None:
    sidecar = loaded()

    async def check(client: TestClient[Any, Any]) -> None:
        data = await (await client.get("/config_dump")).json()
        assert sidecar.snapshot is not None
        assert ProxySnapshot.from_data(data) == sidecar.snapshot
        assert data["version"] == sidecar.snapshot.version

    run(admin_app(sidecar), check)


def test_stats_plain_filter_and_json() -> None:
    async def check(client: TestClient[Any, Any]) -> None:
        text = await (await client.get("/stats")).text()
        assert f"cluster.{NAME}.upstream_cx_overflow: 1\n" in text
        assert f"cluster.{NAME}.outlier_detection.ejections_active: 1\n" in text
        assert f"cluster.{NAME}.circuit_breakers.default.rq_pending_open: 0\n" in text
        filtered = await (await client.get("/stats", params={"filter": "membership_healthy$"})).text()
        assert filtered == f"cluster.{NAME}.membership_healthy: 1\n"
        bad = await client.get("/stats", params={"filter": "("})
        assert bad.status == 400
        data = await (await client.get("/stats", params={"format": "json", "filter": "upstream_rq_total"})).json()
        assert data == {"stats": [{"name": f"cluster.{NAME}.upstream_rq_total", "value": 2}]}

    run(admin_app(loaded()), check)


def test_before_a_snapshot_config_dump_and_ready_say_so() -> None:
    async def admin_check(client: TestClient[Any, Any]) -> None:
        assert (await client.get("/config_dump")).status == 503
        assert (await client.get("/ready")).status == 503
        assert (await client.get("/clusters")).status == 200

    async def ready_check(client: TestClient[Any, Any]) -> None:
        assert (await client.get("/healthz/ready")).status == 503

    run(admin_app(FakeSidecar()), admin_check)
    run(ready_app(FakeSidecar()), ready_check)


def test_ready_once_a_snapshot_is_loaded() -> None:
    sidecar = FakeSidecar()

    async def check(client: TestClient[Any, Any]) -> None:
        assert (await client.get("/healthz/ready")).status == 503
        sidecar.load(snapshot())
        assert (await client.get("/healthz/ready")).status == 200

    run(ready_app(sidecar), check)


def test_prometheus_endpoint_serves_istio_metrics() -> None:
    sidecar = loaded()
    tel = sidecar.telemetry
    edge = tel.outbound_edge(None, "reviews.default.svc.cluster.local", mtls=False)
    tel.finish(record(1.0, response_code=503, response_flags="UH", edge=edge))

    async def check(client: TestClient[Any, Any]) -> None:
        resp = await client.get("/stats/prometheus")
        assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/plain")
        families = {f.name: f for f in text_string_to_metric_families(await resp.text())}
        (sample,) = families["istio_requests"].samples
        assert sample.labels["response_flags"] == "UH" and sample.value == 1

    run(stats_app(sidecar), check)
    run(admin_app(sidecar), check)  # Envoy's admin port serves /stats/prometheus too


@dataclass
class CertifiedSidecar(FakeSidecar):
    certificate_in_use: WorkloadCertificate | None = None


def test_certs_show_the_workload_certificate_and_the_root_never_a_key(tmp_path: Path) -> None:
    ca = MeshCA.load_or_create(tmp_path)
    now = dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC)
    cert = ca.issue("foo", "httpbin", now=now)
    sidecar = CertifiedSidecar(certificate_in_use=cert)

    async def check(client: TestClient[Any, Any]) -> None:
        text = await (await client.get("/certs")).text()
        assert "PRIVATE" not in text and cert.private_key not in text
        (entry,) = json.loads(text)["certificates"]
        (chain,) = entry["cert_chain"]
        assert chain["serial_number"] == f"{cert.serial:x}"
        assert chain["subject_alt_names"] == [{"uri": "spiffe://cluster.local/ns/foo/sa/httpbin"}]
        assert chain["valid_from"] == "2026-01-01T11:59:00Z" and chain["expiration_time"] == "2026-01-02T12:00:00Z"
        (root,) = entry["ca_cert"]
        assert root["serial_number"] == f"{ca.root_cert.serial_number:x}"
        # the fingerprint `openssl x509 -noout -fingerprint -sha256` prints for .sandbox/state/root-cert.pem
        der = ca.root_cert.public_bytes(serialization.Encoding.DER)
        assert root["sha256_fingerprint"] == ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())
        assert int(root["days_until_expiration"]) > 3000  # a 10-year root
        assert root["expiration_time"].endswith("Z") and root["valid_from"] < root["expiration_time"]

    run(admin_app(sidecar), check)
    assert certs_json(None) == {"certificates": []}
    expired = certs_json(cert, now=now + dt.timedelta(days=2))["certificates"][0]["cert_chain"][0]
    assert expired["days_until_expiration"] == "0"


def test_start_admin_binds_the_requested_ports_and_closes() -> None:
    @dataclass(frozen=True)
    class Options:
        bind: str = "127.0.0.1"
        admin_port: int | None = 0
        stats_port: int | None = 0
        ready_port: int | None = None

    sidecar = loaded()

    async def main() -> None:
        servers = await start_admin(sidecar, Options())
        try:
            assert set(sidecar.ports) == {"admin", "stats"} and all(sidecar.ports.values())
            async with aiohttp.ClientSession() as session:
                async with session.get(f"http://127.0.0.1:{sidecar.ports['admin']}/ready") as resp:
                    assert resp.status == 200 and await resp.text() == "LIVE\n"
                async with session.get(f"http://127.0.0.1:{sidecar.ports['stats']}/stats/prometheus") as resp:
                    assert resp.status == 200
        finally:
            await servers.close()
        with socket.socket() as s:  # closed: the port is free again
            s.bind(("127.0.0.1", sidecar.ports["admin"]))

    asyncio.run(main())
