"""A test session that is interrupted (Ctrl-C), terminated (SIGTERM) or killed outright leaves no
process of its meshes behind: finalizers, the SIGTERM handler, and the supervisors watching
their owner."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from plugin_support import children_running, make_project, mesh_pids, pytest_env

from sandbox.runtime.local import alive

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]

WAITING = """\
import os, pathlib, time


def test_waits(mesh):
    pathlib.Path(os.environ["SANDBOX_TEST_MARK"]).write_text(str(mesh.compose_file))
    time.sleep(120)
"""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=["int", "term", "kill"])
def test_an_interrupted_session_leaves_no_process(tmp_path: Path, signum: signal.Signals) -> None:
    project = make_project(tmp_path / "shop", {"test_wait.py": WAITING})
    mark = tmp_path / "mark"
    session = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"],
        cwd=project,
        env={**pytest_env(), "SANDBOX_TEST_MARK": str(mark)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # As from a terminal: Ctrl-C's default action, whatever this test process inherited
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 120
        while not mark.exists() and session.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert mark.exists(), session.communicate()[0] if session.poll() is not None else "no mesh after 120 s"
        started = [*mesh_pids(Path(mark.read_text())), *children_running(session.pid, "--serve")]
        assert len(started) >= 10 and all(alive(p) for p in started)
        session.send_signal(signum)
        output, _ = session.communicate(timeout=60)
        if signum != signal.SIGKILL:
            assert session.returncode != 0 and "KeyboardInterrupt" in output, output
        deadline = time.monotonic() + 30  # killed: the supervisor notices within a poll (0.25 s)
        while any(alive(p) for p in started) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [p for p in started if alive(p)] == []
    finally:
        session.kill()
        session.wait()
