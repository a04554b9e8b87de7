"""Keep a set of host processes running: start each in its own process group, restart what
exits with exponential backoff (as the kubelet's CrashLoopBackOff, with laptop-sized numbers),
and stop everything, group by group, so nothing is left behind.

The logic is pure over two injected parts, a Launcher (starts a ProcessSpec, returns a Handle)
and a clock, so restart timing is tested with a fake clock and fake processes; launch.py has the
real launcher.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from sandbox.runtime.base import ComponentKind, Phase


@dataclass(frozen=True)
class Probe:
    """How to tell a component is ready: an HTTP GET answering 2xx, or a TCP port accepting."""

    kind: str  # "http" or "tcp"
    host: str
    port: int
    path: str = "/"

    def to_data(self) -> dict[str, Any]:
        return {"kind": self.kind, "host": self.host, "port": self.port, "path": self.path}


@dataclass(frozen=True)
class ProcessSpec:
    name: str  # the component name (base.py): controlplane, <node>, <node>.proxy, ...
    kind: ComponentKind
    argv: tuple[str, ...]
    env: dict[str, str]  # the whole environment of the process
    cwd: str
    log_file: str
    probe: Probe | None = None
    address: str = ""  # what `status` shows, e.g. 127.0.0.1:8080
    workload: str = ""  # the workload this belongs to ("" for mesh-wide components)

    def to_data(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind.value,
            "argv": list(self.argv),
            "env": self.env,
            "cwd": self.cwd,
            "log_file": self.log_file,
            "probe": self.probe.to_data() if self.probe else None,
            "address": self.address,
            "workload": self.workload,
        }

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> ProcessSpec:
        probe = data.get("probe")
        return cls(
            data["name"],
            ComponentKind(data["kind"]),
            tuple(data["argv"]),
            dict(data["env"]),
            data["cwd"],
            data["log_file"],
            Probe(**probe) if probe else None,
            data.get("address", ""),
            data.get("workload", ""),
        )


class Handle(Protocol):
    pid: int

    def poll(self) -> int | None:
        """The exit status once the process has exited (reaping it), else None."""
        ...

    def signal_group(self, signum: int) -> None:
        """Signal the process's whole group (it leads its own); no error if it is gone."""
        ...


class Launcher(Protocol):
    def start(self, spec: ProcessSpec, note: str | None = None) -> Handle:
        """Start `spec` in a new process group; `note` is a line for its log (why it restarts)."""
        ...


@dataclass(frozen=True)
class Backoff:
    """Delay before restart number n of a process that keeps exiting: initial * factor**(n-1),
    capped; a process that ran `reset_after` seconds before exiting starts over at `initial`."""

    initial: float = 0.5
    factor: float = 2.0
    maximum: float = 30.0
    reset_after: float = 10.0

    def delay(self, failures: int) -> float:
        return min(self.initial * self.factor ** max(failures - 1, 0), self.maximum)


@dataclass
class Managed:
    spec: ProcessSpec
    handle: Handle | None = None
    phase: Phase = Phase.STOPPED
    restarts: int = 0
    failures: int = 0  # consecutive quick exits (drive the backoff)
    started_at: float = 0.0
    restart_at: float | None = None
    exit_code: int | None = None
    pids: list[int] = field(default_factory=list)  # every pid it has had (down checks them all)

    @property
    def pid(self) -> int | None:
        return self.handle.pid if self.handle else None


Listener = Callable[[Managed], None]


class Supervisor:
    def __init__(
        self,
        specs: Iterable[ProcessSpec],
        launcher: Launcher,
        clock: Callable[[], float] = time.monotonic,
        backoff: Backoff | None = None,
        on_change: Listener | None = None,
    ) -> None:
        self.processes = {spec.name: Managed(spec) for spec in specs}
        self.launcher = launcher
        self.clock = clock
        self.backoff = backoff or Backoff()
        self.on_change = on_change or (lambda _m: None)
        self.stopping = False

    def start(self, name: str) -> Managed:
        managed = self.processes[name]
        self._launch(managed, None)
        return managed

    def start_all(self) -> None:
        for name in self.processes:
            self.start(name)

    def _launch(self, managed: Managed, note: str | None) -> None:
        managed.handle = self.launcher.start(managed.spec, note)
        if managed.handle.pid > 0:
            managed.pids.append(managed.handle.pid)
        managed.phase = Phase.STARTING
        managed.started_at = self.clock()
        managed.restart_at = None
        managed.exit_code = None
        self.on_change(managed)

    def mark_ready(self, name: str) -> None:
        managed = self.processes[name]
        if managed.phase is Phase.STARTING:
            managed.phase = Phase.READY
            self.on_change(managed)

    def exited(self) -> list[Managed]:
        """Reap: the processes that exited since the last call (now RESTARTING or STOPPED)."""
        found = []
        for managed in self.processes.values():
            if managed.handle is None or managed.phase in (Phase.STOPPED, Phase.RESTARTING):
                continue
            code = managed.handle.poll()
            if code is None:
                continue
            managed.handle.signal_group(signal.SIGKILL)  # whatever it left behind in its group
            managed.exit_code = code
            ran = self.clock() - managed.started_at
            managed.failures = 1 if ran >= self.backoff.reset_after else managed.failures + 1
            if self.stopping:
                managed.phase = Phase.STOPPED
            else:
                managed.phase = Phase.RESTARTING
                managed.restart_at = self.clock() + self.backoff.delay(managed.failures)
            found.append(managed)
            self.on_change(managed)
        return found

    def tick(self) -> list[Managed]:
        """Reap exited processes and restart those whose backoff has passed; returns the exited."""
        found = self.exited()
        now = self.clock()
        for managed in self.processes.values():
            if managed.phase is Phase.RESTARTING and managed.restart_at is not None and managed.restart_at <= now:
                managed.restarts += 1
                note = (
                    f"[sandbox] {managed.spec.name} exited with status {managed.exit_code}; restart #{managed.restarts}"
                )
                self._launch(managed, note)
        return found

    def next_restart(self) -> float | None:
        due = [m.restart_at for m in self.processes.values() if m.restart_at is not None]
        return min(due) if due else None

    def stop(self, grace: float = 5.0, sleep: Callable[[float], None] = time.sleep) -> None:
        """SIGTERM every group, wait up to `grace` seconds, SIGKILL the groups still there."""
        self.stopping = True
        running = [m for m in self.processes.values() if m.handle is not None and m.phase is not Phase.STOPPED]
        for managed in self.processes.values():
            managed.restart_at = None
            if managed.phase is Phase.RESTARTING:
                managed.phase = Phase.STOPPED
        for managed in running:
            assert managed.handle is not None
            managed.handle.signal_group(signal.SIGTERM)
        deadline = self.clock() + grace
        while any(m.phase is not Phase.STOPPED for m in running) and self.clock() < deadline:
            self.exited()
            sleep(0.02)
        stragglers = [m for m in running if m.phase is not Phase.STOPPED]
        for managed in running:  # exited leaders may have left children in their group
            assert managed.handle is not None
            managed.handle.signal_group(signal.SIGKILL)
        deadline = self.clock() + 2.0
        while stragglers and self.clock() < deadline:
            self.exited()
            stragglers = [m for m in stragglers if m.phase is not Phase.STOPPED]
            if stragglers:
                sleep(0.02)
