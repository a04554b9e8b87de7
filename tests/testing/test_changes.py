"""mesh.fault and mesh.route put back exactly the rules that were in force (as `sandbox get -o
yaml` shows them, and byte for byte on disk), also when the block raises; traffic from the host
and from inside a workload. One mesh (`sandbox init`'s: web calls api v1/v2) for the module,
started with this repository's own `mesh_factory` fixture."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.operator.edit import istio_files
from sandbox.scaffold import create
from sandbox.testing import Mesh, MeshError

pytestmark = pytest.mark.timeout(300)
JASON = {"headers": {"end-user": {"exact": "jason"}}}


@pytest.fixture(scope="module")
def mesh(mesh_factory: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    project = tmp_path_factory.mktemp("project")
    create(project)
    with mesh_factory(compose=project / "compose.yaml") as started:  # type: ignore[operator]
        yield started
    assert not started.project.record_file.exists()  # stopped


def sandbox_get(mesh: Mesh, kind: str, *names: str) -> subprocess.CompletedProcess[str]:
    """`sandbox get KIND -o yaml -f COPY/compose.yaml`, as a user would check the mesh."""
    return subprocess.run(
        [sys.executable, "-m", "sandbox", "get", kind, *names, "-o", "yaml", "-f", str(mesh.compose_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def rules(mesh: Mesh) -> tuple[str, str, dict[str, str]]:
    vs, dr = sandbox_get(mesh, "vs"), sandbox_get(mesh, "dr")
    assert vs.returncode == 0 and dr.returncode == 0, vs.stderr + dr.stderr
    return vs.stdout, dr.stdout, istio_files(mesh.istio_dir)


def from_web(mesh: Mesh, path: str = "/", **headers: str) -> tuple[int, str]:
    answer = mesh.request("GET", f"http://api:9080{path}", from_="web", headers=headers)
    return answer.status, answer.text


def test_a_fault_is_in_force_inside_the_block_and_gone_after(mesh: Mesh) -> None:
    before = rules(mesh)
    with mesh.fault("api", abort=503):
        during = sandbox_get(mesh, "vs", "api").stdout
        assert "httpStatus: 503" in during and "weight: 90" in during  # the routing is kept
        assert from_web(mesh) == (503, "fault filter abort")
        through = mesh.request("GET", mesh.url("web"))
        assert through.status == 502 and through.json()["upstream_status"] == 503
    assert rules(mesh) == before
    assert from_web(mesh)[0] == 200


def test_the_rules_come_back_after_an_exception_in_the_block(mesh: Mesh) -> None:
    before = rules(mesh)
    with pytest.raises(ZeroDivisionError), mesh.fault("api", delay="0.3s"):
        answer = mesh.request("GET", "http://api:9080/", from_="web")
        assert answer.status == 200 and answer.elapsed >= 0.3
        print(1 / 0)
    assert rules(mesh) == before


def test_a_fault_for_matching_requests_only(mesh: Mesh) -> None:
    before = rules(mesh)
    with mesh.fault("api", abort=418, match=JASON, subset="v2"):
        assert from_web(mesh, **{"end-user": "jason"})[0] == 418
        assert from_web(mesh, **{"end-user": "alice"})[0] == 200
    assert rules(mesh) == before


def test_a_route_splits_by_weight_and_is_put_back(mesh: Mesh) -> None:
    before = rules(mesh)
    with mesh.route("api", "v2"):
        versions = Counter(mesh.request("GET", "http://api:9080/", from_="web").json()["version"] for _ in range(10))
        assert versions == {"v2": 10}
    with mesh.route("api", {"v1": 50, "v2": 50}):
        versions = Counter(mesh.request("GET", "http://api:9080/", from_="web").json()["version"] for _ in range(60))
        assert set(versions) == {"v1", "v2"} and 15 <= versions["v2"] <= 45, versions  # binomial(60, .5): 4 sd
    assert rules(mesh) == before


def test_a_route_to_a_service_without_subsets_brings_them_and_takes_them_away(mesh: Mesh) -> None:
    before = rules(mesh)
    assert sandbox_get(mesh, "dr", "web").returncode == 1  # none yet
    with mesh.route("web", "v1"):
        made = sandbox_get(mesh, "dr", "web").stdout
        assert "name: v1" in made and "version: v1" in made
        assert mesh.request("GET", mesh.url("web")).status == 200
    assert rules(mesh) == before
    assert sandbox_get(mesh, "dr", "web").returncode == 1


def test_nested_blocks_unwind_in_order(mesh: Mesh) -> None:
    before = rules(mesh)
    with mesh.route("api", "v1"), mesh.fault("api", abort=500, percent=100):
        assert from_web(mesh)[0] == 500
    assert rules(mesh) == before


def test_what_cannot_be_done_says_why(mesh: Mesh) -> None:
    with pytest.raises(MeshError, match=r"DestinationRule api defines subsets \['v1', 'v2'\] of 'api', not \['v3'\]"):
        mesh.route("api", {"v1": 50, "v3": 50}).__enter__()
    with pytest.raises(MeshError, match=r"no service 'db' in namespace default \(services: api, web\)"):
        mesh.fault("db", abort=503).__enter__()
    with pytest.raises(MeshError, match="say which fault"):
        mesh.fault("api").__enter__()
    with pytest.raises(MeshError, match="no Gateway route reaches 'api'"):
        mesh.url("api")
    with pytest.raises(MeshError, match="'api' is a mesh service name"):
        mesh.request("GET", "http://api:9080/")
    with pytest.raises(MeshError, match=r"no sidecar for workload 'db' \(workloads with one: api-v1, api-v2"):
        mesh.request("GET", "http://api:9080/", from_="db")


def test_apply_delete_and_reset(mesh: Mesh, tmp_path: Path) -> None:
    before = rules(mesh)
    rule = tmp_path / "web.yaml"
    rule.write_text(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: web-direct}\n"
        "spec:\n  hosts: [web]\n  http:\n  - route:\n    - destination: {host: web}\n"
    )
    assert mesh.apply(rule) == ["virtualservice.networking.istio.io/web-direct created"]
    assert mesh.apply(str(rule)) == ["virtualservice.networking.istio.io/web-direct unchanged"]
    assert mesh.delete("vs", "web-direct") == ["virtualservice.networking.istio.io/web-direct deleted"]
    mesh.apply(rule)
    with pytest.raises(MeshError, match=r"not found: virtualservice\.networking\.istio\.io/nope"):
        mesh.delete("vs", "nope")
    assert mesh.reset() == ["virtualservice.networking.istio.io/web-direct deleted"]
    assert rules(mesh) == before


def test_observing(mesh: Mesh) -> None:
    answer = mesh.request("GET", mesh.url("web", "hello"), headers={"X-Mark": "m1"})
    assert answer.headers["content-type"] == answer.headers["Content-Type"] == "application/json"
    assert answer.json()["path"] == "/hello"
    lines = mesh.eventually(lambda: [line for line in mesh.logs("web", proxy=True) if '"GET /hello ' in line])
    assert " 200 " in lines[-1]
    assert any("web v1 listening" in line for line in mesh.logs("web"))
    status = mesh.proxy_status()
    assert status.states == {p.node: "SYNCED" for p in mesh.record.proxies}
    assert "SYNCED" in str(status) and "NAME" in str(status)
    with pytest.raises(MeshError, match="runs no Prometheus"):
        mesh.metrics("up")
    with pytest.raises(MeshError, match="collects no traces"):
        mesh.traces("web")


def test_a_gateway_host_is_reached_as_curl_resolve_would(mesh: Mesh) -> None:
    mesh.apply(
        """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop}
spec:
  hosts: [shop.example.com]
  gateways: [ingress]
  http:
  - route:
    - destination: {host: api, port: {number: 9080}}
"""
    )
    try:
        url = mesh.url("api", "/x")
        assert url == f"http://shop.example.com:{mesh.ingress_port}/x"
        answer = mesh.request("GET", url)  # to 127.0.0.1 with Host: shop.example.com, no DNS needed
        assert answer.status == 200 and answer.json()["service"] == "api"
        assert mesh.request("GET", mesh.url("web")).json()["service"] == "web"  # "*" still goes to web
    finally:
        mesh.reset()
