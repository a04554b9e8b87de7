"""`sandbox proxy --control-plane URL`: a sidecar (and the ingress gateway) configured by push, on 127.0.0.1.

The control plane runs in-process; the sidecar runs as a real process in the first test and
in-process (ProxyAgent, the same code the process runs) in the others.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from dataplane_support import Received, Reply, Upstream, fetch, socket_test
from factories import PLAINTEXT_MESH
from test_server_process import free_ports
from typer.testing import CliRunner

from sandbox.cli import app
from sandbox.control.plane import ControlPlane, ControlPlaneSettings
from sandbox.control.server import ControlPlaneServer
from sandbox.control.tokens import TokenAuthority
from sandbox.proxy.agent import ProxyAgent, push_url
from sandbox.proxy.sidecar import ProxyOptions
from sandbox.xds.identity import ProxyIdentity
from sandbox.xds.messages import Hello

pytestmark = pytest.mark.timeout(90)

COMPOSE = """services:
  web-v1:
    image: x
    labels: {app: web, version: v1}
    expose: ["9080"]
  api-v1:
    image: x
    labels: {app: api, version: v1}
    expose: ["9080"]
"""
GATEWAY = """apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: web-gateway}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: PORT, name: http, protocol: HTTP}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web}
spec:
  hosts: ["*"]
  gateways: [web-gateway]
  http:
  - route:
    - destination: {host: web}
"""


def named(name: str) -> Callable[[Received], Awaitable[Reply]]:
    async def handler(request: Received) -> Reply:
        return Reply(body=name.encode())

    return handler


async def until(predicate: Callable[[], object], timeout: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "not reached in time"
        await asyncio.sleep(0.02)


async def status_of(http: aiohttp.ClientSession, url: str) -> int:
    try:
        async with http.get(url) as response:
            return response.status
    except aiohttp.ClientError:
        return 0


def project(tmp_path: Path, istio_text: str = "") -> tuple[Path, Path]:
    """The workloads' peers are plain test servers, not sidecars: the mesh is plaintext."""
    istio = tmp_path / "istio"
    istio.mkdir()
    (istio / "plaintext.yaml").write_text(PLAINTEXT_MESH)
    if istio_text:
        (istio / "rules.yaml").write_text(istio_text)
    compose = tmp_path / "compose.yaml"
    compose.write_text(COMPOSE)
    return istio, compose


@socket_test
async def test_a_sidecar_process_is_ready_only_once_the_control_plane_configured_it(tmp_path: Path) -> None:
    istio, compose = project(tmp_path)
    endpoints = tmp_path / "endpoints.json"
    state = tmp_path / "state"
    token = TokenAuthority.load_or_create(state).issue(ProxyIdentity("web-v1", "default", "web"))
    cp_port, outbound, inbound, admin, stats, ready = free_ports(6)
    async with Upstream(named("api-a")) as api_a, Upstream(named("api-b")) as api_b, Upstream(named("app")) as app_:
        endpoints.write_text(json.dumps({"api-v1": [api_a.address]}))
        argv = [sys.executable, "-m", "sandbox", "proxy", "--control-plane", f"http://127.0.0.1:{cp_port}"]
        argv += ["--workload", "web-v1", "--node", "web-v1-1", "--service-account", "web"]
        argv += ["--outbound-port", str(outbound), "--inbound-port", str(inbound), "--admin-port", str(admin)]
        argv += ["--stats-port", str(stats), "--ready-port", str(ready), "--app-address", app_.address]
        argv += ["--access-log", "off"]
        env = {**os.environ, "SANDBOX_TOKEN": token}
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        plane = None
        try:
            async with aiohttp.ClientSession() as http:
                probe = f"http://127.0.0.1:{ready}/healthz/ready"
                deadline = asyncio.get_running_loop().time() + 20
                while (code := await status_of(http, probe)) == 0:  # not listening yet
                    assert proc.poll() is None and asyncio.get_running_loop().time() < deadline
                    await asyncio.sleep(0.05)
                assert code == 503  # no control plane yet: not ready
                settings = ControlPlaneSettings(istio, compose, state, port=cp_port, endpoints_file=endpoints)
                plane = ControlPlane(settings)
                plane_server = ControlPlaneServer(plane)
                await plane_server.start()
                while await status_of(http, probe) != 200:
                    assert proc.poll() is None and asyncio.get_running_loop().time() < deadline
                    await asyncio.sleep(0.05)
                response = await fetch(outbound, "http://api:9080/x", host="api:9080")
                assert (response.status, response.body) == (200, b"api-a")
                response = await fetch(inbound, "/", host="web:9080")  # --app-address wins over the snapshot's
                assert (response.status, response.body) == (200, b"app")

                endpoints.write_text(json.dumps({"api-v1": [api_b.address]}))  # re-read on change
                for _ in range(300):
                    response = await fetch(outbound, "http://api:9080/x", host="api:9080")
                    if response.body == b"api-b":
                        break
                    await asyncio.sleep(0.02)
                assert response.body == b"api-b"

                async with http.get(f"http://127.0.0.1:{admin}/certs") as r:
                    certs = await r.json()
                    raw = json.dumps(certs)
                chain = certs["certificates"][0]["cert_chain"][0]
                assert chain["subject_alt_names"] == [{"uri": "spiffe://cluster.local/ns/default/sa/web"}]
                assert chain["serial_number"] and chain["expiration_time"] and "PRIVATE" not in raw
                (root,) = certs["certificates"][0]["ca_cert"]  # the mesh root it trusts
                assert root["serial_number"] == f"{plane.ca.root_cert.serial_number:x}"
                assert [p["proxy"] for p in plane.push.sync_status()] == ["web-v1-1"]
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if plane is not None:
                await plane_server.stop()
    assert proc.stderr is not None
    assert "Traceback" not in proc.stderr.read().decode()


@socket_test
async def test_the_gateway_listens_on_each_gateway_port_and_follows_changes(tmp_path: Path) -> None:
    istio, compose = project(tmp_path, GATEWAY.replace("PORT", "80"))
    async with Upstream(named("web")) as web:
        plane = ControlPlane(
            ControlPlaneSettings(istio, compose, tmp_path / "state", port=0),
            endpoints=lambda w, replica, port: web.address,
        )
        plane_server = ControlPlaneServer(plane)
        port = await plane_server.start()
        me = ProxyIdentity("istio-ingressgateway", "istio-system", "istio-ingressgateway-service-account")
        options = ProxyOptions(admin_port=0, stats_port=0, ready_port=0, access_log=None, port_map=((80, 0), (8081, 0)))
        ident = Hello("gw", ProxyIdentity(me.workload, me.namespace, me.service_account), plane.tokens.issue(me))
        agent = ProxyAgent(options, control_plane=f"http://127.0.0.1:{port}", hello=ident)
        await agent.start()
        try:
            await until(lambda: "gateway.80" in agent.ports)
            assert "outbound" not in agent.ports and "inbound" not in agent.ports  # a router has no 15001/15006
            first = agent.ports["gateway.80"]
            response = await fetch(first, "/", host="anything.example.com")
            assert (response.status, response.body) == (200, b"web")
            async with aiohttp.ClientSession() as http:  # the live agent's admin counters, as Envoy's /stats
                resp = await http.get(f"http://127.0.0.1:{agent.ports['admin']}/stats")
                counters = dict(line.rsplit(": ", 1) for line in (await resp.text()).splitlines() if line.strip())
            assert resp.status == 200 and all(value.isdigit() for value in counters.values()), counters
            assert sorted(v for k, v in counters.items() if k.endswith(".upstream_rq_total")).pop() == "1", counters

            rules = istio / "rules.yaml"
            tmp = rules.with_name(".rules.tmp")
            tmp.write_text(GATEWAY.replace("PORT", "8081"))
            os.replace(tmp, rules)
            await until(lambda: "gateway.8081" in agent.ports and "gateway.80" not in agent.ports)
            response = await fetch(agent.ports["gateway.8081"], "/", host="localhost:8081")
            assert (response.status, response.body) == (200, b"web")
            with pytest.raises(OSError):
                await fetch(first, "/")
        finally:
            await agent.stop()
            await plane_server.stop()


@socket_test
async def test_a_sidecar_with_another_workloads_token_never_becomes_ready(tmp_path: Path) -> None:
    istio, compose = project(tmp_path)
    plane = ControlPlane(ControlPlaneSettings(istio, compose, tmp_path / "state", port=0))
    plane_server = ControlPlaneServer(plane)
    port = await plane_server.start()
    stolen = plane.tokens.issue(ProxyIdentity("api-v1", "default", "api"))
    options = ProxyOptions(outbound_port=0, inbound_port=0, admin_port=0, stats_port=0, ready_port=0)
    agent = ProxyAgent(
        options,
        control_plane=f"127.0.0.1:{port}",
        hello=Hello("web-v1", ProxyIdentity("web-v1", "default", "web"), stolen),
    )
    await agent.start()
    try:
        assert agent.subscription is not None
        await until(lambda: "4401" in agent.subscription.last_error)  # type: ignore[union-attr]
        async with aiohttp.ClientSession() as http:
            assert await status_of(http, f"http://127.0.0.1:{agent.ports['ready']}/healthz/ready") == 503
        assert agent.snapshot is None and agent.certificate is None and plane.push.stats.refused >= 1
    finally:
        await agent.stop()
        await plane_server.stop()


def test_push_url_adds_the_push_path_only_when_none_is_given() -> None:
    assert push_url("http://127.0.0.1:15010") == "http://127.0.0.1:15010/v1/push"
    assert push_url("istiod:15010") == "http://istiod:15010/v1/push"
    assert push_url("ws://cp:1/custom") == "ws://cp:1/custom"


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["proxy"], {}, "pass --snapshot FILE or --control-plane URL"),
        (["proxy", "--control-plane", "http://x:1", "--workload", "w", "--service-account", "s"], {}, "SANDBOX_TOKEN"),
        (["proxy", "--control-plane", "http://x:1"], {"SANDBOX_TOKEN": "t"}, "--workload and --service-account"),
        (["proxy", "--snapshot", "s.json", "--port-map", "80:8080"], {}, "GWPORT=BINDPORT"),
        (["proxy", "--snapshot", "s.json", "--app-address", "9080"], {}, "HOST:PORT"),
    ],
)
def test_unusable_proxy_options_are_usage_errors(argv: list[str], env: dict[str, str], message: str) -> None:
    result = CliRunner().invoke(app, argv, env={"SANDBOX_TOKEN": "", **env})
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_a_port_already_taken_is_exit_2_naming_it(tmp_path: Path) -> None:
    import socket

    from dataplane_support import compose_for, mesh_snapshot

    snapshot = tmp_path / "s.json"
    compose = compose_for(("web-v1", "web", "v1"))
    snapshot.write_text(mesh_snapshot(compose, "", "web-v1", {}).to_json())
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = [sys.executable, "-m", "sandbox", "proxy", "--snapshot", str(snapshot), "--outbound-port", str(port)]
        for name in ("inbound", "admin", "stats", "ready"):
            argv += [f"--{name}-port", "0"]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert f"error: cannot listen on 127.0.0.1:{port} (outbound)" in result.stderr and "Traceback" not in result.stderr


@socket_test
async def test_a_gateway_port_that_cannot_be_bound_is_nacked_and_the_others_serve(tmp_path: Path) -> None:
    import socket

    two_servers = GATEWAY.replace(
        '  - port: {number: PORT, name: http, protocol: HTTP}\n    hosts: ["*"]\n',
        '  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: ["*"]\n'
        '  - port: {number: 8082, name: http-2, protocol: HTTP}\n    hosts: ["*"]\n',
    )
    istio, compose = project(tmp_path, two_servers)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        async with Upstream(named("web")) as web:
            plane = ControlPlane(
                ControlPlaneSettings(istio, compose, tmp_path / "state", port=0),
                endpoints=lambda w, replica, port: web.address,
            )
            plane_server = ControlPlaneServer(plane)
            port = await plane_server.start()
            me = ProxyIdentity("istio-ingressgateway", "istio-system", "istio-ingressgateway-service-account")
            options = ProxyOptions(
                admin_port=0, stats_port=0, ready_port=0, access_log=None, port_map=((80, 0), (8082, busy))
            )
            ident = Hello("gw", ProxyIdentity(me.workload, me.namespace, me.service_account), plane.tokens.issue(me))
            agent = ProxyAgent(options, control_plane=f"http://127.0.0.1:{port}", hello=ident)
            await agent.start()
            try:
                await until(lambda: plane.push.proxies.get("gw") is not None and plane.push.proxies["gw"].nack_reason)
                reason = plane.push.proxies["gw"].nack_reason
                assert f"cannot listen on 127.0.0.1:{busy} (Gateway port 8082)" in reason
                response = await fetch(agent.ports["gateway.80"], "/", host="example.com")
                assert (response.status, response.body) == (200, b"web")  # the port it could open serves
            finally:
                await agent.stop()
                await plane_server.stop()
