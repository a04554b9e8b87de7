"""Time for the data path: a clock and one-shot timers, injected (Envoy's Dispatcher and TimeSource).

The exchange, the pools and mirrors ask `Timers` for the time and for timers instead of the event
loop, so sans-io tests drive them with a manual clock: no sleeps, no real waiting. `LoopTimers`
is the production one, the event loop itself. A base class, not a Protocol: compiled, calls
through it are direct, and a test's manual clock subclasses it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

from mypy_extensions import mypyc_attr


class Timer(Protocol):
    def cancel(self) -> None: ...


@mypyc_attr(allow_interpreted_subclasses=True)
class Timers:
    def now(self) -> float:
        """Monotonic seconds (durations, deadlines)."""
        raise NotImplementedError

    def wall(self) -> float:
        """Seconds since the epoch (START_TIME, span timestamps)."""
        raise NotImplementedError

    def call_later(self, delay: float, callback: Callable[[], object]) -> Timer:
        raise NotImplementedError

    def call_soon(self, callback: Callable[[], object]) -> None:
        """After the current callback, in this pass of the loop."""
        raise NotImplementedError


class LoopTimers(Timers):
    __slots__ = ("loop", "time")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.time = loop.time  # bound once: a request asks the time five times

    def now(self) -> float:
        return self.time()

    def wall(self) -> float:
        return time.time()

    def call_later(self, delay: float, callback: Callable[[], object]) -> Timer:
        return self.loop.call_later(delay, callback)

    def call_soon(self, callback: Callable[[], object]) -> None:
        self.loop.call_soon(callback)
