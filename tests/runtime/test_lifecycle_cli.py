"""`sandbox up/down/status/logs` where no mesh needs to run: usage errors, "nothing is running"
answers, what stops `up` before it starts anything, and the status table."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sandbox.cli import app
from sandbox.commands.lifecycle import render_status
from sandbox.runtime.base import ComponentKind, ComponentStatus, Phase, ReplicaStatus, StatusReport, WorkloadStatus
from sandbox.runtime.project import Project

COMPOSE = """\
services:
  web:
    labels: {app: web, version: v1}
    x-sandbox: {port: 8000, local: {command: [python3, web.py]}}
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "compose.yaml").write_text(COMPOSE)
    (tmp_path / "istio").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def processes_in(directory: Path) -> list[int]:
    """Live processes (other than this one) working in `directory`: a warm supervisor would be."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int(entry.name) != os.getpid() and os.readlink(entry / "cwd") == str(directory):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_an_unknown_runtime_is_a_usage_error(project: Path) -> None:
    code, out = run("up", "--runtime", "docker")
    assert code == 2 and "unknown runtime 'docker': use one of auto, compose, local" in out


def test_no_compose_file_is_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for verb in ("up", "down", "status", "logs"):
        code, out = run(verb)
        assert code == 2 and "no compose.yaml or compose.yml" in out, verb


def test_nothing_running(project: Path) -> None:
    assert run("status") == (1, f"No mesh is running for {project / 'compose.yaml'} (start one with `sandbox up`).\n")
    code, out = run("status", "--output", "json")
    data = json.loads(out)
    assert code == 1 and data["running"] is False and data["workloads"] == []
    assert data["urls"] == {"ingress": None, "https": None, "console": None, "prometheus": None, "tracing": None}
    assert run("down") == (0, f"No mesh is running for {project / 'compose.yaml'}.\n")
    code, out = run("logs", "web")
    assert code == 1 and "no mesh is running" in out
    assert run("status", "--output", "yaml")[0] == 2


def test_bad_input_stops_up_before_anything_starts(project: Path) -> None:
    (project / "istio" / "vs.yaml").write_text("kind: VirtualService\n  bad: [\n")
    code, out = run("up", "--runtime", "local", "--detach")
    assert code == 1
    assert f"{project / 'istio' / 'vs.yaml'}:2:" in out and "SBX001" in out
    assert "nothing was started" in out
    assert not (project / ".sandbox" / "local" / "plan.json").exists()
    assert processes_in(project) == []  # the supervisor started early to preload is gone too


def test_the_local_runtime_needs_a_command_for_each_workload(project: Path) -> None:
    (project / "compose.yaml").write_text(COMPOSE.replace(", local: {command: [python3, web.py]}", ""))
    code, out = run("up", "--runtime", "local", "--detach")
    assert code == 1 and "SBX505" in out and "x-sandbox.local.command" in out


def test_status_table(tmp_path: Path) -> None:
    report = StatusReport(
        "local",
        "demo",
        True,
        {"ingress": "http://127.0.0.1:8080", "console": None, "prometheus": None, "tracing": None},
        (
            ComponentStatus("controlplane", ComponentKind.CONTROL_PLANE, Phase.READY, True, "127.0.0.1:1 pid 7"),
            ComponentStatus("web", ComponentKind.APP, Phase.RESTARTING, False, "127.0.0.1:2", restarts=3),
        ),
        (
            WorkloadStatus(
                "web",
                "web",
                "v1",
                "default",
                False,
                "STALE",
                (
                    ReplicaStatus("web-1", True, "SYNCED", "127.0.0.1:3"),
                    ReplicaStatus("web-2", False, "STALE", "127.0.0.1:4"),
                ),
            ),
            WorkloadStatus(
                "sleep", "sleep", "v1", "legacy", True, "NONE", (ReplicaStatus("sleep", True, "NONE", "127.0.0.1:5"),)
            ),
        ),
        "http://127.0.0.1:1",
    )
    text = render_status(report, Project(tmp_path / "compose.yaml", tmp_path / "istio"))
    lines = text.splitlines()
    assert lines[0] == "Mesh 'demo' (local runtime): running"
    assert "web           app           restarting  3" in text
    assert any(
        line.split() == ["web", "web", "v1", "default", "1/2", "STALE", "127.0.0.1:3,", "127.0.0.1:4"] for line in lines
    )
    assert any(
        line.split() == ["sleep", "sleep", "v1", "legacy", "1/1", "no", "sidecar", "127.0.0.1:5"] for line in lines
    )
    assert "  console     off" in text and "  ingress     http://127.0.0.1:8080" in text


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_up_treats_sigterm_and_sighup_as_ctrl_c(signum: signal.Signals) -> None:
    from sandbox.commands.lifecycle import _signals_as_interrupts

    before = signal.getsignal(signum)
    restore = _signals_as_interrupts()
    try:
        with pytest.raises(KeyboardInterrupt):  # the foreground up stops the mesh on this
            os.kill(os.getpid(), signum)
            time.sleep(5)  # the handler runs before this ends
    finally:
        restore()
    assert signal.getsignal(signum) == before


class _InterruptedLaunch:
    """A launch whose `up` meets Ctrl-C before the mesh is ready: what `up` does next is under test."""

    runtime = "local"

    def __init__(self) -> None:
        self.warnings: list[object] = []
        self.problems: list[object] = []
        self.engine = self
        self.stopped: list[object] = []

    def up(self, _options: object, _progress: object) -> object:
        raise KeyboardInterrupt

    def down(self, _project: object, record: object) -> list[str]:
        self.stopped.append(record)
        return []

    def cancel(self) -> None:
        pass


def test_an_interrupted_up_stops_what_it_started_and_gives_ctrl_c_back(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sandbox.runtime.start as start

    launch = _InterruptedLaunch()
    monkeypatch.setattr(start, "prepare", lambda _project, _runtime: launch)
    monkeypatch.setattr(start, "running", lambda _project: None)
    before = signal.getsignal(signal.SIGINT)
    code, output = run("up", "--runtime", "local")
    assert code == 130, output
    assert "Interrupted; stopping what was started" in output
    assert launch.stopped == [None]  # down ran, with no record yet
    # in-process (tests, the pytest plugin) a Ctrl-C later must still interrupt, and children inherit it
    assert signal.getsignal(signal.SIGINT) == before
