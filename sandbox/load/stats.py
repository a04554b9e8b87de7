"""A run's outcome: latencies (histogram in fortio's buckets, percentiles), codes, sockets. Pure.

Percentiles come from the recorded latencies themselves (every call is kept, bounded by the
plan's caps), interpolated between neighbours; the histogram only groups them for display.
"""

from __future__ import annotations

import bisect
import math
from array import array
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

PERCENTILES = (50.0, 75.0, 90.0, 99.0, 99.9)
ERROR_CODE = -1  # fortio's code for a call that got no HTTP answer (refused, reset, timed out)

# fortio's histogram bucket ends, in seconds (stats.go: histogramBucketValues / 1000 with divider)
BUCKETS = (
    0.001, 0.002, 0.003, 0.004, 0.005, 0.006, 0.007, 0.008, 0.009, 0.010, 0.011, 0.012, 0.014, 0.016,
    0.018, 0.020, 0.025, 0.030, 0.035, 0.040, 0.045, 0.050, 0.060, 0.070, 0.080, 0.090, 0.100, 0.120,
    0.140, 0.160, 0.180, 0.200, 0.250, 0.300, 0.350, 0.400, 0.450, 0.500, 0.600, 0.700, 0.800, 0.900,
    1.0, 1.2, 1.4, 1.6, 1.8, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 12.0, 14.0,
    16.0, 18.0, 20.0, 25.0, 30.0, 35.0, 40.0, 45.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0, 120.0,
)  # fmt: skip


@dataclass(frozen=True)
class Bucket:
    start: float
    end: float
    count: int
    percent: float  # cumulative: the share of calls at or below `end`


@dataclass(frozen=True)
class Latency:
    count: int
    min: float
    max: float
    sum: float
    avg: float
    stddev: float
    percentiles: tuple[tuple[float, float], ...]
    buckets: tuple[Bucket, ...]

    @classmethod
    def of(cls, samples: Sequence[float]) -> Latency:
        values = sorted(samples)
        n = len(values)
        if n == 0:
            return cls(0, 0.0, 0.0, 0.0, 0.0, 0.0, tuple((p, 0.0) for p in PERCENTILES), ())
        total = math.fsum(values)
        avg = total / n
        variance = math.fsum((v - avg) ** 2 for v in values) / n
        return cls(
            n,
            values[0],
            values[-1],
            total,
            avg,
            math.sqrt(variance),
            tuple((p, percentile(values, p)) for p in PERCENTILES),
            histogram(values),
        )


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile of sorted `values`, linearly interpolated between closest ranks."""
    if not values:
        return 0.0
    rank = (len(values) - 1) * p / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (rank - low)


def histogram(values: Sequence[float]) -> tuple[Bucket, ...]:
    """Sorted `values` in fortio's buckets; only non-empty ones, the first starting at the minimum
    and the last ending at the maximum (as fortio prints them)."""
    if not values:
        return ()
    counts: Counter[int] = Counter(bisect.bisect_left(BUCKETS, v) for v in values)
    out, seen, n = [], 0, len(values)
    for index in sorted(counts):
        start = BUCKETS[index - 1] if index > 0 else 0.0
        end = BUCKETS[index] if index < len(BUCKETS) else values[-1]
        seen += counts[index]
        out.append(Bucket(max(start, values[0]), min(end, values[-1]), counts[index], 100.0 * seen / n))
    return tuple(out)


@dataclass
class Recorder:
    """What the workers write into while the run goes on."""

    latencies: array[float] = field(default_factory=lambda: array("d"))
    codes: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)  # why calls got no answer
    sockets: int = 0
    header_bytes: int = 0
    body_bytes: int = 0

    def record(self, code: int, seconds: float, header_bytes: int = 0, body_bytes: int = 0) -> None:
        self.latencies.append(seconds)
        self.codes[code] += 1
        self.header_bytes += header_bytes
        self.body_bytes += body_bytes

    def fail(self, reason: str, seconds: float) -> None:
        self.errors[reason] += 1
        self.record(ERROR_CODE, seconds)


@dataclass(frozen=True)
class LoadResult:
    url: str
    proxy: str | None
    connections: int
    qps: float  # requested; 0 = max
    requests: int | None
    duration: float | None
    elapsed: float  # seconds from the first call to the last answer
    latency: Latency
    codes: dict[int, int]
    errors: dict[str, int]
    sockets: int
    header_bytes: int
    body_bytes: int

    @property
    def calls(self) -> int:
        return self.latency.count

    @property
    def actual_qps(self) -> float:
        return self.calls / self.elapsed if self.elapsed > 0 else 0.0

    def share(self, code: int) -> float:
        return 100.0 * self.codes.get(code, 0) / self.calls if self.calls else 0.0

    @classmethod
    def build(
        cls,
        plan_url: str,
        proxy: str | None,
        connections: int,
        qps: float,
        requests: int | None,
        duration: float | None,
        elapsed: float,
        recorder: Recorder,
    ) -> LoadResult:
        return cls(
            plan_url,
            proxy,
            connections,
            qps,
            requests,
            duration,
            elapsed,
            Latency.of(recorder.latencies),
            dict(sorted(recorder.codes.items())),
            dict(sorted(recorder.errors.items())),
            recorder.sockets,
            recorder.header_bytes,
            recorder.body_bytes,
        )
