"""Per-cluster circuit breakers: Envoy's resource manager with the thresholds Istio sets.

DestinationRule `connectionPool` -> Envoy thresholds (Istio `cluster_traffic_policy.go`):
tcp.maxConnections -> max_connections, http.http1MaxPendingRequests -> max_pending_requests,
http.http2MaxRequests -> max_requests, http.maxRetries -> max_retries, each defaulting to MaxUint32
(Istio overrides Envoy's 1024/1024/1024/3). `maxRequestsPerConnection` (0 = unlimited, 1 disables
keep-alive) is a pool setting, kept here so the pool reads all limits from one place.

How Envoy's HTTP/1 pool uses them (the data path's pool follows the same order):
1. a new request when active requests >= max_requests: fail, `upstream_rq_pending_overflow`, 503 UO;
2. an idle connection is free: use it (the request becomes active);
3. otherwise the request waits as pending if pending < max_pending_requests (else the same overflow),
   and the pool opens a connection if connections < max_connections (else `upstream_cx_overflow`
   and the request waits for a connection to free up);
4. a retry needs retries < max_retries, else `upstream_rq_retry_overflow` and the last response is
   returned as is.
`*_open` gauges are 1 while the matching resource is at its limit, as in Envoy's
`circuit_breakers.default.*` stats; `remaining_*` are what is left.
"""

from __future__ import annotations

from dataclasses import dataclass

from sandbox.xds.snapshot import MAX_UINT32, ConnectionPool


@dataclass(frozen=True, slots=True)
class Thresholds:
    max_connections: int = MAX_UINT32
    max_pending_requests: int = MAX_UINT32
    max_requests: int = MAX_UINT32
    max_retries: int = MAX_UINT32
    max_requests_per_connection: int = 0  # 0 = unlimited

    @classmethod
    def from_pool(cls, pool: ConnectionPool) -> Thresholds:
        """From the snapshot's resolved connection pool (Istio's defaults already filled in)."""
        return cls(
            max_connections=pool.max_connections,
            max_pending_requests=pool.http1_max_pending_requests,
            max_requests=pool.http2_max_requests,
            max_retries=pool.max_retries,
            max_requests_per_connection=pool.max_requests_per_connection,
        )


class CircuitBreaker:
    """Counts connections, pending, active requests and retries against Thresholds.

    `try_*` acquire one unit and return False (counting the overflow) at the limit; every
    successful `try_*` must be paired with the matching `release_*`.
    """

    __slots__ = (
        "active_requests",
        "connections",
        "limits",
        "pending_requests",
        "retries",
        "upstream_cx_overflow",
        "upstream_rq_pending_overflow",
        "upstream_rq_retry_overflow",
    )

    def __init__(self, limits: Thresholds | None = None) -> None:
        self.limits = limits or Thresholds()
        self.connections = 0
        self.pending_requests = 0
        self.active_requests = 0
        self.retries = 0
        self.upstream_cx_overflow = 0
        self.upstream_rq_pending_overflow = 0
        self.upstream_rq_retry_overflow = 0

    # Connections (tcp.maxConnections).
    def try_connection(self) -> bool:
        if self.connections >= self.limits.max_connections:
            self.upstream_cx_overflow += 1
            return False
        self.connections += 1
        return True

    def release_connection(self) -> None:
        self.connections -= 1

    # Pending requests (http.http1MaxPendingRequests): waiting for a connection.
    def try_pending(self) -> bool:
        if self.pending_requests >= self.limits.max_pending_requests:
            self.upstream_rq_pending_overflow += 1
            return False
        self.pending_requests += 1
        return True

    def release_pending(self) -> None:
        self.pending_requests -= 1

    # Active requests (http.http2MaxRequests; applies to HTTP/1.1 too).
    def try_request(self) -> bool:
        if self.active_requests >= self.limits.max_requests:
            self.upstream_rq_pending_overflow += 1  # Envoy counts this overflow under the same stat
            return False
        self.active_requests += 1
        return True

    def release_request(self) -> None:
        self.active_requests -= 1

    # Retries in flight (http.maxRetries).
    def try_retry(self) -> bool:
        if self.retries >= self.limits.max_retries:
            self.upstream_rq_retry_overflow += 1
            return False
        self.retries += 1
        return True

    def release_retry(self) -> None:
        self.retries -= 1

    def connection_exhausted(self, requests_served: int) -> bool:
        """True when a connection has served maxRequestsPerConnection and must close."""
        limit = self.limits.max_requests_per_connection
        return limit > 0 and requests_served >= limit

    def gauges(self) -> dict[str, int]:
        """Envoy's circuit_breakers.default.* values: `*_open` flags and `remaining_*` counts."""
        lim = self.limits
        return {
            "cx_open": int(self.connections >= lim.max_connections),
            "cx_pool_open": int(self.connections >= lim.max_connections),
            "rq_pending_open": int(self.pending_requests >= lim.max_pending_requests),
            "rq_open": int(self.active_requests >= lim.max_requests),
            "rq_retry_open": int(self.retries >= lim.max_retries),
            "remaining_cx": max(0, lim.max_connections - self.connections),
            "remaining_pending": max(0, lim.max_pending_requests - self.pending_requests),
            "remaining_rq": max(0, lim.max_requests - self.active_requests),
            "remaining_retries": max(0, lim.max_retries - self.retries),
        }

    def counters(self) -> dict[str, int]:
        return {
            "upstream_cx_active": self.connections,
            "upstream_rq_pending_active": self.pending_requests,
            "upstream_rq_active": self.active_requests,
            "upstream_cx_overflow": self.upstream_cx_overflow,
            "upstream_rq_pending_overflow": self.upstream_rq_pending_overflow,
            "upstream_rq_retry_overflow": self.upstream_rq_retry_overflow,
        }
