"""The operator verbs as a user runs them, against a real `sandbox controlplane` and two real sidecars.

Everything is a process on 127.0.0.1; the mesh record is written the way a runtime writes it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from factories import reviews_to

from sandbox.control.tokens import TokenAuthority
from sandbox.runtime.project import MeshRecord, ProxyRecord, find_project, write_record
from sandbox.xds.identity import ProxyIdentity

pytestmark = pytest.mark.timeout(180)

COMPOSE = """services:
  web-v1:
    image: x
    labels: {app: web, version: v1}
    expose: ["9080"]
  reviews-v1:
    image: x
    labels: {app: reviews, version: v1}
    expose: ["9080"]
  reviews-v2:
    image: x
    labels: {app: reviews, version: v2}
    expose: ["9080"]
"""
DR = """apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
spec:
  host: reviews
  subsets:
  - name: v1
    labels: {version: v1}
  - name: v2
    labels: {version: v2}
"""


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def sandbox(*args: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sandbox", *args], cwd=cwd, input=stdin, capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[Path]:
    """A project dir with a running control plane and sidecars for web-v1 and reviews-v2, recorded."""
    (tmp_path / "compose.yaml").write_text(COMPOSE)
    istio = tmp_path / "istio"
    istio.mkdir()
    (istio / "reviews-dr.yaml").write_text(DR)
    state = tmp_path / ".sandbox" / "state"
    cp_port, *admin_ports = free_ports(3)
    argv = [sys.executable, "-m", "sandbox", "controlplane", "--istio", str(istio)]
    argv += ["--compose", str(tmp_path / "compose.yaml"), "--port", str(cp_port), "--state-dir", str(state)]
    procs = [subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        deadline = time.monotonic() + 30
        while not (state / "mesh-secret").exists():  # the control plane made its secret
            assert time.monotonic() < deadline and procs[0].poll() is None
            time.sleep(0.05)
        tokens = TokenAuthority.load_or_create(state)
        proxies = []
        for (workload, sa), admin in zip((("web-v1", "web"), ("reviews-v2", "reviews")), admin_ports, strict=True):
            env = {**os.environ, "SANDBOX_TOKEN": tokens.issue(ProxyIdentity(workload, "default", sa))}
            argv = [sys.executable, "-m", "sandbox", "proxy", "--control-plane", f"http://127.0.0.1:{cp_port}"]
            argv += ["--workload", workload, "--service-account", sa, "--admin-port", str(admin)]
            for name in ("outbound", "inbound", "stats", "ready"):
                argv += [f"--{name}-port", "0"]
            procs.append(subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            proxies.append(ProxyRecord(workload, workload, "default", 0, f"http://127.0.0.1:{admin}"))
        project = find_project(tmp_path / "compose.yaml")
        write_record(
            project,
            MeshRecord(
                "local",
                project.name,
                str(project.compose_file),
                str(istio),
                f"http://127.0.0.1:{cp_port}",
                {"ingress": None, "console": None, "prometheus": None, "tracing": None},
                tuple(proxies),
                time.time(),
            ),
        )
        yield tmp_path
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_apply_get_wait_proxy_status_proxy_config_and_delete(mesh: Path) -> None:
    waited = sandbox("wait", "--synced", "--timeout", "40s", cwd=mesh)
    assert waited.returncode == 0, waited.stderr

    (mesh / "work").mkdir()
    (mesh / "work" / "reviews-v2.yaml").write_text(reviews_to("v2"))
    applied = sandbox("apply", "-f", "work/reviews-v2.yaml", cwd=mesh)
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout == "virtualservice.networking.istio.io/reviews created\n"
    assert (mesh / "istio" / "reviews-v2.yaml").read_text() == reviews_to("v2")
    assert sandbox("wait", "--synced", "--timeout", "20s", cwd=mesh).returncode == 0

    listed = sandbox("get", "vs", cwd=mesh)
    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.splitlines()
    assert header.split() == ["NAME", "NAMESPACE", "AGE", "FILE"]
    assert row.split()[:2] == ["reviews", "default"] and row.split()[3] == "istio/reviews-v2.yaml:1"
    as_yaml = sandbox("get", "virtualservice", "reviews", "-o", "yaml", cwd=mesh)
    assert "subset: v2" in as_yaml.stdout and "kind: VirtualService" in as_yaml.stdout
    missing = sandbox("get", "dr", "nope", cwd=mesh)
    assert missing.returncode == 1 and 'destinationrules.networking.istio.io "nope" not found' in missing.stderr

    (mesh / "work" / "bad.yaml").write_text(reviews_to("v9"))
    refused = sandbox("apply", "-f", "work/bad.yaml", cwd=mesh)
    assert refused.returncode == 1 and refused.stdout == ""
    assert (
        "work/bad.yaml:9" in refused.stderr and "KIA1107" in refused.stderr and "nothing was written" in refused.stderr
    )
    assert (mesh / "istio" / "reviews-v2.yaml").read_text() == reviews_to("v2")

    status = sandbox("proxy-status", cwd=mesh)
    assert status.returncode == 0, status.stderr
    rows = [line.split() for line in status.stdout.splitlines()[1:]]
    assert sorted((r[0], r[2], r[3]) for r in rows) == [
        ("reviews-v2.default", "SYNCED", "PERMISSIVE"),  # no PeerAuthentication: Istio's default
        ("web-v1.default", "SYNCED", "PERMISSIVE"),
    ]

    routes = sandbox("proxy-config", "routes", "web-v1", cwd=mesh)
    assert routes.returncode == 0, routes.stderr
    assert "outbound|9080|v2|reviews.default.svc.cluster.local" in routes.stdout
    secrets = sandbox("proxy-config", "secrets", "reviews-v2", cwd=mesh)
    assert "spiffe://cluster.local/ns/default/sa/reviews" in secrets.stdout and "PRIVATE" not in secrets.stdout
    root = x509.load_pem_x509_certificate((mesh / ".sandbox" / "state" / "root-cert.pem").read_bytes())
    assert f"ROOTCA SHA-256 fingerprint: {root.fingerprint(hashes.SHA256()).hex(':').upper()}" in secrets.stdout
    as_json = json.loads(sandbox("proxy-config", "secrets", "reviews-v2", "-o", "json", cwd=mesh).stdout)
    (entry,) = as_json["certificates"]
    assert entry["ca_cert"][0]["serial_number"] == f"{root.serial_number:x}" and "PRIVATE" not in json.dumps(as_json)

    (mesh / "work" / "reviews-v1.yaml").write_text(reviews_to("v1"))
    configured = sandbox("apply", "-f", "-", cwd=mesh, stdin=reviews_to("v1"))
    assert configured.stdout == "virtualservice.networking.istio.io/reviews configured\n"
    assert sandbox("wait", "--synced", "--timeout", "20s", cwd=mesh).returncode == 0
    routes = sandbox("proxy-config", "routes", "web-v1", cwd=mesh)
    assert "outbound|9080|v1|reviews.default.svc.cluster.local" in routes.stdout

    deleted = sandbox("delete", "-f", "work/reviews-v1.yaml", cwd=mesh)
    assert deleted.stdout == "virtualservice.networking.istio.io/reviews deleted\n", deleted.stderr
    assert not (mesh / "istio" / "reviews-v2.yaml").exists()
    assert sandbox("wait", "--synced", "--timeout", "20s", cwd=mesh).returncode == 0
    assert sandbox("get", "vs", cwd=mesh).stderr == "No resources found.\n"


def test_without_a_running_mesh_the_verbs_say_so_and_apply_still_writes(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text(COMPOSE)
    (tmp_path / "istio").mkdir()
    for argv in (("get", "vs"), ("proxy-status",), ("wait", "--synced"), ("proxy-config", "routes", "web-v1")):
        result = sandbox(*argv, cwd=tmp_path)
        assert result.returncode == 1, argv
        assert f"no mesh is running for {tmp_path / 'compose.yaml'} (run sandbox up)" in result.stderr
    applied = sandbox("apply", "-f", "-", cwd=tmp_path, stdin=DR)
    assert applied.returncode == 0 and applied.stdout == "destinationrule.networking.istio.io/reviews created\n"
    assert (tmp_path / "istio" / "destinationrule-default-reviews.yaml").read_text() == DR
    assert "no mesh is running" in applied.stderr
    assert sandbox("delete", "dr", cwd=tmp_path).returncode == 2
    deleted = sandbox("delete", "dr", "reviews", "-c", str(tmp_path / "compose.yaml"), cwd=tmp_path.parent)
    assert deleted.stdout == "destinationrule.networking.istio.io/reviews deleted\n", deleted.stderr
    assert list((tmp_path / "istio").iterdir()) == []


RBAC = """\
apiVersion: "rbac.istio.io/v1alpha1"
kind: ClusterRbacConfig
metadata:
  name: default
spec:
  mode: 'ON_WITH_INCLUSION'
  inclusion:
    namespaces: ["default"]
---
apiVersion: "rbac.istio.io/v1alpha1"
kind: ServiceRole
metadata:
  name: productpage-viewer
  namespace: default
spec:
  rules:
  - services: ["productpage.default.svc.cluster.local"]
    methods: ["GET"]
---
apiVersion: "rbac.istio.io/v1alpha1"
kind: ServiceRoleBinding
metadata:
  name: bind-productpage-viewer
  namespace: default
spec:
  subjects:
  - user: "*"
  roleRef:
    kind: ServiceRole
    name: "productpage-viewer"
"""


def test_the_seed_talks_rbac_file_applies_as_written_and_its_translation_counts_once(tmp_path: Path) -> None:
    """`sandbox apply -f` of a ClusterRbacConfig + ServiceRole + ServiceRoleBinding file, as a new user
    would: the AuthorizationPolicies it translates to come with it, never as definitions of their own
    (they were once written beside it and then refused as duplicates: SBX009 against the same file)."""
    (tmp_path / "compose.yaml").write_text(COMPOSE)
    (tmp_path / "istio").mkdir()
    (tmp_path / "rbac.yaml").write_text(RBAC)
    applied = sandbox("apply", "-f", "rbac.yaml", cwd=tmp_path)
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.splitlines() == [
        "clusterrbacconfig.rbac.istio.io/default created",
        "servicerole.rbac.istio.io/productpage-viewer created",
        "servicerolebinding.rbac.istio.io/bind-productpage-viewer created",
    ]
    assert "SBX009" not in applied.stderr and "SBX201" in applied.stderr  # deprecated, translated, in force
    assert (tmp_path / "istio" / "rbac.yaml").read_text() == RBAC
    again = sandbox("apply", "-f", "rbac.yaml", cwd=tmp_path)
    assert again.returncode == 0 and again.stdout.count(" unchanged") == 3, again.stderr
    deleted = sandbox("delete", "-f", "rbac.yaml", cwd=tmp_path)
    assert deleted.returncode == 0 and deleted.stdout.count(" deleted") == 3, deleted.stderr
    assert "not found" not in deleted.stderr
    assert list((tmp_path / "istio").iterdir()) == []
