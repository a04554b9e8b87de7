"""Circuit breakers: Istio's connectionPool limits and Envoy's overflow counters."""

from __future__ import annotations

from sandbox.proxy.circuitbreaker import CircuitBreaker, Thresholds
from sandbox.xds.snapshot import MAX_UINT32, ConnectionPool


def test_istio_defaults_are_max_uint32() -> None:
    limits = Thresholds.from_pool(ConnectionPool())
    assert (limits.max_connections, limits.max_pending_requests, limits.max_requests, limits.max_retries) == (
        MAX_UINT32,
    ) * 4
    assert limits.max_requests_per_connection == 0
    breaker = CircuitBreaker(limits)
    assert all(breaker.try_request() for _ in range(10_000))
    assert breaker.gauges()["rq_open"] == 0


def test_istio_circuit_breaking_task_burst() -> None:
    """maxConnections 1, http1MaxPendingRequests 1: of three concurrent requests, one overflows."""
    breaker = CircuitBreaker(Thresholds.from_pool(ConnectionPool(max_connections=1, http1_max_pending_requests=1)))
    # Request 1 opens the only connection and runs on it.
    assert breaker.try_request() and breaker.try_connection()
    # Request 2 needs a connection: none may be opened, so it waits as pending.
    assert breaker.try_request()
    assert not breaker.try_connection()
    assert breaker.try_pending()
    # Request 3 finds the pending queue full: 503 UO.
    assert breaker.try_request()
    assert not breaker.try_pending()
    breaker.release_request()
    c = breaker.counters()
    assert c["upstream_cx_overflow"] == 1 and c["upstream_rq_pending_overflow"] == 1
    g = breaker.gauges()
    assert g["cx_open"] == 1 and g["rq_pending_open"] == 1 and g["remaining_cx"] == 0
    # Request 1 finishes; request 2 takes over its connection and the breaker closes again.
    breaker.release_request()
    breaker.release_pending()
    assert breaker.gauges()["rq_pending_open"] == 0 and breaker.gauges()["remaining_pending"] == 1


def test_max_requests_overflow_counts_as_pending_overflow() -> None:
    breaker = CircuitBreaker(Thresholds(max_requests=2))
    assert breaker.try_request() and breaker.try_request()
    assert not breaker.try_request()
    assert breaker.upstream_rq_pending_overflow == 1 and breaker.gauges()["rq_open"] == 1
    breaker.release_request()
    assert breaker.try_request()


def test_max_retries_overflow() -> None:
    breaker = CircuitBreaker(Thresholds(max_retries=1))
    assert breaker.try_retry()
    assert not breaker.try_retry()
    assert breaker.upstream_rq_retry_overflow == 1 and breaker.gauges()["rq_retry_open"] == 1
    breaker.release_retry()
    assert breaker.try_retry()


def test_max_requests_per_connection() -> None:
    assert not CircuitBreaker().connection_exhausted(1_000_000)  # 0: unlimited
    one = CircuitBreaker(Thresholds.from_pool(ConnectionPool(max_requests_per_connection=1)))
    assert one.connection_exhausted(1)  # 1 disables keep-alive
    assert not CircuitBreaker(Thresholds(max_requests_per_connection=3)).connection_exhausted(2)
