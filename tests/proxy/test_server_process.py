"""`sandbox proxy --snapshot FILE` as a process: serves, answers admin probes, exits cleanly on SIGTERM."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from dataplane_support import Upstream, compose_for, fetch, mesh_snapshot, running_sidecar, socket_test

from sandbox.control.ca import MeshCA
from sandbox.xds.certificate import WorkloadCertificate

pytestmark = pytest.mark.timeout(60)

COMPOSE = compose_for(("productpage-v1", "productpage", "v1"), ("reviews-v1", "reviews", "v1"))


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else "exited"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"port {port} never opened")


@socket_test
async def test_proxy_process_serves_until_sigterm(tmp_path: Path) -> None:
    async with Upstream() as up:
        snapshot_file = tmp_path / "snapshot.json"
        snapshot_file.write_text(mesh_snapshot(COMPOSE, "", "productpage-v1", {"reviews-v1": up.address}).to_json())
        outbound, inbound, admin, stats, ready = free_ports(5)
        log = tmp_path / "access.log"
        argv = [sys.executable, "-m", "sandbox", "proxy", "--snapshot", str(snapshot_file)]
        argv += ["--outbound-port", str(outbound), "--inbound-port", str(inbound), "--admin-port", str(admin)]
        argv += ["--stats-port", str(stats), "--ready-port", str(ready), "--access-log", str(log)]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            wait_port(outbound, proc)
            wait_port(ready, proc)
            response = await fetch(outbound, "http://reviews:9080/p", host="x")
            assert response.status == 200
            with urllib.request.urlopen(f"http://127.0.0.1:{ready}/healthz/ready", timeout=5) as probe:
                assert probe.status == 200
            with urllib.request.urlopen(f"http://127.0.0.1:{stats}/stats/prometheus", timeout=5) as scrape:
                assert b"istio_requests_total" in scrape.read()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert '"GET /p HTTP/1.1" 200' in log.read_text()  # flushed on the way out


def test_unreadable_snapshot_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"identity": 3}')
    result = subprocess.run(
        [sys.executable, "-m", "sandbox", "proxy", "--snapshot", str(bad)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {bad}: ")
    assert "Traceback" not in result.stderr


def write_certs(directory: Path, cert: WorkloadCertificate) -> Path:
    directory.mkdir()
    (directory / "cert-chain.pem").write_text(cert.cert_chain)
    (directory / "key.pem").write_text(cert.private_key)
    (directory / "root-cert.pem").write_text(cert.root_cert)
    return directory


@socket_test
async def test_certs_give_a_snapshot_only_sidecar_its_identity_for_mutual_tls(tmp_path: Path) -> None:
    ca = MeshCA.load_or_create(tmp_path / "ca")
    async with Upstream() as app:
        snapshot_file = tmp_path / "server.json"
        server = mesh_snapshot(COMPOSE, "", "reviews-v1", {}, app_address=app.address, mtls=True)
        snapshot_file.write_text(server.to_json())
        outbound, inbound, admin, stats, ready = free_ports(5)
        argv = [sys.executable, "-m", "sandbox", "proxy", "--snapshot", str(snapshot_file), "--access-log", "off"]
        argv += ["--certs", str(write_certs(tmp_path / "certs", ca.issue("default", "reviews")))]
        argv += ["--outbound-port", str(outbound), "--inbound-port", str(inbound), "--admin-port", str(admin)]
        argv += ["--stats-port", str(stats), "--ready-port", str(ready)]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            wait_port(inbound, proc)
            client = mesh_snapshot(COMPOSE, "", "productpage-v1", {"reviews-v1": f"127.0.0.1:{inbound}"}, mtls=True)
            async with running_sidecar(client, ca.issue("default", "productpage")) as sidecar:
                assert (await fetch(sidecar.outbound, "/r", host="reviews:9080")).status == 200
            assert (
                app.requests[-1]
                .headers["x-forwarded-client-cert"]
                .startswith("By=spiffe://cluster.local/ns/default/sa/reviews;")
            )
            with urllib.request.urlopen(f"http://127.0.0.1:{admin}/certs", timeout=5) as certs:
                assert b"spiffe://cluster.local/ns/default/sa/reviews" in certs.read()
        finally:
            proc.kill()
            proc.wait()


def test_unusable_certs_are_a_clear_error(tmp_path: Path) -> None:
    snapshot_file = tmp_path / "s.json"
    snapshot_file.write_text(mesh_snapshot(COMPOSE, "", "reviews-v1", {}).to_json())
    ca = MeshCA.load_or_create(tmp_path / "ca")
    certs = write_certs(tmp_path / "certs", ca.issue("default", "reviews"))
    (certs / "key.pem").write_text(ca.issue("default", "other").private_key)  # not this certificate's key
    argv = [sys.executable, "-m", "sandbox", "proxy", "--snapshot", str(snapshot_file), "--certs"]
    for directory, said in ((tmp_path / "none", "none/cert-chain.pem: cannot read"), (certs, "error: ")):
        result = subprocess.run([*argv, str(directory)], capture_output=True, text=True, timeout=30)
        assert result.returncode == 2 and said in result.stderr and "Traceback" not in result.stderr, result.stderr
