"""Retry classification and backoff, as Envoy's router applies Istio's `retries`.

- `RetryOn.parse("5xx,gateway-error,503")`: Istio turns bare integers into retriable status codes
  and turns on `retriable-status-codes` (`retry.go parseRetryOn`). Unknown policies are ignored,
  as Envoy ignores unknown `x-envoy-retry-on` values.
- `should_retry(retry_on, outcome)` is pure. What each policy covers (Envoy router docs and
  `retry_state_impl.cc`):
  * `5xx`: any 5xx response, and no response at all (connect failure, reset, per-try timeout);
  * `gateway-error`: 502/503/504 responses, and the same failures (which Envoy answers with 503/504);
  * `connect-failure`: the connection could not be made (or timed out connecting);
  * `refused-stream`: the upstream refused the stream (HTTP/2 REFUSED_STREAM);
  * `reset`: no response: disconnect, reset or per-try timeout; `reset-before-request` only before
    any of the request was sent;
  * `retriable-4xx`: 409; `retriable-status-codes`: the listed codes;
  * gRPC: `cancelled` (1), `deadline-exceeded` (4), `resource-exhausted` (8), `internal` (13),
    `unavailable` (14) from the grpc-status of the response.
  Overflow (a circuit breaker said no) is never retried.
- `Backoff`: Envoy's JitteredExponentialBackOffStrategy: retry n waits uniform [0, I_n) with
  I_1 = base (25 ms), I_{n+1} = 2 I_n until it passes max/2, then max (default 10 x base = 250 ms).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import Enum

RETRIABLE_4XX = frozenset({409})
GRPC_CODES = {"cancelled": 1, "deadline-exceeded": 4, "resource-exhausted": 8, "internal": 13, "unavailable": 14}
_FLAGS = {
    "5xx",
    "gateway-error",
    "connect-failure",
    "refused-stream",
    "reset",
    "reset-before-request",
    "retriable-4xx",
    "retriable-status-codes",
    "retriable-headers",
    *GRPC_CODES,
}


class Failure(Enum):
    """What happened to an attempt when there is no usable response."""

    CONNECT_FAILURE = "connect_failure"  # refused, unreachable, or connect timeout (UF)
    RESET = "reset"  # upstream closed or reset before a response (UR / UC)
    RESET_BEFORE_REQUEST = "reset_before_request"  # reset before any request byte went out
    REFUSED_STREAM = "refused_stream"
    PER_TRY_TIMEOUT = "per_try_timeout"  # UT for the attempt
    OVERFLOW = "overflow"  # circuit breaker (UO): never retried


@dataclass(frozen=True, slots=True)
class Outcome:
    """One attempt's result: a response status (and grpc-status), or a failure."""

    status: int = 0
    grpc_status: int | None = None
    failure: Failure | None = None


@dataclass(frozen=True, slots=True)
class RetryOn:
    policies: frozenset[str] = frozenset()
    status_codes: frozenset[int] = frozenset()
    grpc_codes: frozenset[int] = frozenset()

    @classmethod
    def parse(cls, text: str, extra_codes: tuple[int, ...] = ()) -> RetryOn:
        policies: set[str] = set()
        codes = set(extra_codes)
        for raw in text.split(","):
            item = raw.strip().lower()
            if not item:
                continue
            if item.isdigit():
                codes.add(int(item))
            elif item in _FLAGS:
                policies.add(item)
        if codes:
            policies.add("retriable-status-codes")
        grpc = frozenset(code for name, code in GRPC_CODES.items() if name in policies)
        return cls(frozenset(policies), frozenset(codes), grpc)


# Istio's default when a route sets no `retries` (retry.go DefaultPolicy; no 503 since 1.24).
DEFAULT_RETRY_ON = RetryOn.parse("connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes")
DEFAULT_ATTEMPTS = 2


def should_retry(retry_on: RetryOn, outcome: Outcome) -> bool:
    p = retry_on.policies
    failure = outcome.failure
    if failure is not None:
        if failure is Failure.OVERFLOW:
            return False
        if failure is Failure.CONNECT_FAILURE and "connect-failure" in p:
            return True
        if failure is Failure.REFUSED_STREAM and "refused-stream" in p:
            return True
        if failure is Failure.RESET_BEFORE_REQUEST and "reset-before-request" in p:
            return True
        return "5xx" in p or "gateway-error" in p or "reset" in p
    status = outcome.status
    if status >= 500 and "5xx" in p:
        return True
    if status in (502, 503, 504) and "gateway-error" in p:
        return True
    if status in RETRIABLE_4XX and "retriable-4xx" in p:
        return True
    if status in retry_on.status_codes and "retriable-status-codes" in p:
        return True
    return outcome.grpc_status is not None and outcome.grpc_status in retry_on.grpc_codes


class Backoff:
    """Fully jittered exponential backoff for one request's retries (seconds)."""

    __slots__ = ("_doubling_limit", "_max", "_next", "_rand")

    def __init__(self, rng: random.Random, base: float = 0.025, max_interval: float | None = None) -> None:
        self._max = max_interval if max_interval is not None else 10 * base
        self._doubling_limit = self._max / 2
        self._next = base
        self._rand = rng.random

    def next(self) -> float:
        interval = self._next
        self._next = interval * 2 if interval < self._doubling_limit else self._max
        return self._rand() * interval
