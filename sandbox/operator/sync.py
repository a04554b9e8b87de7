"""`sandbox wait --synced` as a library call: poll the control plane's /api/v1/sync until no change
on disk waits to be applied and every sidecar of the mesh has ACKed the current config."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from sandbox.operator.client import Unreachable, get_json
from sandbox.operator.views import not_synced
from sandbox.runtime.project import MeshRecord

POLL = 0.05


@dataclass(frozen=True)
class SyncResult:
    synced: bool
    problems: tuple[str, ...] = ()  # what is still out of sync when it timed out
    rejected: tuple[str, ...] = ()  # files the control plane rejected (their last good version is in force)


def wait_synced(
    record: MeshRecord,
    timeout: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> SyncResult:
    expected = [p.node for p in record.proxies]
    deadline = clock() + timeout
    problems: list[str] = []
    while True:
        try:
            sync = get_json(record.control_plane, "/api/v1/sync", timeout=min(5.0, max(0.5, timeout)))
            problems = not_synced(sync, expected)
            if not problems:
                return SyncResult(True, rejected=tuple(sync.get("rejected", [])))
        except Unreachable as exc:
            problems = [str(exc)]
        if clock() >= deadline:
            return SyncResult(False, tuple(problems))
        sleep(POLL)
