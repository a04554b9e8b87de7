"""The local runtime's bookkeeping without running a mesh: which log files `logs` reads, what
`down` cleans up when nothing (or only leftovers) is running, liveness of pids."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox.runtime.base import RuntimeFailure
from sandbox.runtime.local import LocalRuntime, alive, run_dir
from sandbox.runtime.project import MeshRecord, Project, write_record

ROWS = [
    ("controlplane", "controlplane", ""),
    ("web", "app", "web"),
    ("web.proxy", "sidecar", "web"),
    ("api-1", "app", "api"),
    ("api-1.proxy", "sidecar", "api"),
    ("api-2", "app", "api"),
    ("api-2.proxy", "sidecar", "api"),
    ("istio-ingressgateway", "gateway", "istio-ingressgateway"),
]


@pytest.fixture
def project(tmp_path: Path) -> Project:
    (tmp_path / "compose.yaml").write_text("services: {}\n")
    found = Project(tmp_path / "compose.yaml", tmp_path / "istio")
    run_dir(found).mkdir(parents=True)
    rows: list[dict[str, object]] = [
        {"name": n, "kind": k, "workload": w, "pid": None, "pids": [], "phase": "stopped", "log_file": f"/l/{n}.log"}
        for n, k, w in ROWS
    ]
    (run_dir(found) / "processes.json").write_text(json.dumps({"supervisor": 0, "processes": rows}))
    return found


@pytest.mark.parametrize(
    ("workload", "proxy", "expected"),
    [
        (None, False, [n for n, _, _ in ROWS]),
        ("web", False, ["web"]),
        ("web", True, ["web.proxy"]),
        ("api", False, ["api-1", "api-2"]),  # every replica's app
        ("api", True, ["api-1.proxy", "api-2.proxy"]),
        ("api-2", True, ["api-2.proxy"]),  # one replica by its node name
        ("controlplane", False, ["controlplane"]),
        ("istio-ingressgateway", True, ["istio-ingressgateway"]),
    ],
)
def test_which_logs(project: Project, workload: str | None, proxy: bool, expected: list[str]) -> None:
    assert [name for name, _ in LocalRuntime().log_sources(project, workload, proxy)] == expected


def test_an_unknown_workload_lists_the_known_ones(project: Project) -> None:
    with pytest.raises(RuntimeFailure, match=r"no workload or component named 'nope' \(known: api, controlplane"):
        LocalRuntime().log_sources(project, "nope", False)
    data = json.loads((run_dir(project) / "processes.json").read_text())
    data["processes"].append({"name": "legacy", "kind": "app", "workload": "legacy", "log_file": "/l/legacy.log"})
    (run_dir(project) / "processes.json").write_text(json.dumps(data))
    with pytest.raises(RuntimeFailure, match="workload 'legacy' has no sidecar"):
        LocalRuntime().log_sources(project, "legacy", True)


def test_down_of_a_mesh_whose_supervisor_died_kills_what_it_left_and_clears_the_record(project: Project) -> None:
    orphan = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    data = json.loads((run_dir(project) / "processes.json").read_text())
    data["processes"][1] |= {"pid": orphan.pid, "pids": [orphan.pid], "phase": "ready", "argv0": sys.executable}
    (run_dir(project) / "processes.json").write_text(json.dumps(data))
    record = MeshRecord(
        "local", "p", str(project.compose_file), "", "http://127.0.0.1:1", {}, extra={"supervisor_pid": 0}
    )
    write_record(project, record)
    try:
        lines = LocalRuntime().down(project, record)
        orphan.wait(5)  # gone (down reaped it, so its status is not ours to see)
    finally:
        orphan.kill()
    assert f"stopped web (pid {orphan.pid}), left by a supervisor that died" in lines
    assert not project.record_file.exists() and not (run_dir(project) / "processes.json").exists()


def test_down_volumes_removes_prometheus_data_and_logs(project: Project) -> None:
    (run_dir(project) / "prometheus-data" / "wal").mkdir(parents=True)
    project.logs_dir.mkdir(parents=True)
    (project.logs_dir / "web.log").write_text("x\n")
    LocalRuntime().down(project, None, volumes=True)
    assert not (run_dir(project) / "prometheus-data").exists() and not project.logs_dir.exists()
    assert project.ca_dir.parent.exists()  # the CA (the mesh's identity) stays


def test_alive() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    assert alive(child.pid) or child.poll() is not None
    child.wait()
    assert not alive(child.pid) and not alive(0) and not alive(-1)


def test_the_console_asks_for_kialis_port_only_while_it_is_free() -> None:
    import socket

    from sandbox.runtime.local import CONSOLE_PORT, LocalRuntime

    with socket.socket() as held:  # hold 20001 (unless another mesh's console already does)
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            held.bind(("127.0.0.1", CONSOLE_PORT))
            held.listen()
        except OSError:
            pass  # taken by someone else: just as good for this check
        assert LocalRuntime().tools().console_port is None
    assert CONSOLE_PORT == 20001  # Kiali's
