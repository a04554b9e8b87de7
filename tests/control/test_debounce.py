from __future__ import annotations

import asyncio

import pytest

from sandbox.control.debounce import Batch, DebounceDriver, Debouncer


def test_editor_save_burst_is_one_batch_after_the_quiet_period() -> None:
    d: Debouncer[str] = Debouncer(quiet=0.020, max_delay=0.200)
    # vim's save: 4913 probe, the file, a rename, within 3 ms
    for t, key in [(1.000, "4913"), (1.001, "vs.yaml"), (1.003, "vs.yaml")]:
        d.add(key, t)
    assert d.take(1.010) is None  # still inside the quiet period
    assert d.take(1.0229) is None
    batch = d.take(1.023)
    assert batch == Batch(frozenset({"4913", "vs.yaml"}), 1.000, 1.003, 3)
    assert not d.pending
    assert d.take(2.0) is None  # nothing left


def test_each_event_restarts_the_quiet_period() -> None:
    d: Debouncer[str] = Debouncer(quiet=0.020, max_delay=0.200)
    d.add("a", 0.0)
    d.add("a", 0.015)
    assert d.deadline() == pytest.approx(0.035)
    assert d.take(0.030) is None
    assert d.take(0.035) is not None


def test_a_continuous_stream_still_flushes_at_the_maximum_delay() -> None:
    d: Debouncer[int] = Debouncer(quiet=0.020, max_delay=0.200)
    flushed: list[Batch[int]] = []
    for i in range(100):  # an event every 10 ms for a second: never 20 ms of quiet
        t = i * 0.010
        d.add(i, t)
        batch = d.take(t)
        if batch:
            flushed.append(batch)
    assert len(flushed) == 4  # at 0.20, 0.41, 0.62, 0.83 s (each batch starts a new window)
    assert all(b.last_seen - b.first_seen <= 0.200 + 1e-9 for b in flushed)
    assert flushed[0].first_seen == 0.0 and flushed[0].keys == frozenset(range(21))
    assert d.pending  # the tail of the stream waits for its own quiet period


def test_nothing_pending_has_no_deadline() -> None:
    d: Debouncer[str] = Debouncer()
    assert d.deadline() is None and d.take(10.0) is None


def test_rejects_a_maximum_shorter_than_the_quiet_period() -> None:
    with pytest.raises(ValueError):
        Debouncer(quiet=0.5, max_delay=0.1)


def test_driver_delivers_one_batch_per_burst_on_a_real_loop() -> None:
    async def scenario() -> list[Batch[str]]:
        batches: list[Batch[str]] = []
        driver: DebounceDriver[str] = DebounceDriver(batches.append, Debouncer(quiet=0.01, max_delay=0.1))
        for key in ("a", "b", "a"):
            driver.add(key)
        deadline = asyncio.get_running_loop().time() + 2.0
        while not batches and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.005)
        driver.add("c")
        while len(batches) < 2 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.005)
        driver.close()
        return batches

    batches = asyncio.run(scenario())
    assert [b.keys for b in batches] == [frozenset({"a", "b"}), frozenset({"c"})]


def test_a_finished_write_is_due_after_the_short_settle_period() -> None:
    d: Debouncer[str] = Debouncer(quiet=0.020, max_delay=0.200, settle=0.005)
    d.add("vs.yaml", 1.000)  # truncated, being written
    assert d.deadline() == pytest.approx(1.020)
    d.add("vs.yaml", 1.002, settled=True)  # closed after writing
    assert d.deadline() == pytest.approx(1.007)
    assert d.take(1.006) is None and d.take(1.007) is not None


def test_a_key_still_being_written_keeps_the_full_quiet_period() -> None:
    d: Debouncer[str] = Debouncer(quiet=0.020, max_delay=0.200, settle=0.005)
    d.add("a.yaml", 1.000)  # still open
    d.add("b.yaml", 1.001, settled=True)  # renamed into place
    assert d.deadline() == pytest.approx(1.021)
    d.add("a.yaml", 1.003, settled=True)
    assert d.deadline() == pytest.approx(1.008)
    d.take(1.008)
    d.add("c.yaml", 2.0, settled=True)  # a new batch starts with nothing unsettled
    assert d.deadline() == pytest.approx(2.005)


def test_a_settled_event_brings_the_drivers_timer_forward() -> None:
    async def scenario() -> list[float]:
        loop = asyncio.get_running_loop()
        fired: list[float] = []
        start = loop.time()
        driver: DebounceDriver[str] = DebounceDriver(
            lambda batch: fired.append(loop.time() - start), Debouncer(quiet=5.0, max_delay=10.0, settle=0.01)
        )
        driver.add("vs.yaml")  # would wait 5 s
        driver.add("vs.yaml", settled=True)
        for _ in range(200):
            if fired:
                break
            await asyncio.sleep(0.01)
        driver.close()
        return fired

    fired = asyncio.run(scenario())
    assert len(fired) == 1 and fired[0] < 2.0
