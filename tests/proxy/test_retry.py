"""retryOn classification (a pure table) and Envoy's fully jittered exponential backoff."""

from __future__ import annotations

import random

import pytest

from sandbox.proxy.retry import DEFAULT_RETRY_ON, Backoff, Failure, Outcome, RetryOn, should_retry

UF = Outcome(failure=Failure.CONNECT_FAILURE)
RESET = Outcome(failure=Failure.RESET)
REFUSED = Outcome(failure=Failure.REFUSED_STREAM)
TIMEOUT = Outcome(failure=Failure.PER_TRY_TIMEOUT)
OVERFLOW = Outcome(failure=Failure.OVERFLOW)
BEFORE = Outcome(failure=Failure.RESET_BEFORE_REQUEST)


def resp(status: int, grpc: int | None = None) -> Outcome:
    return Outcome(status=status, grpc_status=grpc)


@pytest.mark.parametrize(
    ("retry_on", "outcome", "expected"),
    [
        ("5xx", resp(500), True),
        ("5xx", resp(503), True),
        ("5xx", resp(404), False),
        ("5xx", UF, True),
        ("5xx", RESET, True),
        ("5xx", TIMEOUT, True),
        ("gateway-error", resp(502), True),
        ("gateway-error", resp(504), True),
        ("gateway-error", resp(500), False),
        ("gateway-error", UF, True),
        ("connect-failure", UF, True),
        ("connect-failure", RESET, False),
        ("connect-failure", resp(503), False),
        ("refused-stream", REFUSED, True),
        ("refused-stream", RESET, False),
        ("reset", RESET, True),
        ("reset", TIMEOUT, True),
        ("reset", resp(503), False),
        ("reset-before-request", BEFORE, True),
        ("reset-before-request", RESET, False),
        ("retriable-4xx", resp(409), True),
        ("retriable-4xx", resp(404), False),
        ("503", resp(503), True),  # Istio: a bare code becomes a retriable status code
        ("503", resp(502), False),
        ("503", RESET, False),  # a code only matches a real response
        ("retriable-status-codes", resp(503), False),  # no codes listed
        ("unavailable", resp(200, grpc=14), True),
        ("cancelled", resp(200, grpc=1), True),
        ("deadline-exceeded,internal,resource-exhausted", resp(200, grpc=13), True),
        ("unavailable", resp(200, grpc=13), False),
        ("5xx,gateway-error,reset,connect-failure", OVERFLOW, False),  # overflow is never retried
        ("bogus,5xx", resp(500), True),  # unknown policies are ignored
    ],
)
def test_should_retry(retry_on: str, outcome: Outcome, expected: bool) -> None:
    assert should_retry(RetryOn.parse(retry_on), outcome) is expected


def test_istio_default_retry_policy() -> None:
    assert should_retry(DEFAULT_RETRY_ON, UF)
    assert should_retry(DEFAULT_RETRY_ON, REFUSED)
    assert should_retry(DEFAULT_RETRY_ON, resp(200, grpc=14))
    assert not should_retry(DEFAULT_RETRY_ON, resp(503))  # since Istio 1.24
    assert not should_retry(DEFAULT_RETRY_ON, RESET)


def test_parse_retry_on_with_extra_codes() -> None:
    parsed = RetryOn.parse(" 5xx , 409", extra_codes=(418,))
    assert parsed.policies == {"5xx", "retriable-status-codes"}
    assert parsed.status_codes == {409, 418}


def test_backoff_intervals_double_then_cap_at_ten_times_base() -> None:
    # With rng.random() fixed just below 1, each wait is (almost) its whole interval.
    class Top(random.Random):
        def random(self) -> float:
            return 0.999999

    backoff = Backoff(Top())
    waits = [round(backoff.next(), 3) for _ in range(7)]
    assert waits == [0.025, 0.05, 0.1, 0.2, 0.25, 0.25, 0.25]


def test_backoff_is_fully_jittered() -> None:
    rng = random.Random(11)
    firsts = [Backoff(rng).next() for _ in range(2000)]
    assert 0 <= min(firsts) < 0.002 and 0.023 < max(firsts) < 0.025
    assert 0.0115 < sum(firsts) / len(firsts) < 0.0135  # uniform [0, 25 ms): mean 12.5 ms


def test_backoff_custom_base() -> None:
    class Top(random.Random):
        def random(self) -> float:
            return 0.999999

    backoff = Backoff(Top(), base=0.1)
    assert [round(backoff.next(), 2) for _ in range(5)] == [0.1, 0.2, 0.4, 0.8, 1.0]
