"""Export then import, through the CLI: the mesh that comes back is the mesh that went out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from sandbox.cli import app
from sandbox.mesh.loader import load_paths
from sandbox.mesh.topology import Topology, load_compose
from tests.kube.kube_helpers import SAMPLES


def mesh_view(topology: Topology) -> dict[str, Any]:
    """What a mesh is made of: workloads with labels, accounts, ports, replicas; services with ports."""
    assert [d for d in topology.diagnostics if d.severity == "error"] == []
    workloads = {
        w.name: (w.app, w.version, w.namespace, w.service_account, w.labels, w.port, w.replicas, w.inject, w.ports)
        for w in topology.workloads
        if not w.builtin
    }
    services = {(s.name, s.namespace): (s.port, sorted(s.workloads), s.ports) for s in topology.services}
    return {"workloads": workloads, "services": services}


def istio_view(directory: Path) -> dict[tuple[str, str, str], Any]:
    loaded = load_paths([directory])
    assert loaded.errors == ()
    return {r.key: (r.api_version, r.spec, r.labels, r.annotations) for r in loaded.resources}


def _roundtrip(compose: Path, tmp_path: Path) -> Path:
    runner = CliRunner()
    exported = runner.invoke(app, ["export", "kubernetes", "-f", str(compose), "-o", str(tmp_path / "k8s")])
    assert exported.exit_code == 0, exported.output
    back = tmp_path / "back" / "compose.yaml"
    imported = runner.invoke(app, ["import", "kubernetes", str(tmp_path / "k8s"), "-o", str(back)])
    assert imported.exit_code == 0, imported.output
    return back


@pytest.mark.parametrize("sample", ["bookinfo", "httpbin"])
def test_export_then_import_gives_back_the_same_mesh(sample: str, tmp_path: Path) -> None:
    back = _roundtrip(SAMPLES / sample / "compose.yaml", tmp_path)
    assert mesh_view(load_compose(back)) == mesh_view(load_compose(SAMPLES / sample / "compose.yaml"))
    assert istio_view(back.parent / "istio") == istio_view(SAMPLES / sample / "istio")


def test_a_mesh_with_namespaces_named_ports_replicas_and_no_sidecar_round_trips(tmp_path: Path) -> None:
    compose = tmp_path / "compose.yaml"
    compose.write_text(
        """\
services:
  api-v1:
    image: shop/api:1
    labels: {app: api, version: v1, tier: backend}
    command: ["serve", "--port", "8080"]
    environment: {GREETING: "hello $$USER"}
    x-sandbox:
      namespace: shop
      serviceAccount: api-sa
      replicas: 3
      ports: [{name: http-api, port: 80, targetPort: 8080}, {name: grpc, port: 9090}]
  api-v2:
    image: shop/api:2
    labels: {app: api, version: v2, tier: backend}
    x-sandbox:
      namespace: shop
      serviceAccount: api-sa
      ports: [{name: http-api, port: 80, targetPort: 8080}, {name: grpc, port: 9090}]
  client:
    image: curlimages/curl:8.8.0
    labels: {app: client, version: v1}
    x-sandbox: {inject: false, port: 8000}
"""
    )
    (tmp_path / "istio").mkdir()
    (tmp_path / "istio" / "rules.yaml").write_text(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: api\n  namespace: shop\n"
        "spec:\n  host: api\n  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]\n"
        "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: client}\n"
        "spec: {hosts: [client], http: [{route: [{destination: {host: client}}], timeout: 2s}]}\n"
    )
    back = _roundtrip(compose, tmp_path / "out")
    assert mesh_view(load_compose(back)) == mesh_view(load_compose(compose))
    assert istio_view(back.parent / "istio") == istio_view(tmp_path / "istio")
    text = back.read_text()
    assert "hello $$USER" in text  # Compose's escape survives both ways
