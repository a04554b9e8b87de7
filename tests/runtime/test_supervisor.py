"""The supervisor's restart policy and shutdown, on a fake clock with fake processes."""

from __future__ import annotations

import signal
from dataclasses import dataclass, field

import pytest

from sandbox.runtime.base import ComponentKind, Phase
from sandbox.runtime.supervisor import Backoff, Managed, ProcessSpec, Supervisor


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class FakeProcess:
    pid: int
    code: int | None = None
    stubborn: bool = False  # ignores SIGTERM
    signals: list[int] = field(default_factory=list)

    def poll(self) -> int | None:
        return self.code

    def signal_group(self, signum: int) -> None:
        self.signals.append(signum)
        if self.code is None and (signum == signal.SIGKILL or not self.stubborn):
            self.code = -signum


class FakeLauncher:
    """Starts FakeProcesses; `stubborn` names the components that ignore SIGTERM."""

    def __init__(self, stubborn: frozenset[str] = frozenset()) -> None:
        self.started: list[tuple[str, int, str | None]] = []
        self.current: dict[str, FakeProcess] = {}
        self.stubborn = stubborn

    def start(self, spec: ProcessSpec, note: str | None = None) -> FakeProcess:
        process = FakeProcess(100 + len(self.started), stubborn=spec.name in self.stubborn)
        self.started.append((spec.name, process.pid, note))
        self.current[spec.name] = process
        return process


def spec(name: str) -> ProcessSpec:
    return ProcessSpec(name, ComponentKind.APP, ("true",), {}, "/", f"/logs/{name}.log")


def supervisor(*names: str, stubborn: frozenset[str] = frozenset()) -> tuple[Supervisor, FakeLauncher, Clock]:
    clock, launcher = Clock(), FakeLauncher(stubborn)
    return Supervisor([spec(n) for n in names], launcher, clock, Backoff(0.5, 2.0, 4.0, 10.0)), launcher, clock


@pytest.mark.parametrize(("failures", "delay"), [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (9, 4.0)])
def test_backoff_doubles_up_to_the_cap(failures: int, delay: float) -> None:
    assert Backoff(0.5, 2.0, 4.0).delay(failures) == delay


def test_a_crashing_process_restarts_after_growing_delays() -> None:
    sup, launcher, clock = supervisor("web")
    sup.start_all()
    restart_times: list[float] = []
    for _ in range(5):
        launcher.current["web"].code = 1  # crashes at once
        [gone] = sup.tick()
        assert gone.phase is Phase.RESTARTING and gone.exit_code == 1
        crashed_at = clock.now
        while len(launcher.started) == len(restart_times) + 1:
            clock.sleep(0.1)
            sup.tick()
        restart_times.append(round(clock.now - crashed_at, 1))
    assert restart_times == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert sup.processes["web"].restarts == 5
    assert launcher.started[-1][2] == "[sandbox] web exited with status 1; restart #5"


def test_a_process_that_ran_long_enough_starts_over_at_the_first_delay() -> None:
    sup, launcher, clock = supervisor("web")
    sup.start_all()
    for _ in range(3):  # three quick crashes: the next delay would be 4 s
        launcher.current["web"].code = 1
        sup.tick()
        clock.sleep(sup.next_restart() - clock.now)  # type: ignore[operator]
        sup.tick()
    clock.sleep(30)  # now it runs for a while
    launcher.current["web"].code = 1
    sup.tick()
    assert sup.next_restart() == clock.now + 0.5


def test_other_processes_are_untouched_by_one_crashing() -> None:
    sup, launcher, _ = supervisor("web", "api")
    sup.start_all()
    api = launcher.current["api"]
    launcher.current["web"].code = 1
    sup.tick()
    assert api.signals == [] and sup.processes["api"].phase is Phase.STARTING


def test_readiness_is_per_start() -> None:
    sup, launcher, clock = supervisor("web")
    sup.start_all()
    sup.mark_ready("web")
    assert sup.processes["web"].phase is Phase.READY
    launcher.current["web"].code = 3
    sup.tick()
    clock.sleep(1)
    sup.tick()
    phase: Phase = sup.processes["web"].phase
    assert phase is Phase.STARTING  # ready again only once probed again


def test_stop_terms_every_group_then_kills_the_stubborn_and_never_restarts() -> None:
    sup, launcher, clock = supervisor("web", "api", "db", stubborn=frozenset({"api"}))
    changes: list[tuple[str, Phase]] = []
    sup.on_change = lambda m: changes.append((m.spec.name, m.phase))
    sup.start_all()
    launcher.current["db"].code = 1
    sup.tick()  # db is waiting for its restart when the stop comes
    processes = dict(launcher.current)
    started = len(launcher.started)
    sup.stop(grace=5.0, sleep=clock.sleep)
    assert processes["web"].signals[0] == signal.SIGTERM and processes["web"].code == -signal.SIGTERM
    assert processes["api"].signals[:2] == [signal.SIGTERM, signal.SIGKILL]
    assert processes["api"].code == -signal.SIGKILL
    assert all(m.phase is Phase.STOPPED for m in sup.processes.values())
    clock.sleep(60)
    sup.tick()
    assert len(launcher.started) == started  # nothing restarted after the stop
    assert ("api", Phase.STOPPED) in changes


def test_every_pid_a_component_ever_had_is_remembered() -> None:
    sup, launcher, clock = supervisor("web")
    sup.start_all()
    launcher.current["web"].code = 1
    sup.tick()
    clock.sleep(1)
    sup.tick()
    managed: Managed = sup.processes["web"]
    assert managed.pids == [100, 101] and managed.pid == 101
