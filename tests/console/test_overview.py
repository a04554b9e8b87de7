"""The overview: /api/status and the page, from a mesh record, a Compose file and a control plane
that serves /debug/syncz on loopback (sandbox/console/app.py, views.py, templates/)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from console_helpers import read_page, spans, zspan

from sandbox.console.app import Console, ConsoleSettings
from sandbox.console.views import format_age, format_duration
from sandbox.control.push import ProxyStatus
from sandbox.runtime.project import MeshRecord, ProxyRecord, find_project, write_record
from sandbox.xds.identity import ProxyIdentity

COMPOSE = """\
services:
  web:
    image: web
    labels: {app: web, version: v1}
  api-v1:
    image: api
    labels: {app: api, version: v1}
    x-sandbox: {replicas: 2}
  api-v2:
    image: api
    labels: {app: api, version: v2}
  redis:
    image: redis
"""


def status(node: str, workload: str, acked: str, current: str = "v2", nack: str = "") -> dict[str, Any]:
    """A /debug/syncz row as the control plane's PushServer writes it."""
    ns = "istio-system" if workload in ("istio-ingressgateway", "istio-egressgateway") else "default"
    identity = ProxyIdentity(workload, ns, "default")
    row = ProxyStatus(node, identity, connected_at=time.time(), version_current=current, version_sent=current)
    row.version_acked, row.last_ack = acked, time.time()
    if nack:
        row.nack_version, row.nack_reason = current, nack
    return row.to_json()


SYNCZ = [
    status("web", "web", acked="v2"),
    status("api-v1-1", "api-v1", acked="v2"),
    status("api-v1-2", "api-v1", acked="v1"),  # sent v2, not acknowledged yet
    status("api-v2", "api-v2", acked="v1", nack="route api: invalid regex '<b>(['"),
    status("istio-ingressgateway", "istio-ingressgateway", acked="v2"),
    status("istio-egressgateway", "istio-egressgateway", acked="v2"),
]


@asynccontextmanager
async def control_plane(rows: list[dict[str, Any]]) -> AsyncIterator[str]:
    """Serves /debug/syncz and /ready as sandbox/control/server.py does, and Prometheus' /-/ready."""

    async def syncz(_request: web.Request) -> web.Response:
        return web.json_response(rows)

    async def ok(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/debug/syncz", syncz)
    app.router.add_get("/ready", ok)
    app.router.add_get("/-/ready", ok)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def project(tmp_path: Path, prometheus: str | None = None) -> Any:
    (tmp_path / "compose.yaml").write_text(COMPOSE)
    proj = find_project(tmp_path / "compose.yaml")
    record = MeshRecord(
        runtime="local",
        project="shop",
        compose_file=str(proj.compose_file),
        istio_dir=str(proj.istio_dir),
        control_plane="http://127.0.0.1:9",  # --control-plane wins over the record
        urls={"ingress": "http://127.0.0.1:8080", "console": None, "prometheus": prometheus, "tracing": None},
        proxies=(ProxyRecord("web", "web", "default", 0, "http://127.0.0.1:15100"),),
        started_at=time.time(),
    )
    write_record(proj, record)
    return proj


async def fetch(base: str, path: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.get(base + path) as resp:
        return resp.status, await resp.text()


def test_the_overview_shows_each_workloads_proxies_and_their_sync_state(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with control_plane(SYNCZ) as cp:
            # the record's Prometheus URL is what a browser on the host reaches; the console probes --prometheus
            proj = project(tmp_path, prometheus="http://127.0.0.1:49090")
            settings = ConsoleSettings(port=0, control_plane=cp, prometheus=cp, project=proj)
            console = Console(settings)
            port = await console.start()
            base = f"http://127.0.0.1:{port}"
            try:
                assert console.store is not None

                now_us = int(time.time() * 1_000_000)
                console.store.add(
                    spans(
                        zspan(trace="1" * 16, service="web.default", start=now_us - 5_000_000, duration=2_500),
                        zspan(
                            trace="2" * 16, service="api.default", start=now_us - 1_000_000, duration=153, status="503"
                        ),
                    )
                )
                code, html = await fetch(base, "/")
                assert code == 200
                async with aiohttp.ClientSession() as http, http.get(base + "/api/status") as resp:
                    data = await resp.json()
            finally:
                await console.stop()

        assert data["project"] == "shop" and data["runtime"] == "local"
        assert data["controlPlane"] == {"url": cp, "reachable": True, "ready": True, "proxies": 6, "error": None}
        assert data["prometheus"] == {"url": cp, "reachable": True, "error": None}
        assert data["urls"] == {
            "ingress": "http://127.0.0.1:8080",
            "https": None,
            "console": base,
            "prometheus": "http://127.0.0.1:49090",
            "tracing": None,
        }
        assert data["proxyStates"] == {"NACK": 1, "DISCONNECTED": 0, "UNKNOWN": 0, "STALE": 1, "SYNCED": 4}

        page = read_page(html)
        rows = page.sections["workloads"]
        assert rows[0] == ["Workload", "Namespace", "App", "Version", "Sync", "Proxies"]
        assert rows[1:] == [
            ["api-v1", "default", "api", "v1", "STALE", "api-v1-1 SYNCED api-v1-2 STALE"],
            ["api-v2", "default", "api", "v2", "NACK", "api-v2 NACK route api: invalid regex '<b>(['"],
            ["web", "default", "web", "v1", "SYNCED", "web SYNCED"],
            [
                "istio-egressgateway",
                "istio-system",
                "istio-egressgateway",
                "–",
                "SYNCED",
                "istio-egressgateway SYNCED",
            ],
            [
                "istio-ingressgateway",
                "istio-system",
                "istio-ingressgateway",
                "–",
                "SYNCED",
                "istio-ingressgateway SYNCED",
            ],
        ]
        assert "<b>" not in html and "&lt;b&gt;" in html  # what the control plane says is text, never markup
        assert 'href="http://127.0.0.1:15100"' in html  # the record's admin URL links the proxy
        assert "Ready" in page.cards["card-control-plane"]
        assert "4 / 6 synced" in page.cards["card-proxies"] and "1 NACK" in page.cards["card-proxies"]
        assert "Prometheus" in page.cards["card-prometheus"] and 'href="http://127.0.0.1:49090"' in html

        traces = page.sections["traces"]
        assert traces[0] == ["When", "Service", "Operation", "Duration", "Spans", "Status", "Trace"]
        assert [r[1:6] for r in traces[1:]] == [
            ["api.default", "reviews.default.svc.cluster.local:9080/*", "153µs", "1", "503"],
            ["web.default", "reviews.default.svc.cluster.local:9080/*", "2.50ms", "1", "200"],
        ]
        assert traces[1][0] == "1s ago" and traces[2][0] == "5s ago"
        assert 'href="/console/traces/2222222222222222"' in html
        assert "<script" not in html and "http://" not in html.split("<body>")[0]  # offline: nothing fetched

    asyncio.run(scenario())


def test_without_a_control_plane_every_proxy_is_unknown(tmp_path: Path) -> None:
    async def scenario() -> tuple[dict[str, Any], str]:
        console = Console(ConsoleSettings(port=0, control_plane="http://127.0.0.1:9", project=project(tmp_path)))
        port = await console.start()
        try:
            _, html = await fetch(f"http://127.0.0.1:{port}", "/")
            async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/api/status") as resp:
                return await resp.json(), html
        finally:
            await console.stop()

    data, html = asyncio.run(scenario())
    assert data["controlPlane"]["reachable"] is False
    assert data["controlPlane"]["error"].startswith("cannot connect to 127.0.0.1:9")
    assert {p["state"] for w in data["workloads"] for p in w["proxies"]} == {"UNKNOWN"}
    names = [w["name"] for w in data["workloads"]]
    assert names == ["api-v1", "api-v2", "web", "istio-egressgateway", "istio-ingressgateway"]
    page = read_page(html)
    assert "Unreachable" in page.cards["card-control-plane"]
    assert "Off" in page.cards["card-prometheus"]
    assert "No traces yet" in html


def test_a_proxy_the_mesh_expects_but_the_control_plane_never_saw_is_disconnected(tmp_path: Path) -> None:
    async def scenario() -> dict[str, Any]:
        async with control_plane([status("web", "web", acked="v2")]) as cp:
            console = Console(ConsoleSettings(port=0, control_plane=cp, project=project(tmp_path)))
            port = await console.start()
            try:
                async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/api/status") as resp:
                    data: dict[str, Any] = await resp.json()
                    return data
            finally:
                await console.stop()

    states = {p["node"]: p["state"] for w in asyncio.run(scenario())["workloads"] for p in w["proxies"]}
    assert states == {
        "web": "SYNCED",
        "api-v1-1": "DISCONNECTED",
        "api-v1-2": "DISCONNECTED",
        "api-v2": "DISCONNECTED",
        "istio-ingressgateway": "DISCONNECTED",
        "istio-egressgateway": "DISCONNECTED",
    }


def test_health_endpoints() -> None:
    async def scenario() -> tuple[tuple[int, str], tuple[int, str]]:
        console = Console(ConsoleSettings(port=0))
        port = await console.start()
        try:
            base = f"http://127.0.0.1:{port}"
            return await fetch(base, "/healthz/ready"), await fetch(base, "/api/health")
        finally:
            await console.stop()

    ready, health = asyncio.run(scenario())
    assert ready == (200, "ok")
    assert health[0] == 200 and '"status": "ready"' in health[1] and '"tracing": "builtin"' in health[1]


@pytest.mark.parametrize(
    ("micros", "text"),
    [(None, "-"), (153, "153µs"), (2_500, "2.50ms"), (1_234_567, "1.23s"), (123_000_000, "2m03s")],
)
def test_durations_read_at_a_glance(micros: int | None, text: str) -> None:
    assert format_duration(micros) == text


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0s ago"), (59, "59s ago"), (61, "1m ago"), (7_200, "2h ago"), (2 * 86_400, "2d ago")]
)
def test_ages(seconds: int, text: str) -> None:
    assert format_age(1_000_000_000 * 1_000_000, 1_000_000_000 + seconds) == text
