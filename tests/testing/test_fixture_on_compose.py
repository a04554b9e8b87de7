"""The fixture on the compose runtime: the mesh runs as containers from a private copy of the
project (its own Compose project name), and a request `from_` a workload is sent from inside that
workload's sidecar container, as `kubectl exec` would."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox.testing import Mesh
from tests.conftest import require

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]  # the first run may build the image
ROOT = Path(__file__).resolve().parents[2]


def engine_ready() -> bool:
    try:
        from sandbox.runtime.compose import compose_command
        from sandbox.runtime.docker_engine import engine_available

        compose_command()
    except Exception:
        return False
    return engine_available()


def test_a_compose_mesh_from_the_fixture(mesh_factory: object) -> None:
    require(engine_ready(), "no Docker engine with Compose (run ../shared/docker/ensure-engine)")
    mesh: Mesh
    with mesh_factory(compose=ROOT / "samples" / "httpbin" / "compose.yaml", runtime="compose", timeout=1500) as mesh:  # type: ignore[operator]
        assert mesh.record.runtime == "compose"
        assert mesh.record.project.startswith("httpbin-")  # a Compose project of its own
        through = mesh.request("GET", mesh.url("httpbin", "/get"))
        assert through.status == 200 and through.json()["url"].endswith("/get")
        inside = mesh.request("GET", "http://httpbin:8000/headers", from_="fortio", headers={"X-Mark": "m"})
        assert inside.status == 200 and inside.sent_from == "fortio"
        assert inside.json()["headers"]["X-Mark"] == "m"
        with mesh.fault("httpbin", abort=418):
            assert mesh.request("GET", "http://httpbin:8000/get", from_="fortio").status == 418
        assert mesh.request("GET", "http://httpbin:8000/get", from_="fortio").status == 200
        lines = mesh.eventually(lambda: [x for x in mesh.logs("fortio", proxy=True) if " 418 FI " in x], timeout=10)
        assert '"httpbin:8000"' in lines[-1]
    assert not (ROOT / "samples" / "httpbin" / ".sandbox" / "mesh.json").exists()  # the sample itself untouched
