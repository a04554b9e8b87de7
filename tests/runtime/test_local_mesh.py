"""Acceptance: a small mesh (two services, three workloads) on the local runtime, driven through the
CLI as a user would: `up --detach`, traffic through the ingress, a routing edit, a crash, `down`."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(120)

APP = '''\
"""A tiny app: answers "<name> <version>", and with UPSTREAM set appends what that service said."""
import os, sys, urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NAME, VERSION = sys.argv[1], sys.argv[2]
UPSTREAM = os.environ.get("UPSTREAM")
if os.environ.get("CRASH"):
    print("boom: this app cannot start", flush=True)
    sys.exit(3)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = f"{NAME} {VERSION}"
        if UPSTREAM:  # through HTTP_PROXY, i.e. the sidecar (urllib reads it)
            with urllib.request.urlopen(f"http://{UPSTREAM}/", timeout=5) as answer:
                body += " -> " + answer.read().decode()
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
'''

COMPOSE = """\
x-sandbox:
  ingress: {{port: {ingress}}}
services:
  web-v1:
    labels: {{app: web, version: v1}}
    x-sandbox:
      port: 8000
      local: {{command: [python3, apps/app.py, web, v1], env: {{UPSTREAM: "api:9000"}}}}
  api-v1:
    labels: {{app: api, version: v1}}
    x-sandbox:
      port: 9000
      local: {{command: [python3, apps/app.py, api, v1]}}
  api-v2:
    labels: {{app: api, version: v2}}
    x-sandbox:
      port: 9000
      local: {{command: [python3, apps/app.py, api, v2]}}
"""

GATEWAY = """\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: web-gateway}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
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
    - destination: {host: web, port: {number: 8000}}
"""

API_TO_V2 = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: api}
spec:
  host: api
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: api}
spec:
  hosts: [api]
  http:
  - route:
    - destination: {host: api, subset: v2}
"""

CONVERGENCE_LIMIT = 1.0  # seconds from the file write to every sidecar SYNCED (the target is 0.1 s p99)


def sandbox(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sandbox", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def processes_of(directory: Path) -> list[str]:
    """Every live process whose working directory or command line is inside `directory` (each
    process of a local mesh is one or the other), as "pid command"."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or not alive(int(entry.name)):
            continue
        try:
            cwd = os.readlink(entry / "cwd")
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if cwd.startswith(str(directory)) or str(directory) in command:
            found.append(f"{entry.name} {command}")
    return found


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return str(answer.read().decode())


@dataclass
class Mesh:
    directory: Path
    ingress: str
    up_output: str

    @property
    def compose(self) -> str:
        return str(self.directory / "compose.yaml")

    def processes(self) -> list[dict[str, object]]:
        data = json.loads((self.directory / ".sandbox" / "local" / "processes.json").read_text())
        return list(data["processes"])

    def all_pids(self) -> list[int]:
        data = json.loads((self.directory / ".sandbox" / "local" / "processes.json").read_text())
        return [int(data["supervisor"]), *(int(p) for row in data["processes"] for p in row["pids"])]

    def status(self) -> dict[str, object]:
        result = sandbox("status", "-f", self.compose, "--output", "json")
        data: dict[str, object] = json.loads(result.stdout)
        return data


def write_project(directory: Path, ingress: int, compose: str = COMPOSE) -> None:
    (directory / "apps").mkdir()
    (directory / "apps" / "app.py").write_text(APP)
    (directory / "istio").mkdir()
    (directory / "istio" / "gateway.yaml").write_text(GATEWAY)
    (directory / "compose.yaml").write_text(compose.format(ingress=ingress))


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    directory = tmp_path_factory.mktemp("mesh")
    port = free_port()
    write_project(directory, port)
    result = sandbox("up", "--detach", "--runtime", "local", "-f", str(directory / "compose.yaml"), "--timeout", "45")
    try:
        assert result.returncode == 0, result.stdout + result.stderr
        yield Mesh(directory, f"http://127.0.0.1:{port}", result.stdout)
    finally:
        if (directory / ".sandbox" / "local" / "supervisor.pid").exists():  # a test failed before `down`
            sandbox("down", "-f", str(directory / "compose.yaml"))


def test_up_reports_each_component_and_ends_with_the_urls(mesh: Mesh) -> None:
    gateways = ("istio-ingressgateway", "istio-egressgateway")
    for component in ("controlplane", "web-v1", "web-v1.proxy", "api-v2.proxy", *gateways):
        assert any(line.split()[:2] == [component, "ready"] for line in mesh.up_output.splitlines()), component
    assert f"ingress     {mesh.ingress}" in mesh.up_output
    assert "Stop it with: sandbox down" in mesh.up_output


def test_a_second_up_says_the_mesh_is_already_running(mesh: Mesh) -> None:
    again = sandbox("up", "--detach", "--runtime", "local", "-f", mesh.compose)
    assert again.returncode == 1 and "is already running (local runtime)" in again.stderr


def test_traffic_through_the_ingress_reaches_every_version(mesh: Mesh) -> None:
    seen = {get(mesh.ingress + "/") for _ in range(20)}
    assert seen == {"web v1 -> api v1", "web v1 -> api v2"}


def test_status_shows_every_workload_ready_and_synced(mesh: Mesh) -> None:
    status = mesh.status()
    assert status["runtime"] == "local" and status["running"] is True
    assert status["urls"]["ingress"] == mesh.ingress  # type: ignore[index]
    workloads = {w["name"]: w for w in status["workloads"]}  # type: ignore[attr-defined]
    assert set(workloads) == {"web-v1", "api-v1", "api-v2", "istio-ingressgateway", "istio-egressgateway"}
    assert all(w["ready"] and w["sync"] == "SYNCED" for w in workloads.values()), workloads
    assert (workloads["api-v2"]["app"], workloads["api-v2"]["version"]) == ("api", "v2")
    # `address`: where a client outside the mesh reaches each sidecar's inbound listener (plaintext
    # passes under Istio's default PERMISSIVE), and the gateway's listener
    assert get(f"http://{workloads['api-v2']['address']}/") == "api v2"
    assert get(f"http://{workloads['web-v1']['address']}/").startswith("web v1 -> api v")
    assert f"http://{workloads['istio-ingressgateway']['address']}" == mesh.ingress
    rows = [line.split() for line in sandbox("status", "-f", mesh.compose).stdout.splitlines()]
    assert ["api-v1", "api", "v1", "default", "1/1", "SYNCED", workloads["api-v1"]["address"]] in rows


def test_status_gives_the_console_url_with_the_meshs_token(mesh: Mesh) -> None:
    token_file = mesh.directory / ".sandbox" / "state" / "console-token"
    assert token_file.stat().st_mode & 0o777 == 0o600
    url = str(mesh.status()["urls"]["console"])  # type: ignore[index]
    assert url.endswith(f"/console/overview?token={token_file.read_text().strip()}"), url
    record = json.loads((mesh.directory / ".sandbox" / "mesh.json").read_text())
    assert "token" not in json.dumps(record) and token_file.read_text().strip() not in json.dumps(record)
    assert "token" not in (mesh.directory / ".sandbox" / "logs" / "console.log").read_text()


def test_logs_show_a_sidecars_access_log(mesh: Mesh) -> None:
    get(mesh.ingress + "/")
    result = sandbox("logs", "api-v1", "--proxy", "-f", mesh.compose)
    assert result.returncode == 0
    assert '"GET / HTTP/1.1" 200' in result.stdout
    unknown = sandbox("logs", "nope", "-f", mesh.compose)
    assert unknown.returncode == 2 and "api-v1" in unknown.stderr


def test_a_routing_edit_applies_within_the_convergence_target(mesh: Mesh) -> None:
    control_plane = json.loads((mesh.directory / ".sandbox" / "mesh.json").read_text())["control_plane"]

    def versions() -> dict[str, str]:
        rows = json.loads(get(control_plane + "/debug/syncz"))
        return {r["proxy"]: r["versionAcked"] for r in rows if r["state"] == "SYNCED"}

    before = versions()
    began = time.monotonic()
    (mesh.directory / "istio" / "api.yaml").write_text(API_TO_V2)
    web_synced = None
    while time.monotonic() - began < 5:
        now = versions()
        if now.get("web-v1") and now["web-v1"] != before.get("web-v1") and set(now) == set(before):
            web_synced = time.monotonic() - began
            break
        time.sleep(0.01)
    assert web_synced is not None and web_synced < CONVERGENCE_LIMIT, web_synced
    waited = sandbox("wait", "--synced", "-f", mesh.compose, "--timeout", "10s")  # what a script would do
    assert waited.returncode == 0, waited.stdout + waited.stderr
    assert {get(mesh.ingress + "/") for _ in range(10)} == {"web v1 -> api v2"}


def test_a_crashed_app_is_restarted(mesh: Mesh) -> None:
    [row] = [r for r in mesh.processes() if r["name"] == "api-v1"]
    os.kill(int(row["pid"]), signal.SIGKILL)  # type: ignore[call-overload]
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        [row] = [r for r in mesh.processes() if r["name"] == "api-v1"]
        if row["restarts"] == 1 and row["phase"] == "ready":
            break
        time.sleep(0.1)
    assert (row["restarts"], row["phase"]) == (1, "ready")
    log = (mesh.directory / ".sandbox" / "logs" / "api-v1.log").read_text()
    assert "api-v1 exited with status -9; restart #1" in log


def test_sidecars_speak_mutual_tls_and_no_workload_key_is_on_disk(mesh: Mesh) -> None:
    get(mesh.ingress + "/")
    record = json.loads((mesh.directory / ".sandbox" / "mesh.json").read_text())
    [api] = [p for p in record["proxies"] if p["workload"] == "api-v1"]
    certs = json.loads(get(api["admin"] + "/certs"))
    [chain] = certs["certificates"][0]["cert_chain"]
    assert chain["subject_alt_names"] == [{"uri": "spiffe://cluster.local/ns/default/sa/api"}]
    [row] = [r for r in mesh.processes() if r["name"] == "api-v1.proxy"]
    # web's sidecar reached api's over mutual TLS: the SNI Istio's client sets (REQUESTED_SERVER_NAME)
    log = sandbox("logs", "api-v1", "--proxy", "-f", mesh.compose).stdout
    assert re.search(r" outbound_\.\d+_\._\.api\.default\.svc\.cluster\.local ", log), log[-2000:]
    # Every key on disk is the mesh CA's root key, owner-only; a sidecar's own key lives in its memory.
    keys = [p for p in mesh.directory.rglob("*") if p.is_file() and b"PRIVATE KEY" in p.read_bytes()]
    assert keys == [mesh.directory / ".sandbox" / "state" / "root-key.pem"]
    assert keys[0].stat().st_mode & 0o777 == 0o600
    for pid in row["pids"]:  # nor does the sidecar hold a key file open
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            target = os.readlink(fd)
            if target.startswith("/") and Path(target).is_file():
                assert b"PRIVATE KEY" not in Path(target).read_bytes(), target


def test_down_leaves_no_process_behind(mesh: Mesh) -> None:
    pids = mesh.all_pids()
    assert all(alive(pid) for pid in pids[:1])
    result = sandbox("down", "-f", mesh.compose)
    assert result.returncode == 0, result.stderr
    assert [pid for pid in pids if alive(pid)] == []
    assert processes_of(mesh.directory) == []
    assert not (mesh.directory / ".sandbox" / "mesh.json").exists()
    after = sandbox("status", "-f", mesh.compose)
    assert after.returncode == 1 and "No mesh is running" in after.stdout


def test_a_component_that_does_not_become_ready_stops_everything(tmp_path: Path) -> None:
    crashing = COMPOSE.split("  api-v1:")[0].replace('env: {{UPSTREAM: "api:9000"}}', 'env: {{CRASH: "1"}}')
    write_project(tmp_path, free_port(), crashing)
    result = sandbox("up", "--detach", "--runtime", "local", "-f", str(tmp_path / "compose.yaml"))
    assert result.returncode == 1
    assert "web-v1 did not become ready: it exited with status 3" in result.stderr
    assert "boom: this app cannot start" in result.stderr  # the tail of its log
    assert "Everything that was started has been stopped." in result.stderr
    assert processes_of(tmp_path) == []
    assert not (tmp_path / ".sandbox" / "mesh.json").exists()


def test_a_taken_ingress_port_stops_up_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        write_project(tmp_path, port)
        result = sandbox("up", "--detach", "--runtime", "local", "-f", str(tmp_path / "compose.yaml"))
    assert result.returncode == 1
    assert "compose.yaml:2:" in result.stderr and "SBX504" in result.stderr
    assert f"host port {port}" in result.stderr and f"pid {os.getpid()}" in result.stderr
    assert "nothing was started" in result.stderr
    assert processes_of(tmp_path) == []


def test_ctrl_c_on_a_foreground_up_stops_everything(tmp_path: Path) -> None:
    """(SIGTERM takes the same path: test_lifecycle_cli.py checks it becomes the same interrupt.)"""
    one = COMPOSE.split("  api-v1:")[0].replace(', env: {UPSTREAM: "api:9000"}', "")
    write_project(tmp_path, free_port(), one)
    up = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "up", "--runtime", "local", "-f", str(tmp_path / "compose.yaml")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert up.stdout is not None
        for line in up.stdout:
            if line.startswith("Press Ctrl-C"):
                break
        else:
            pytest.fail(f"up ended early: {up.wait()} {up.stderr.read() if up.stderr else ''}")
        pids = Mesh(tmp_path, "", "").all_pids()
        assert all(alive(pid) for pid in pids)
        up.send_signal(signal.SIGINT)
        rest, _ = up.communicate(timeout=30)
    finally:
        if up.poll() is None:
            up.kill()
    assert up.returncode == 0 and "Stopped." in rest
    assert [pid for pid in pids if alive(pid)] == []
    assert processes_of(tmp_path) == []
