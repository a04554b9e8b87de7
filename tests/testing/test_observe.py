"""The optional components, asked for: Prometheus for mesh.metrics, the console (its span
collector) for mesh.traces."""

from __future__ import annotations

import shutil

import pytest

from sandbox.scaffold import create
from sandbox.testing import Mesh
from tests.conftest import require

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]


def test_metrics_and_traces_of_a_mesh_that_runs_prometheus_and_the_console(
    mesh_factory: object, tmp_path_factory: pytest.TempPathFactory
) -> None:
    require(shutil.which("prometheus") is not None, "Prometheus is not installed (apt-get install prometheus)")
    project = tmp_path_factory.mktemp("project")
    create(project)
    mesh: Mesh
    with mesh_factory(compose=project / "compose.yaml", prometheus=True, console=True) as mesh:  # type: ignore[operator]
        assert mesh.urls["prometheus"] and mesh.urls["console"]
        for _ in range(5):
            assert mesh.request("GET", mesh.url("web")).status == 200
        query = 'sum(istio_requests_total{reporter="source",source_workload="web",destination_service_name="api"})'
        total = mesh.eventually(lambda: [s for s in mesh.metrics(query) if s.value >= 5], timeout=30, interval=0.5)
        assert total[0].value == 5 and total[0].labels == {}
        traces = mesh.eventually(lambda: mesh.traces("api"), timeout=15)
        operations = {span["operationName"] for trace in traces for span in trace["spans"]}
        assert "api.default.svc.cluster.local:9080/*" in operations, operations  # Istio's operation name
        services = {p["serviceName"] for trace in traces for p in trace["processes"].values()}
        assert "api.default" in services, services
