"""The runtime contract's pure parts: the status JSON keys scripts rely on, per-workload rollups."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sandbox.mesh.topology import parse_compose
from sandbox.runtime.base import (
    ComponentKind,
    Phase,
    ProgressEvent,
    StatusReport,
    workload_statuses,
    worst_sync,
)
from sandbox.runtime.project import Project

COMPOSE = """
services:
  web:
    labels: {app: web, version: v1}
  api-v1:
    labels: {app: api, version: v1}
    x-sandbox: {replicas: 2}
  legacy:
    labels: {app: sleep, version: v1}
    x-sandbox: {inject: false, port: 80}
  db:
    image: postgres
"""


@pytest.mark.parametrize(
    ("states", "expected"),
    [
        (["SYNCED", "SYNCED"], "SYNCED"),
        (["SYNCED", "STALE"], "STALE"),
        (["STALE", "NACK", "DISCONNECTED"], "NACK"),
        (["SYNCED", "weird"], "UNKNOWN"),
        ([], "UNKNOWN"),
    ],
)
def test_worst_sync(states: list[str], expected: str) -> None:
    assert worst_sync(states) == expected


def test_workload_statuses_roll_up_replicas_by_node_name() -> None:
    topology = parse_compose(COMPOSE, "compose.yaml")
    ready = {"web": True, "api-v1-1": True, "api-v1-2": False, "istio-ingressgateway": True, "legacy": True}
    sync = {"web": "SYNCED", "api-v1-1": "SYNCED", "api-v1-2": "STALE", "istio-ingressgateway": "SYNCED"}
    addresses = {"web": "127.0.0.1:4001", "api-v1-1": "127.0.0.1:4002", "api-v1-2": "127.0.0.1:4003"}
    by_name = {w.name: w for w in workload_statuses(topology, ready, sync, addresses | {"legacy": "127.0.0.1:4004"})}
    assert set(by_name) == {
        "web",
        "api-v1",
        "legacy",
        "istio-ingressgateway",
        "istio-egressgateway",
    }  # db is not in the mesh
    assert (by_name["istio-egressgateway"].ready, by_name["istio-egressgateway"].sync) == (False, "UNKNOWN")
    assert (by_name["web"].ready, by_name["web"].sync, by_name["web"].address) == (True, "SYNCED", "127.0.0.1:4001")
    api = by_name["api-v1"]
    assert (api.app, api.version, api.ready, api.sync) == ("api", "v1", False, "STALE")
    assert [(r.node, r.address) for r in api.replicas] == [
        ("api-v1-1", "127.0.0.1:4002"),
        ("api-v1-2", "127.0.0.1:4003"),
    ]
    assert api.address == "127.0.0.1:4002"  # the first replica's
    legacy = by_name["legacy"]  # no sidecar: its app's address, and no sync state
    assert (legacy.ready, legacy.sync, legacy.address) == (True, "NONE", "127.0.0.1:4004")


def test_status_json_has_the_documented_keys(tmp_path: Path) -> None:
    topology = parse_compose(COMPOSE, "compose.yaml")
    report = StatusReport(
        "local",
        "demo",
        True,
        {"ingress": "http://127.0.0.1:8080", "console": None},
        workloads=workload_statuses(topology, {}, {}),
    )
    data = json.loads(json.dumps(report.to_data()))
    assert data["runtime"] == "local"
    assert data["urls"] == {
        "ingress": "http://127.0.0.1:8080",
        "https": None,
        "console": None,
        "prometheus": None,
        "tracing": None,
    }
    assert {"name", "app", "version", "ready", "sync", "address", "replicas"} <= set(data["workloads"][0])
    assert {"node", "ready", "sync", "address"} <= set(data["workloads"][0]["replicas"][0])
    idle = StatusReport.not_running(Project(tmp_path / "compose.yaml", tmp_path / "istio")).to_data()
    assert idle["running"] is False and set(idle["urls"]) == {"ingress", "https", "console", "prometheus", "tracing"}


def test_progress_events_round_trip_through_json() -> None:
    event = ProgressEvent("web.proxy", ComponentKind.SIDECAR, Phase.READY, "127.0.0.1:15006", 0.25)
    assert ProgressEvent.from_data(json.loads(json.dumps(event.to_data()))) == event
