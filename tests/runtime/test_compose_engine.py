"""The compose runtime on a real Docker engine, driven through the CLI as a user drives it.

The small mesh (web -> api v1/v2, two services and three workloads, web under iptables
interception) comes up with `sandbox up --runtime compose --detach`; traffic goes in through the
ingress gateway and between sidecars; a routing edit on the host applies; Prometheus has
istio_requests_total for it; `sandbox down` leaves no container or network of the project.

Slow by nature (the image may be rebuilt, and the vfs storage driver copies the image for every
container): one mesh per module. Needs an engine (CI runs ../shared/docker/ensure-engine).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox.runtime.project import find_project, read_record
from sandbox.scaffold import create
from tests.conftest import require

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]

COMPOSE = """
x-sandbox:
  ingress: {{port: {port}}}

x-app: &app
  image: sandbox:latest
  command: [python3, /app/app.py]
  volumes: ["./apps:/app:ro"]

services:
  web:
    <<: *app
    labels: {{app: web, version: v1}}
    environment: {{SERVICE: web, VERSION: v1, HOST: 0.0.0.0, PORT: "8000", UPSTREAM: "http://api:9080/"}}
    x-sandbox: {{port: 8000, interception: iptables}}
  api-v1:
    <<: *app
    labels: {{app: api, version: v1}}
    environment: {{SERVICE: api, VERSION: v1, HOST: 0.0.0.0, PORT: "9080"}}
    x-sandbox: {{port: 9080, serviceAccount: api}}
  api-v2:
    <<: *app
    labels: {{app: api, version: v2}}
    environment: {{SERVICE: api, VERSION: v2, HOST: 0.0.0.0, PORT: "9080"}}
    x-sandbox: {{port: 9080, serviceAccount: api}}
"""
ALL_TO_V2 = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: api
spec:
  hosts: [api]
  http:
  - route:
    - destination: {host: api, subset: v2}
"""


def engine_ready() -> bool:
    try:
        from sandbox.runtime.compose import compose_command
        from sandbox.runtime.docker_engine import engine_available

        compose_command()
    except Exception:
        return False
    return engine_available()


def sandbox(*args: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "sandbox", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError as exc:
        return 0, str(exc)


def poll(check: Callable[[], Any], deadline: float, what: str) -> Any:
    """`check()` until it returns something truthy or `deadline` seconds pass."""
    end = time.monotonic() + deadline
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > end:
            pytest.fail(f"{what} within {deadline:.0f} s")
        time.sleep(0.5)


class Mesh:
    def __init__(self, directory: Path, ingress: str) -> None:
        self.directory = directory
        self.compose = directory / "compose.yaml"
        self.ingress = ingress

    @property
    def record(self) -> Any:
        record = read_record(find_project(self.compose))
        assert record is not None, "no mesh record"
        return record

    def versions(self, count: int) -> list[str]:
        seen = []
        for _ in range(count):
            status, body = get(self.ingress + "/")
            assert status == 200, body
            seen.append(json.loads(body)["upstream"]["version"])
        return seen


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    require(engine_ready(), "no Docker engine with Compose (run ../shared/docker/ensure-engine)")
    # The directory's name is the Compose project's: unique per run, so parallel runs never share one.
    directory = tmp_path_factory.mktemp(f"composemesh-{os.getpid()}-{secrets.token_hex(3)}", numbered=False)
    create(directory, force=True)
    port = free_port()
    (directory / "compose.yaml").write_text(COMPOSE.format(port=port))
    began = time.monotonic()
    up = sandbox("up", "--runtime", "compose", "--detach", "-f", str(directory / "compose.yaml"))
    ready_in = time.monotonic() - began
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        print(f"\nsandbox up --runtime compose --detach: ready in {ready_in:.1f} s")
        yield Mesh(directory, f"http://127.0.0.1:{port}")
    finally:
        sandbox("down", "-f", str(directory / "compose.yaml"), timeout=900)


def test_up_reports_every_component_and_the_urls(mesh: Mesh) -> None:
    record = mesh.record
    assert record.runtime == "compose"
    assert record.urls["ingress"] == mesh.ingress
    assert {p.node for p in record.proxies} == {
        "web",
        "api-v1",
        "api-v2",
        "istio-ingressgateway",
        "istio-egressgateway",
    }
    for proxy in record.proxies:  # each sidecar's admin port, published on an ephemeral host port
        assert get(proxy.admin + "/ready")[0] == 200, proxy


def test_traffic_through_the_ingress_reaches_both_versions(mesh: Mesh) -> None:
    seen = poll(lambda: {*mesh.versions(10)} >= {"v1", "v2"} and True, 60, "both api versions answered")
    assert seen


def test_a_routing_edit_on_the_host_applies(mesh: Mesh) -> None:
    (mesh.directory / "istio" / "virtual-service.yaml").write_text(ALL_TO_V2)
    began = time.monotonic()
    poll(lambda: set(mesh.versions(5)) == {"v2"}, 30, "all traffic moved to v2")
    assert set(mesh.versions(20)) == {"v2"}
    print(f"\nrouting edit applied in {time.monotonic() - began:.2f} s")


def test_prometheus_has_istio_requests_total_for_the_traffic(mesh: Mesh) -> None:
    prometheus = mesh.record.urls["prometheus"]
    assert prometheus
    query = urllib.parse.quote("sum by (source_workload, destination_workload) (istio_requests_total)")

    def pairs() -> set[tuple[str, str]]:
        status, body = get(f"{prometheus}/api/v1/query?query={query}")
        if status != 200:
            return set()
        return {
            (r["metric"]["source_workload"], r["metric"]["destination_workload"])
            for r in json.loads(body)["data"]["result"]
        }

    wanted = {("istio-ingressgateway", "web"), ("web", "api-v1"), ("web", "api-v2")}
    poll(lambda: pairs() >= wanted, 60, f"Prometheus showing {sorted(wanted)}")


def test_status_and_logs_read_the_engine(mesh: Mesh) -> None:
    status = sandbox("status", "-f", str(mesh.compose), "--output", "json", timeout=60)
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert report["runtime"] == "compose"
    workloads = {w["name"]: w for w in report["workloads"]}
    assert (workloads["api-v2"]["ready"], workloads["api-v2"]["sync"]) == (True, "SYNCED")
    # `address`: the sidecar's inbound listener on the project network (reachable from the host on Linux)
    address = workloads["api-v2"]["address"]
    assert address.endswith(":15006"), address
    status_code, body = get(f"http://{address}/")
    assert status_code == 200 and json.loads(body)["version"] == "v2", body
    logs = sandbox("logs", "web", "--proxy", "--tail", "50", "-f", str(mesh.compose), timeout=60)
    assert logs.returncode == 0, logs.stderr
    assert '"GET / HTTP/1.1" 200' in logs.stdout  # the sidecar's access log


def test_sidecars_run_the_hosts_compiled_data_path_where_it_fits(mesh: Mesh) -> None:
    """The image carries the host's mypyc build; the offline image's Python (Debian 12's 3.11) runs it
    when the host's is 3.11 too. Anywhere else the sidecars say they run pure Python, and still serve."""
    from sandbox.proxy import native
    from sandbox.runtime.docker_engine import Engine
    from sandbox.runtime.image import ImageSettings

    logs = sandbox("logs", "api-v1", "--proxy", "--tail", "100000", "-f", str(mesh.compose), timeout=60)
    assert logs.returncode == 0, logs.stderr
    ready = [line for line in logs.stdout.splitlines() if "sandbox proxy api-v1 ready:" in line]
    assert ready, logs.stdout[-2000:]
    settings = ImageSettings.from_env()
    offline = settings.build_mode != "online" and Engine.connect().image_id(settings.offline_base) is not None
    fits = native.status(native.HERE, env={})[0] and sys.version_info[:2] == (3, 11) and offline
    if fits:
        assert "data path compiled (mypyc)" in ready[-1], ready[-1]
    else:
        assert "data path compiled (mypyc)" in ready[-1] or "data path pure Python" in ready[-1], ready[-1]


def test_down_removes_every_container_and_network(mesh: Mesh) -> None:
    from sandbox.runtime.docker_engine import Engine

    project = find_project(mesh.compose)
    engine = Engine.connect()
    assert engine.containers(project.name)
    down = sandbox("down", "-f", str(mesh.compose), timeout=900)
    assert down.returncode == 0, down.stderr
    assert engine.containers(project.name) == []
    assert engine.networks(project.name) == []
    assert read_record(project) is None
