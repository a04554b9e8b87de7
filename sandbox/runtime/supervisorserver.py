"""A supervisor server for the local runtime: one process that imports the mesh's code once and
forks a supervisor (localdaemon.Daemon) for each mesh started through it.

`sandbox up` spawns a fresh supervisor, which spends about a second of CPU importing what it forks
(forkserver.preload). A test session that starts a mesh per test would pay that each time; with a
server it pays once, and each further mesh is forked from the preloaded heap in milliseconds. The
server ends when its owner closes the pipe to its stdin (`close`, or the owner's death); the
supervisors it forked live in their own sessions and stop their meshes when their owner ends (the
plan's `owner`), so a killed test session leaves nothing running.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import IO

from sandbox.runtime.base import RuntimeFailure

CONNECT_TIMEOUT = 60.0  # the first connection waits for the preload (seconds on a busy machine)


class SupervisorServer:
    def __init__(self, log_file: Path, python: str = sys.executable) -> None:
        self._directory = tempfile.TemporaryDirectory(prefix="sandbox-supervisors-")
        self.path = str(Path(self._directory.name) / "server.sock")
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with log_file.open("ab") as log:
            self.process = subprocess.Popen(
                [python, "-m", "sandbox", "local-daemon", "--serve", self.path],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                start_new_session=True,  # a terminal's Ctrl-C reaches the test session, which closes it
                close_fds=True,
            )
        self._ready = False

    def _wait_ready(self) -> None:
        if self._ready:
            return
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # after its preload: the socket is bound
        if line.strip() != b"ready":
            raise RuntimeFailure(f"the supervisor server did not start (exit {self.process.poll()}); see its log")
        self._ready = True

    def start(self, run_dir: Path, log_file: Path) -> IO[bytes]:
        """Fork a supervisor for the plan in `run_dir`; its progress (JSON lines) comes on the stream."""
        self._wait_ready()
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        connection.settimeout(CONNECT_TIMEOUT)
        try:
            connection.connect(self.path)
            connection.sendall(json.dumps({"run_dir": str(run_dir), "log": str(log_file)}).encode() + b"\n")
        except OSError as exc:
            connection.close()
            raise RuntimeFailure(f"the supervisor server does not answer: {exc}") from None
        connection.settimeout(None)
        stream = connection.makefile("rb")
        connection.close()  # the stream keeps the socket open
        return stream

    def close(self) -> None:
        """End the server (meshes it started keep running until they are brought down)."""
        if self.process.stdin is not None and not self.process.stdin.closed:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._directory.cleanup()

    @property
    def running(self) -> bool:
        return self.process.poll() is None
