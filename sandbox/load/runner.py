"""Carry out a LoadPlan: `connections` workers on one event loop, bounded in calls and time.

Each worker keeps one connection (reopened after the server closes it or a call fails, each
opening counted as a socket, as fortio's "Sockets used") and sends its calls one after another,
paced to qps / connections when a rate is asked for. Calls are claimed from one shared budget so
`-n` means exactly n calls; no call starts after the plan's time is up, and every call ends
within `timeout` (connect included), so a run lasts at most run_for + timeout.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from sandbox.load.client import Answer, Connection, ProtocolError
from sandbox.load.plan import LoadPlan
from sandbox.load.stats import LoadResult, Recorder


class _Budget:
    def __init__(self, calls: int, deadline: float, clock: Callable[[], float]) -> None:
        self.left = calls
        self.deadline = deadline
        self.clock = clock

    def take(self) -> bool:
        if self.left <= 0 or self.clock() >= self.deadline:
            return False
        self.left -= 1
        return True


async def run(plan: LoadPlan, *, clock: Callable[[], float] = time.monotonic) -> LoadResult:
    target = plan.target()
    request = plan.request_bytes()
    recorder = Recorder()
    started = clock()
    budget = _Budget(plan.max_requests, started + plan.run_for, clock)

    async def worker(index: int) -> None:
        held: list[Connection] = []  # this worker's open connection, if any

        async def call() -> Answer:
            if not held or held[0].closed:
                held[:] = [await Connection.open(target.host, target.port)]
                recorder.sockets += 1
            return await held[0].exchange(request)

        def drop() -> None:
            if held:
                held.pop().close()

        interval = plan.interval
        next_at = started + interval * index / plan.connections  # spread the workers' first calls
        try:
            while budget.take():
                if interval:
                    wait = next_at - clock()
                    if wait > 0:
                        await asyncio.sleep(wait)
                    next_at = max(next_at, clock()) + interval  # late: go now, and never burst to catch up
                begin = clock()
                try:
                    answer = await asyncio.wait_for(call(), plan.timeout)
                except TimeoutError:
                    recorder.fail("timeout", clock() - begin)
                    drop()
                    continue
                except (OSError, ProtocolError) as exc:
                    recorder.fail(_reason(exc), clock() - begin)
                    drop()
                    continue
                recorder.record(answer.status, clock() - begin, answer.header_bytes, answer.body_bytes)
                if not answer.keep_alive:
                    drop()
        finally:
            drop()

    await asyncio.gather(*(worker(i) for i in range(plan.connections)))
    elapsed = clock() - started
    return LoadResult.build(
        plan.url,
        plan.proxy,
        plan.connections,
        plan.qps,
        plan.requests,
        None if plan.requests is not None else plan.run_for,
        elapsed,
        recorder,
    )


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    if isinstance(exc, ProtocolError):
        return str(exc)
    return getattr(exc, "strerror", None) or type(exc).__name__
