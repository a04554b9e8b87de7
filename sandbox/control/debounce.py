"""Debounce file events into batches: wait for a short quiet period, but never longer than a maximum.

An editor's save is a burst of events within a few milliseconds (temp file, write, rename, chmod),
so a quiet period of tens of milliseconds collapses it into one batch; the maximum delay keeps a
continuous stream of events (a script rewriting files in a loop) from postponing the push forever.
istiod does the same with PILOT_DEBOUNCE_AFTER (100 ms) and PILOT_DEBOUNCE_MAX (10 s); a laptop
mesh wants a faster loop, hence 20 ms / 200 ms.

Some events say a writer is done with a file: the file was closed after writing, or a complete
file was renamed into place (an atomic save). When every key's latest event is such a "settled"
one, the batch is due after a much shorter `settle` period (5 ms): that is a quarter of the
convergence time saved on every save, and a burst that is still going on keeps the full quiet.

`Debouncer` is pure (the caller passes `now`); `DebounceDriver` runs it on an asyncio loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)

DEFAULT_QUIET = 0.020
DEFAULT_MAX_DELAY = 0.200
DEFAULT_SETTLE = 0.005


@dataclass(frozen=True)
class Batch(Generic[K]):
    keys: frozenset[K]
    first_seen: float  # when the first event of the batch arrived (start of convergence time)
    last_seen: float
    events: int


class Debouncer(Generic[K]):
    """Collects keys; `take(now)` returns the batch once it is due, else None."""

    def __init__(
        self, quiet: float = DEFAULT_QUIET, max_delay: float = DEFAULT_MAX_DELAY, settle: float | None = None
    ) -> None:
        if quiet < 0 or max_delay < quiet:
            raise ValueError("need 0 <= quiet <= max_delay")
        self.quiet = quiet
        self.max_delay = max_delay
        self.settle = min(quiet, DEFAULT_SETTLE if settle is None else settle)
        self._keys: set[K] = set()
        self._unsettled: set[K] = set()  # keys whose latest event does not say the writer is done
        self._first: float | None = None
        self._last = 0.0
        self._events = 0

    @property
    def pending(self) -> bool:
        return self._first is not None

    def add(self, key: K, now: float, settled: bool = False) -> None:
        """An event for `key`; `settled` when it says the writer is done (closed after writing,
        or a complete file renamed into place)."""
        if self._first is None:
            self._first = now
        self._last = now
        self._keys.add(key)
        if settled:
            self._unsettled.discard(key)
        else:
            self._unsettled.add(key)
        self._events += 1

    def deadline(self) -> float | None:
        """When the pending batch becomes due (None when nothing is pending)."""
        if self._first is None:
            return None
        quiet = self.quiet if self._unsettled else self.settle
        return min(self._last + quiet, self._first + self.max_delay)

    def take(self, now: float) -> Batch[K] | None:
        deadline = self.deadline()
        if deadline is None or now < deadline or self._first is None:
            return None
        batch = Batch(frozenset(self._keys), self._first, self._last, self._events)
        self._keys = set()
        self._unsettled = set()
        self._first = None
        self._events = 0
        return batch


class DebounceDriver(Generic[K]):
    """Runs a Debouncer on the event loop: `add` from the loop thread, `on_batch` called when due.

    Threads (watchdog's observer) must hand events over with `loop.call_soon_threadsafe(driver.add, key)`.
    """

    def __init__(
        self,
        on_batch: Callable[[Batch[K]], None],
        debouncer: Debouncer[K] | None = None,
        clock: Callable[[], float] = time.monotonic,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.debouncer: Debouncer[K] = debouncer or Debouncer()
        self._on_batch = on_batch
        self._clock = clock
        self._loop = loop or asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._armed_for = 0.0  # the deadline the timer was set for (in `clock` time)

    def add(self, key: K, settled: bool = False) -> None:
        self.debouncer.add(key, self._clock(), settled)
        deadline = self.debouncer.deadline()
        if self._timer is None:
            self._arm()
        elif deadline is not None and deadline < self._armed_for - 0.001:
            self._timer.cancel()  # a settled event brought the deadline forward
            self._arm()

    def _arm(self) -> None:
        deadline = self.debouncer.deadline()
        if deadline is None:
            self._timer = None
            return
        self._armed_for = deadline
        self._timer = self._loop.call_later(max(0.0, deadline - self._clock()), self._fire)

    def _fire(self) -> None:
        self._timer = None
        batch = self.debouncer.take(self._clock())
        if batch is not None:
            self._on_batch(batch)
        self._arm()  # events that arrived since (or not yet due) get a new timer

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
