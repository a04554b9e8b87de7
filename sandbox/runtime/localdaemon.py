"""The local runtime's supervisor process: `python -m sandbox local-daemon RUN_DIR` (a hidden command).

`sandbox up` starts this detached (its own session, so it outlives
the shell and `sandbox down` from anywhere can stop it by the pid in the record), with the plan
in RUN_DIR/plan.json. It starts every component, and reports each one's progress as
JSON lines on stdout until the mesh is ready (or a component fails, when it stops everything
and says which, with the tail of its log). Then it writes the MeshRecord, closes stdout and
supervises: restarts with backoff, readiness of restarted processes, processes.json for `status`
and `down`. SIGTERM, SIGINT or SIGHUP stop everything and remove the record, and so does the end
of the plan's `owner` process when it names one (the pytest fixture's session, even if killed).

`local-daemon --serve SOCKET` is a supervisor server: it preloads once and forks one supervisor per
mesh asked for on a Unix socket, whose connection carries that supervisor's progress (the pytest
fixture starts a mesh per test this way without paying the preload each time).

Stdlib and sandbox.runtime only, plus the code it preloads to fork sandbox's own processes from
(forkserver.py): it lives as long as the mesh, so it stays small.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

from sandbox.runtime import logfiles, probes
from sandbox.runtime.base import ComponentKind, Phase, ProgressEvent
from sandbox.runtime.forkserver import Entry, forkable
from sandbox.runtime.launch import MeshLauncher
from sandbox.runtime.project import MeshRecord, write_atomic
from sandbox.runtime.supervisor import Managed, ProcessSpec, Supervisor

PLAN_FILE = "plan.json"
PROCESSES_FILE = "processes.json"
PID_FILE = "supervisor.pid"
LOG_TAIL = 20
POLL = 0.1  # while starting: each round probes every waiting component (and costs them a request)
SUPERVISE_POLL = 0.25
ROTATE_EVERY = 40  # supervise rounds (10 s) between log size checks


class Daemon:
    def __init__(self, run_dir: Path, launcher: MeshLauncher) -> None:
        self.run_dir = run_dir
        plan = json.loads((run_dir / PLAN_FILE).read_text())
        self.specs = [ProcessSpec.from_data(s) for s in plan["specs"]]
        self.record_data: dict[str, Any] = plan["record"]
        self.record_file = Path(plan["record_file"])
        self.timeout = float(plan.get("timeout", 60.0))
        self.began = time.monotonic()
        self.stop_requested = False
        self.dirty = True
        self.supervisor = Supervisor(self.specs, launcher, on_change=self._changed)
        self.owner: dict[str, Any] | None = plan.get("owner")
        self.out: Any = sys.stdout

    # -- reporting -------------------------------------------------------------------------
    def _changed(self, _managed: Managed) -> None:
        self.dirty = True

    def emit(self, message: dict[str, Any]) -> None:
        if self.out is None:
            return
        try:
            self.out.write(json.dumps(message) + "\n")
            self.out.flush()
        except (OSError, ValueError):  # `up` went away (Ctrl-C): keep going, the stop comes as a signal
            self.out = None

    def note(self, text: str) -> None:
        """A timing line in the supervisor's log (what `up` waited for, when it is slow)."""
        sys.stderr.write(f"{time.strftime('%H:%M:%S')} +{time.monotonic() - self.began:.2f}s {text}\n")
        sys.stderr.flush()

    def progress(self, managed: Managed, phase: Phase, detail: str = "") -> None:
        spec = managed.spec
        event = ProgressEvent(spec.name, spec.kind, phase, detail, round(time.monotonic() - self.began, 3))
        self.emit({"event": event.to_data()})

    def write_processes(self) -> None:
        if not self.dirty:
            return
        self.dirty = False
        rows = [
            {
                "name": m.spec.name,
                "kind": m.spec.kind.value,
                "workload": m.spec.workload,
                "pid": m.pid,
                "pids": m.pids,
                "argv0": m.spec.argv[0] if m.spec.argv else "",
                "phase": m.phase.value,
                "restarts": m.restarts,
                "exit_code": m.exit_code,
                "address": m.spec.address,
                "log_file": m.spec.log_file,
                "probe": m.spec.probe.to_data() if m.spec.probe else None,
            }
            for m in self.supervisor.processes.values()
        ]
        write_atomic(self.run_dir / PROCESSES_FILE, json.dumps({"supervisor": os.getpid(), "processes": rows}) + "\n")

    # -- lifecycle -------------------------------------------------------------------------
    def request_stop(self, _signum: int, _frame: Any) -> None:
        self.stop_requested = True

    def owner_gone(self) -> bool:
        """The plan's owner process has ended (checked by pid and start time: pids are reused)."""
        if not self.owner or self.stop_requested:
            return False
        if process_identity(int(self.owner["pid"])) == self.owner.get("identity"):
            return False
        self.note(f"its owner (pid {self.owner['pid']}) has ended: stopping the mesh")
        self.stop_requested = True
        return True

    def start(self) -> bool:
        """Start everything and wait until all are ready. The chain every sidecar waits on
        (preload -> control plane -> pushed config) goes first: the forked components (control
        plane first), then the subprocesses (apps, Prometheus), whose imports would otherwise
        compete with the preload for the CPU. (A sidecar up before the control plane listens
        retries within 0.1-0.8 s; waiting for it would add its start-up time.)"""
        order = sorted(self.specs, key=lambda s: (not forkable(s), s.kind is not ComponentKind.CONTROL_PLANE))
        subprocesses = False
        for spec in order:
            if not forkable(spec) and not subprocesses:
                self.note(f"{sum(forkable(s) for s in order)} components forked")
                subprocesses = True
            self.progress(self.supervisor.start(spec.name), Phase.STARTING, spec.address)
        self.note("every component started")
        self.write_processes()
        return self.wait_ready([s.name for s in order], self.began + self.timeout)

    def wait_ready(self, names: list[str], deadline: float) -> bool:
        waiting = {n: self.supervisor.processes[n] for n in names}
        while waiting:
            if self.stop_requested or self.owner_gone():
                self.emit({"interrupted": True})
                return False
            for managed in waiting.values():
                code = managed.handle.poll() if managed.handle else None
                if code is not None:
                    return self.fail(managed, f"it exited with status {code} before it was ready")
            # all at once: one slow answer (a loaded machine) must not hold up noticing the others
            checks = {n: m.spec.probe for n, m in waiting.items() if m.spec.probe is not None}
            ready = probes.check_all(checks, timeout=0.5)
            for name, managed in list(waiting.items()):
                if managed.spec.probe is None or ready.get(name):
                    self.supervisor.mark_ready(name)
                    elapsed = time.monotonic() - self.began
                    self.progress(managed, Phase.READY, f"{managed.spec.address} ready in {elapsed:.1f} s")
                    del waiting[name]
            if waiting and time.monotonic() > deadline:
                managed = next(iter(waiting.values()))
                probe = managed.spec.probe
                assert probe is not None  # a component without a probe is ready at once
                what = f"{probe.kind} {probe.host}:{probe.port}{probe.path if probe.kind == 'http' else ''}"
                return self.fail(managed, f"not ready after {self.timeout:.0f} s (probe: {what})")
            if waiting:
                time.sleep(POLL)
        return True

    def fail(self, managed: Managed, reason: str) -> bool:
        self.progress(managed, Phase.FAILED, reason)
        self.emit(
            {
                "failed": {
                    "component": managed.spec.name,
                    "reason": reason,
                    "log_file": managed.spec.log_file,
                    "log_tail": logfiles.tail(managed.spec.log_file, LOG_TAIL),
                }
            }
        )
        return False

    def supervise(self) -> None:
        rounds = 0
        while not self.stop_requested and not self.owner_gone():
            rounds += 1
            if rounds % ROTATE_EVERY == 0:
                for spec in self.specs:
                    logfiles.rotate(spec.log_file)
            for managed in self.supervisor.tick():
                sys.stderr.write(f"{managed.spec.name} exited with status {managed.exit_code}\n")
            starting = {
                name: m.spec.probe
                for name, m in self.supervisor.processes.items()
                if m.phase is Phase.STARTING and m.spec.probe is not None
            }
            for name, ok in probes.check_all(starting, timeout=0.2).items():
                if ok:
                    self.supervisor.mark_ready(name)
            self.write_processes()
            time.sleep(SUPERVISE_POLL)

    def shutdown(self) -> None:
        self.supervisor.stop(grace=5.0)
        self.dirty = True
        self.write_processes()
        record = self.record_file
        try:
            current = json.loads(record.read_text())
            if current.get("extra", {}).get("supervisor_pid") == os.getpid():
                record.unlink()
        except (OSError, ValueError):
            pass
        (self.run_dir / PID_FILE).unlink(missing_ok=True)

    def run(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self.request_stop)
        write_atomic(self.run_dir / PID_FILE, f"{os.getpid()}\n")
        try:
            if not self.start():
                return 1
            extra = {**self.record_data.get("extra", {}), "supervisor_pid": os.getpid(), "run_dir": str(self.run_dir)}
            record = MeshRecord.from_data({**self.record_data, "started_at": time.time(), "extra": extra})
            write_atomic(self.record_file, record.to_json())
            self.emit({"ready": {"elapsed": round(time.monotonic() - self.began, 3)}})
            self.note("every component ready")
            self._close_stdout()
            self.supervise()
            return 0
        finally:
            self.shutdown()

    def _close_stdout(self) -> None:
        """`up --detach` has returned: nothing reads the pipe (or the server's connection) any more."""
        out, self.out = self.out, None
        if out is not None and out is not sys.stdout:
            with contextlib.suppress(OSError):
                out.close()
            return
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)


def process_identity(pid: int) -> str | None:
    """`pid:start time` of a running process (its start time tells a reused pid apart); None when gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return f"{pid}:?"  # no /proc (not Linux): the pid alone
    return None if fields[0] == "Z" else f"{pid}:{fields[19]}"


def serve(path: str, entry: Entry) -> int:
    """The supervisor server: preload, then per connection read `{"run_dir", "log"}` and fork a
    supervisor for that plan, reporting on the connection. Ends on EOF on stdin (its owner went
    away); the supervisors it forked live on in their own sessions and watch their owner."""
    launcher = MeshLauncher(entry)
    launcher.preload()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(8)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while True:
        readable, _, _ = select.select([listener, sys.stdin], [], [], 1.0)
        _reap()
        if sys.stdin in readable and not os.read(sys.stdin.fileno(), 4096):
            listener.close()
            return 0
        if listener in readable:
            connection, _ = listener.accept()
            with contextlib.suppress(OSError, ValueError):
                _fork_supervisor(connection, listener, launcher)
            connection.close()


def _fork_supervisor(connection: socket.socket, listener: socket.socket, launcher: MeshLauncher) -> None:
    reader = connection.makefile("rb")
    request = json.loads(reader.readline())
    reader.close()
    if os.fork():
        return
    code = 1
    try:  # the supervisor: never return into the server's loop
        listener.close()
        os.setsid()
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, signal.SIG_DFL)
        devnull = os.open(os.devnull, os.O_RDWR)
        log = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        for fd, target in ((0, devnull), (1, devnull), (2, log)):  # nothing of the server's pipes
            os.dup2(target, fd)
        os.close(devnull)
        os.close(log)
        daemon = Daemon(Path(request["run_dir"]), launcher)
        daemon.out = connection.makefile("w")
        code = daemon.run()
    except BaseException:  # reported in its log, then it ends
        import traceback

        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os._exit(code)


def _reap() -> None:
    """Collect the supervisors that ended (they are the server's children)."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass


def main(run_dir: Path | None, entry: Entry) -> int:
    """`run_dir`: start the plan in it. None (`--warm`): start preloading at once and read the
    run directory from stdin (`up` starts it this way before its preflight, so the two overlap,
    and the apps start while the preload finishes); end quietly on EOF. `entry` runs the command
    line of a process forked from the preloaded code (the CLI)."""
    launcher = MeshLauncher(entry)
    if run_dir is None:
        launcher.preload_in_background()
        line = sys.stdin.readline().strip()
        if not line:  # `up` stopped before starting anything; the preload thread may still run
            os._exit(0)
        run_dir = Path(line)
    return Daemon(run_dir, launcher).run()
