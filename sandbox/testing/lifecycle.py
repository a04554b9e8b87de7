"""Starting and stopping test meshes, and making sure none outlives its test session.

A mesh starts the way `sandbox up --detach` starts one (runtime.start.prepare, then Runtime.up),
from a private working copy of the project (runtime.workcopy: its own state, Istio directory and
free ingress port), so the project's files and a mesh the developer runs are never touched and
parallel sessions never collide. On the local runtime every mesh of the session is forked from
one supervisor server (runtime.supervisorserver), so a mesh per test costs well under a second.

Nothing outlives the session: the pytest finalizers stop each mesh (pytest runs them on Ctrl-C
too), an atexit handler stops what is left, SIGTERM is turned into KeyboardInterrupt while a mesh
runs (Python's default would skip both), and a session killed outright is caught by the local
runtime itself: each supervisor watches its owner, the session's process, and stops its mesh
when that ends.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import tempfile
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType
from typing import Any

from sandbox.testing.errors import MeshError
from sandbox.testing.mesh import Mesh


@dataclass(frozen=True)
class MeshConfig:
    compose: Path
    istio: Path | None = None  # default: istio/ beside the compose file
    runtime: str = "local"  # local or compose
    prometheus: bool = False  # optional components, off unless asked: they cost start time
    console: bool = False  # the console also collects the traces `mesh.traces` reads
    timeout: float = 60.0  # seconds for the mesh to become ready

    def but(self, **changes: Any) -> MeshConfig:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Launcher:
    """Starts meshes and stops every one it started (also at exit or on SIGTERM)."""

    def __init__(self, workdir: Path | None = None) -> None:
        self.workdir = workdir
        self.running: list[Mesh] = []
        self._server: Any = None  # the local runtime's SupervisorServer, started with the first mesh
        self._server_log: Path | None = None
        self._lock = threading.Lock()
        self._guard = _Guard(self)

    def start(self, config: MeshConfig) -> Mesh:
        from sandbox.runtime.base import RecordingProgress, RuntimeFailure, UpOptions
        from sandbox.runtime.preflight import check, read_inputs
        from sandbox.runtime.start import prepare
        from sandbox.runtime.workcopy import CopyFailed, work_copy

        if config.runtime not in ("local", "compose"):
            raise MeshError(f"runtime must be local or compose, not {config.runtime!r}")
        if config.runtime == "local":
            self._supervisor_server()  # its preload runs while the inputs are read and checked here
        compose = config.compose.resolve()
        if not compose.is_file():
            raise MeshError(f"no compose file {compose} (set --sandbox-compose or the sandbox_compose ini key)")
        istio = (config.istio or compose.parent / "istio").resolve()
        found = check(read_inputs(compose, istio), config.runtime)
        if found:  # the project's own errors, named in its own files (not the copy's)
            raise MeshError("the mesh cannot start:\n" + "\n".join(d.format() for d in found))
        directory = Path(tempfile.mkdtemp(prefix="sandbox-mesh-", dir=self.workdir))
        name = f"{compose.parent.name}-{directory.name.rsplit('-', 1)[-1]}"  # the Compose project name: unique
        try:
            project = work_copy(compose, istio, directory / name, config.runtime, free_port())
        except (CopyFailed, OSError) as exc:
            raise MeshError(str(exc)) from None
        launch = prepare(project, config.runtime, self._engine(config.runtime, project))
        if launch.problems:
            raise MeshError("the mesh cannot start:\n" + "\n".join(d.format() for d in launch.problems))
        options = UpOptions(
            detach=True,
            timeout=config.timeout,
            prometheus=config.prometheus,
            console=config.console,
            owner=os.getpid(),
        )
        self._guard.arm()
        try:
            record = launch.up(options, RecordingProgress())
        except RuntimeFailure as failure:
            tail = getattr(failure, "log_tail", ())
            raise MeshError(f"the mesh did not start: {failure}" + "".join(f"\n  {line}" for line in tail)) from None
        except BaseException:  # interrupted while starting: whatever started goes
            with contextlib.suppress(Exception):
                launch.engine.down(project, None)
            raise
        mesh = Mesh(project, record, launch.engine, config.compose, stop=self.stop)
        with self._lock:
            self.running.append(mesh)
        return mesh

    def _engine(self, runtime: str, project: Any) -> Any:
        if runtime != "local":
            return None
        from sandbox.runtime.local import LocalRuntime

        return LocalRuntime(server=self._supervisor_server())

    def _supervisor_server(self) -> Any:
        from sandbox.runtime.supervisorserver import SupervisorServer

        if self._server is None or not self._server.running:
            where = self.workdir or Path(tempfile.gettempdir())
            self._server_log = where / f"sandbox-supervisor-server-{os.getpid()}.log"
            self._server = SupervisorServer(self._server_log)
        return self._server

    def stop(self, mesh: Mesh) -> None:
        with self._lock:
            if mesh not in self.running:
                return
            self.running.remove(mesh)
        mesh.engine.down(mesh.project, mesh.record)
        if self.workdir is None:  # our temporary directory: the copy and its logs go too
            import shutil

            shutil.rmtree(mesh.project.directory.parent, ignore_errors=True)

    def close(self) -> None:
        """Stop every mesh still running, then the supervisor server."""
        for mesh in list(self.running):
            with contextlib.suppress(Exception):
                self.stop(mesh)
        if self._server is not None:
            self._server.close()
            self._server = None
            if self.workdir is None and self._server_log is not None:  # kept under pytest's basetemp
                self._server_log.unlink(missing_ok=True)
        self._guard.disarm()


class _Guard:
    """atexit and SIGTERM handling while the launcher has meshes (installed on the first start)."""

    def __init__(self, launcher: Launcher) -> None:
        self.launcher = launcher
        self.armed = False
        self.previous: Any = None

    def arm(self) -> None:
        if self.armed:
            return
        self.armed = True
        atexit.register(self.launcher.close)
        if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) in (
            signal.SIG_DFL,
            None,
        ):
            self.previous = signal.signal(signal.SIGTERM, _interrupt)

    def disarm(self) -> None:
        if not self.armed:
            return
        self.armed = False
        atexit.unregister(self.launcher.close)
        if self.previous is not None and threading.current_thread() is threading.main_thread():
            if signal.getsignal(signal.SIGTERM) is _interrupt:
                signal.signal(signal.SIGTERM, self.previous)
            self.previous = None


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    """SIGTERM as Ctrl-C: pytest stops, runs its finalizers and the meshes go down."""
    raise KeyboardInterrupt
