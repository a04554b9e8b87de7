"""Forked components: the same process `python -m sandbox ...` would be (session, environment,
cwd, log, exit status), started from already-imported code."""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from sandbox.runtime.base import ComponentKind
from sandbox.runtime.forkserver import DISABLE_ENV, ForkedHandle, fork, forkable
from sandbox.runtime.supervisor import ProcessSpec


def cli(args: list[str]) -> None:
    from sandbox.cli import app

    app(args=args, prog_name="sandbox")


pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX")


def spec(tmp_path: Path, *args: str, kind: ComponentKind = ComponentKind.CONTROL_PLANE) -> ProcessSpec:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "MARK": "forked", "PYTHONUNBUFFERED": "1"}
    return ProcessSpec(
        "cp", kind, (sys.executable, "-m", "sandbox", *args), env, str(tmp_path), str(tmp_path / "c.log")
    )


def wait_exit(handle: ForkedHandle, seconds: float = 20) -> int | None:
    deadline = time.monotonic() + seconds
    while handle.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    return handle.poll()


@pytest.mark.parametrize(
    ("kind", "argv0", "env", "expected"),
    [
        (ComponentKind.SIDECAR, sys.executable, "1", True),
        (ComponentKind.CONTROL_PLANE, sys.executable, "1", True),
        (ComponentKind.APP, sys.executable, "1", False),  # the user's programs run as written
        (ComponentKind.SIDECAR, "/other/python", "1", False),  # another interpreter: exec it
        (ComponentKind.SIDECAR, sys.executable, "0", False),  # SANDBOX_LOCAL_FORK=0
    ],
)
def test_what_is_forked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: ComponentKind, argv0: str, env: str, expected: bool
) -> None:
    monkeypatch.setenv(DISABLE_ENV, env)
    base = spec(tmp_path, "proxy", kind=kind)
    assert forkable(ProcessSpec(base.name, kind, (argv0, *base.argv[1:]), {}, "/", "/x.log")) is expected


def test_a_forked_control_plane_serves_in_its_own_session_and_stops_on_sigterm(tmp_path: Path) -> None:
    (tmp_path / "istio").mkdir()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    args = ("controlplane", "--istio", "istio", "--port", str(port), "--state-dir", str(tmp_path / "state"))
    handle = fork(spec(tmp_path, *args), cli, note="[sandbox] first start")
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and handle.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=1) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                time.sleep(0.05)
        assert handle.poll() is None, (tmp_path / "c.log").read_text()
        assert os.getpgid(handle.pid) == handle.pid  # its own group: down signals it as one
        assert os.readlink(f"/proc/{handle.pid}/cwd") == str(tmp_path)
        assert Path(f"/proc/{handle.pid}/comm").read_text().strip() == "sbx:cp"
        handle.signal_group(signal.SIGTERM)
        assert wait_exit(handle) == 0
    finally:
        handle.signal_group(signal.SIGKILL)
        wait_exit(handle, 5)
    log = (tmp_path / "c.log").read_text()
    assert log.startswith("[sandbox] first start\n") and "control plane listening" in log


def test_a_forked_commands_exit_status_and_errors_reach_its_log(tmp_path: Path) -> None:
    handle = fork(spec(tmp_path, "proxy", kind=ComponentKind.SIDECAR), cli)
    assert wait_exit(handle) == 2  # the CLI's usage error, as `python -m sandbox proxy` exits
    assert "pass --snapshot FILE or --control-plane URL" in (tmp_path / "c.log").read_text()


def test_a_forked_command_sees_only_the_specs_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SANDBOX_TOKEN", "ours, not the child's")
    args = ("proxy", "--control-plane", "http://127.0.0.1:9", "--workload", "w", "--service-account", "w")
    handle = fork(spec(tmp_path, *args, kind=ComponentKind.SIDECAR), cli)
    assert wait_exit(handle) == 2
    assert "needs the bootstrap token in $SANDBOX_TOKEN" in (tmp_path / "c.log").read_text()


def test_the_cli_entry_is_built_once_when_warmed(capsys: pytest.CaptureFixture[str]) -> None:
    from sandbox.cli import app
    from sandbox.commands.lifecycle import ForkedEntry

    entry = ForkedEntry(app)
    entry.warm()  # what the preload calls, so every forked child shares the built command
    assert entry.command is not None and "typer._adapters" in sys.modules
    with pytest.raises(SystemExit) as done:
        entry(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.startswith("sandbox ")
