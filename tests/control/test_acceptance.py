"""Issue 4's acceptance, end to end on 127.0.0.1: the control plane and real sidecars (ProxyAgent:
Sidecar + Subscription, every port 0) carrying traffic to real upstream apps while rules change,
break, get fixed, the control plane dies and comes back, and certificates rotate.

Traffic is a loop of requests through every client sidecar's outbound listener to reviews, whose
three versions run behind their own sidecars: every hop between sidecars is mutual TLS (auto mTLS,
PERMISSIVE by default), and every test asserts that not one request failed.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from factories import BOOKINFO, reviews_to

from sandbox.control.plane import ControlPlane, ControlPlaneSettings
from sandbox.control.server import ControlPlaneServer
from sandbox.control.tokens import TokenAuthority
from sandbox.mesh.topology import Workload
from sandbox.proxy.agent import ProxyAgent
from sandbox.proxy.sidecar import ProxyOptions
from sandbox.xds.identity import ProxyIdentity
from sandbox.xds.messages import Hello

pytestmark = pytest.mark.timeout(120)

CLIENTS = (
    ("productpage-v1", "bookinfo-productpage"),
    ("details-v1", "bookinfo-details"),
    ("ratings-v1", "bookinfo-ratings"),
)
SERVERS = tuple((f"reviews-{v}", "bookinfo-reviews") for v in ("v1", "v2", "v3"))


def save(path: Path, text: str) -> None:
    """An editor's atomic save."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


async def until(predicate: Callable[[], object], timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "not reached in time"
        await asyncio.sleep(0.02)


@dataclass
class Apps:
    """The apps (reviews answer their version), and where the mesh reaches each workload: reviews at
    its sidecar's inbound listener (its port chosen now, listened on by `start_servers`)."""

    apps: dict[str, str]
    inbound: dict[str, int]

    @property
    def endpoints(self) -> dict[str, str]:
        return {**self.apps, **{name: f"127.0.0.1:{port}" for name, port in self.inbound.items()}}


@asynccontextmanager
async def apps() -> AsyncIterator[Apps]:
    """One upstream per reviews version (answering its version) and one per other workload."""
    runners, addresses = [], {}
    for name in ("reviews-v1", "reviews-v2", "reviews-v3", "productpage-v1", "details-v1", "ratings-v1"):
        version = name.rsplit("-", 1)[1]

        async def answer(_request: web.Request, version: str = version) -> web.Response:
            return web.Response(text=version)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", answer)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        runners.append(runner)
        addresses[name] = f"127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield Apps(addresses, {name: free_port() for name, _ in SERVERS})
    finally:
        for runner in runners:
            await runner.cleanup()


def project(tmp_path: Path) -> tuple[Path, Path]:
    istio = tmp_path / "istio"
    istio.mkdir()
    shutil.copy(BOOKINFO / "destination-rule-all.yaml", istio)
    save(istio / "reviews.yaml", reviews_to("v1"))
    compose = tmp_path / "compose.yaml"
    shutil.copy(BOOKINFO / "compose.yaml", compose)
    return istio, compose


async def start_sidecars(url: str, tokens: TokenAuthority) -> list[ProxyAgent]:
    options = ProxyOptions(
        outbound_port=0, inbound_port=0, admin_port=None, stats_port=None, ready_port=0, access_log=None
    )
    return await _start({workload: (sa, options) for workload, sa in CLIENTS}, url, tokens)


async def start_servers(url: str, tokens: TokenAuthority, apps: Apps) -> list[ProxyAgent]:
    """reviews v1-v3's sidecars, each on its inbound port in front of its app."""
    found: dict[str, tuple[str, ProxyOptions]] = {}
    for workload, sa in SERVERS:
        options = ProxyOptions(
            outbound_port=None,
            inbound_port=apps.inbound[workload],
            admin_port=None,
            stats_port=None,
            ready_port=None,
            access_log=None,
            app_address=apps.apps[workload],
        )
        found[workload] = (sa, options)
    return await _start(found, url, tokens)


async def _start(sidecars: dict[str, tuple[str, ProxyOptions]], url: str, tokens: TokenAuthority) -> list[ProxyAgent]:
    agents = []
    for workload, (sa, options) in sidecars.items():
        identity = ProxyIdentity(workload, "default", sa)
        agent = ProxyAgent(options, control_plane=url, hello=Hello(workload, identity, tokens.issue(identity)))
        await agent.start()
        agents.append(agent)
    await until(lambda: all(a.snapshot is not None for a in agents))
    return agents


def served_over_mtls(servers: list[ProxyAgent]) -> set[str]:
    """The connection_security_policy of every request the reviews sidecars served."""
    text = "".join(a.telemetry.prometheus_text() for a in servers)
    return set(re.findall(r'istio_requests_total\{[^}]*connection_security_policy="([a-z_]+)"', text))


@dataclass
class Traffic:
    """Requests to reviews through every sidecar, back to back, until stopped."""

    agents: list[ProxyAgent]
    answers: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def _loop(self, agent: ProxyAgent) -> None:
        proxy = f"http://127.0.0.1:{agent.ports['outbound']}"
        async with aiohttp.ClientSession() as http:
            while not self._stop.is_set():
                try:
                    async with http.get("http://reviews:9080/", proxy=proxy) as r:
                        body = await r.text()
                        if r.status != 200:
                            self.failures.append(f"{r.status} {body[:80]}")
                        else:
                            self.answers.append(body)
                except aiohttp.ClientError as exc:
                    self.failures.append(repr(exc))
                await asyncio.sleep(0.002)

    def start(self) -> Traffic:
        self._tasks = [asyncio.create_task(self._loop(a)) for a in self.agents]
        return self

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    async def settled_on(self, version: str) -> None:
        """Every sidecar now routes to `version` (the last answers of each are all it)."""

        def done() -> bool:
            tail = self.answers[-3 * len(self.agents) :]
            return len(tail) == 3 * len(self.agents) and set(tail) == {version}

        self.answers.clear()
        await until(done)


async def ask_each(agents: list[ProxyAgent]) -> list[str]:
    out = []
    async with aiohttp.ClientSession() as http:
        for agent in agents:
            async with http.get("http://reviews:9080/", proxy=f"http://127.0.0.1:{agent.ports['outbound']}") as r:
                out.append(await r.text())
    return out


def resolver(addresses: dict[str, str]) -> Callable[[Workload, int, int], str]:
    return lambda workload, replica, port: addresses.get(workload.name, f"{workload.name}:{port}")


async def stop_all(agents: list[ProxyAgent]) -> None:
    for agent in agents:
        await agent.stop()


def test_rule_changes_reach_every_sidecar_and_broken_files_never_cost_a_request(tmp_path: Path) -> None:
    istio, compose = project(tmp_path)

    async def scenario() -> None:
        async with apps() as found:
            settings = ControlPlaneSettings(istio, compose, tmp_path / "state", port=0)
            plane = ControlPlane(settings, resolver(found.endpoints))
            plane_server = ControlPlaneServer(plane)
            port = await plane_server.start()
            base = f"http://127.0.0.1:{port}"
            servers = await start_servers(base, plane.tokens, found)
            agents = await start_sidecars(base, plane.tokens)
            assert await ask_each(agents) == ["v1", "v1", "v1"]
            traffic = Traffic(agents).start()

            save(istio / "reviews.yaml", reviews_to("v2"))
            await traffic.settled_on("v2")  # observable at every sidecar

            async with aiohttp.ClientSession() as http:
                for broken, code, line in (
                    (reviews_to("v2") + "  - [\n", "SBX001", 13),  # bad YAML
                    (reviews_to("v9"), "KIA1107", 9),  # a subset no DestinationRule defines
                ):
                    save(istio / "reviews.yaml", broken)
                    status: dict[str, Any] = {}
                    for _ in range(1000):
                        async with http.get(f"{base}/api/v1/files") as r:
                            status = {f["file"]: f for f in (await r.json())["files"]}[str(istio / "reviews.yaml")]
                        if status["state"] == "rejected" and code in {d["code"] for d in status["diagnostics"]}:
                            break
                        await asyncio.sleep(0.01)
                    found = [(d["code"], d["file"], d["line"]) for d in status["diagnostics"] if d["code"] == code]
                    assert found == [(code, str(istio / "reviews.yaml"), line)]
                    assert status["resources"] == ["VirtualService/default/reviews"]  # the last good one, in force
                    await traffic.settled_on("v2")  # still the last good rules
                    async with http.get(f"{base}/debug/syncz") as r:
                        assert {p["state"] for p in await r.json()} == {"SYNCED"}

            save(istio / "reviews.yaml", reviews_to("v3"))
            await traffic.settled_on("v3")  # fixed: it applies
            await traffic.stop()
            assert traffic.failures == []
            assert served_over_mtls(servers) == {"mutual_tls"}
            await stop_all(agents + servers)
            await plane_server.stop()

    asyncio.run(asyncio.wait_for(scenario(), 100))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_killing_the_control_plane_under_traffic_fails_no_request_and_a_restart_resyncs(tmp_path: Path) -> None:
    istio, compose = project(tmp_path)
    state = tmp_path / "state"
    port = free_port()

    async def scenario() -> None:
        async with apps() as found:
            endpoints = tmp_path / "endpoints.json"
            endpoints.write_text("{" + ", ".join(f'"{k}": ["{v}"]' for k, v in found.endpoints.items()) + "}")
            argv = [sys.executable, "-m", "sandbox", "controlplane", "--istio", str(istio), "--compose", str(compose)]
            argv += ["--port", str(port), "--state-dir", str(state), "--endpoints", str(endpoints)]

            async def control_plane() -> subprocess.Popen[bytes]:
                proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                async with aiohttp.ClientSession() as http:
                    for _ in range(1500):
                        try:
                            async with http.get(f"http://127.0.0.1:{port}/ready") as r:
                                if r.status == 200:
                                    return proc
                        except aiohttp.ClientError:
                            pass
                        assert proc.poll() is None, "the control plane exited"
                        await asyncio.sleep(0.02)
                raise AssertionError("the control plane never became ready")

            first = await control_plane()
            tokens = TokenAuthority.load_or_create(state)
            servers = await start_servers(f"http://127.0.0.1:{port}", tokens, found)
            agents = await start_sidecars(f"http://127.0.0.1:{port}", tokens)
            traffic = Traffic(agents).start()
            try:
                await traffic.settled_on("v1")
                first.send_signal(signal.SIGKILL)
                first.wait(10)
                await until(lambda: not any(a.subscription and a.subscription.connected for a in agents))
                count = len(traffic.answers)
                await until(lambda: len(traffic.answers) > count + 50)  # still serving, on the last snapshot
                save(istio / "reviews.yaml", reviews_to("v2"))  # changed while it is down

                second = await control_plane()
                try:
                    await traffic.settled_on("v2")
                    async with aiohttp.ClientSession() as http:
                        for _ in range(1000):
                            async with http.get(f"http://127.0.0.1:{port}/debug/syncz") as r:
                                proxies = await r.json()
                            if len(proxies) == 6 and {p["state"] for p in proxies} == {"SYNCED"}:
                                break
                            await asyncio.sleep(0.02)
                    assert sorted((p["proxy"], p["state"]) for p in proxies) == [
                        (w, "SYNCED") for w in sorted(w for w, _ in CLIENTS + SERVERS)
                    ]
                finally:
                    second.terminate()
                    second.wait(10)
            finally:
                await traffic.stop()
                await stop_all(agents + servers)
                if first.poll() is None:
                    first.kill()
                    first.wait()
            assert traffic.failures == []
            assert served_over_mtls(servers) == {"mutual_tls"}

    asyncio.run(asyncio.wait_for(scenario(), 100))


def test_certificates_rotate_under_traffic_without_a_failed_request(tmp_path: Path) -> None:
    import datetime as dt

    istio, compose = project(tmp_path)

    async def scenario() -> None:
        async with apps() as found:
            settings = ControlPlaneSettings(
                istio, compose, tmp_path / "state", port=0, cert_ttl=dt.timedelta(seconds=2)
            )
            plane = ControlPlane(settings, resolver(found.endpoints))
            plane_server = ControlPlaneServer(plane)
            port = await plane_server.start()
            servers = await start_servers(f"http://127.0.0.1:{port}", plane.tokens, found)
            agents = await start_sidecars(f"http://127.0.0.1:{port}", plane.tokens)
            seen: dict[str, set[int]] = {a.identity.workload: set() for a in agents + servers if a.identity}

            def record() -> bool:
                for a in agents + servers:
                    if a.certificate is not None and a.identity is not None:
                        seen[a.identity.workload].add(a.certificate.serial)
                return all(len(serials) >= 3 for serials in seen.values())

            traffic = Traffic(agents).start()
            await until(record, timeout=30)  # rotated at about half of 2 s, twice, for every sidecar
            await traffic.stop()
            assert traffic.failures == [] and len(traffic.answers) > 100
            assert served_over_mtls(servers) == {"mutual_tls"}  # every request, across the rotations
            assert all(
                a.certificate is not None and a.certificate.spiffe_id.endswith(sa)
                for a, (_, sa) in zip(agents, CLIENTS, strict=True)
            )
            await stop_all(agents + servers)
            await plane_server.stop()

    asyncio.run(asyncio.wait_for(scenario(), 100))
