"""The supervisor server: meshes forked from one preloaded process, and a mesh whose owner dies
(the pytest fixture's session, killed) stopping by itself."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

from sandbox.runtime.base import RecordingProgress, UpOptions
from sandbox.runtime.local import LocalRuntime, alive, run_dir
from sandbox.runtime.project import Project
from sandbox.runtime.supervisorserver import SupervisorServer
from sandbox.runtime.workcopy import work_copy
from sandbox.scaffold import create

pytestmark = [pytest.mark.timeout(120), pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX")]


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def scaffold_copy(tmp_path: Path, name: str) -> Project:
    source = tmp_path / "source"
    if not source.exists():
        create(source)
    return work_copy(source / "compose.yaml", source / "istio", tmp_path / name, "local", free_port())


def pids(project: Project) -> list[int]:
    """Every process of the mesh, its supervisor last."""
    state = json.loads((run_dir(project) / "processes.json").read_text())
    return [*(pid for row in state["processes"] for pid in row["pids"]), state["supervisor"]]


def ingress_answer(project: Project) -> str:
    from sandbox.mesh.topology import load_compose

    port = load_compose(project.compose_file).settings.ingress_port
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://127.0.0.1:{port}/", timeout=10) as answer:
        return str(json.loads(answer.read())["service"])


def test_meshes_forked_from_one_server_serve_and_leave_nothing_behind(tmp_path: Path) -> None:
    server = SupervisorServer(tmp_path / "server.log")
    try:
        for name in ("first", "second"):
            project = scaffold_copy(tmp_path, name)
            runtime = LocalRuntime(server=server)
            progress = RecordingProgress()
            record = runtime.up(
                project, _topology(project), UpOptions(detach=True, prometheus=False, console=False), progress
            )
            started = pids(project)
            assert {e.component for e in progress.events} >= {"controlplane", "web", "web.proxy", "api-v2.proxy"}
            assert not {e.component for e in progress.events} & {"prometheus", "console"}  # left out
            assert progress.warnings == []
            assert record.urls["prometheus"] is None and record.urls["console"] is None
            assert ingress_answer(project) == "web"
            runtime.down(project, record)
            assert [p for p in started if alive(p)] == []
        assert server.running  # one server, both meshes
    finally:
        server.close()
    assert not server.running


def _topology(project: Project):  # type: ignore[no-untyped-def]
    from sandbox.mesh.topology import load_compose

    return load_compose(project.compose_file)


OWNER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from sandbox.mesh.topology import load_compose
    from sandbox.runtime.base import RecordingProgress, UpOptions
    from sandbox.runtime.local import LocalRuntime
    from sandbox.runtime.project import find_project
    from sandbox.runtime.supervisorserver import SupervisorServer

    project = find_project(Path(sys.argv[1]))
    runtime = LocalRuntime(server=SupervisorServer(Path(sys.argv[2])))
    options = UpOptions(detach=True, prometheus=False, console=False, owner=os.getpid())
    runtime.up(project, load_compose(project.compose_file), options, RecordingProgress())
    print("up", flush=True)
    time.sleep(600)
    """
)


def test_a_mesh_whose_owner_is_killed_stops_by_itself(tmp_path: Path) -> None:
    project = scaffold_copy(tmp_path, "owned")
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER, str(project.compose_file), str(tmp_path / "server.log")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert owner.stdout is not None and owner.stdout.readline().strip() == "up"
        started = pids(project)
        assert started and all(alive(p) for p in started)
        owner.send_signal(signal.SIGKILL)  # no finalizer, no atexit: only the supervisor's watch
        owner.wait()
        deadline = time.monotonic() + 20
        while any(alive(p) for p in started) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [p for p in started if alive(p)] == []
        assert not project.record_file.exists()
        log = (project.logs_dir / "supervisor.log").read_text()
        assert f"its owner (pid {owner.pid}) has ended: stopping the mesh" in log
    finally:
        owner.kill()
        LocalRuntime().down(project, None)
