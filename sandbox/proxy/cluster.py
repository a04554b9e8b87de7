"""Live cluster state: one per snapshot cluster, combining hosts, balancer, breaker and detector.

The data path's per-request contract (all O(1) except ring-hash's O(log n) lookup):
    state = clusters.get(decision.cluster)
    host = state.pick(head, source_ip)          # None -> 503 UH "no healthy upstream"
    state.breaker.try_request() ...             # circuit breaking, see circuitbreaker.py
    state.start(host) ... state.finish(host, status) / state.connect_failed(host)
A new snapshot replaces the clusters, but hosts (by address) and breakers (by cluster name) keep
their counters and ejections, as Envoy keeps host state across EDS updates.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator

from sandbox.proxy.balancing import Balancer, Host, HostSet, Passthrough, Pick, RingHash, make_balancer
from sandbox.proxy.circuitbreaker import CircuitBreaker, Thresholds
from sandbox.proxy.decision import RequestHead
from sandbox.proxy.outlier import OutlierDetector
from sandbox.xds.snapshot import PASSTHROUGH_CLUSTER, Cluster, ProxySnapshot

Clock = Callable[[], float]


class ClusterState:
    __slots__ = (
        "balancer",
        "breaker",
        "clock",
        "config",
        "hosts",
        "makes_cookies",
        "name",
        "outlier",
        "plain_pick",
        "upstream_rq_total",
    )
    hosts: HostSet
    breaker: CircuitBreaker
    upstream_rq_total: int

    def __init__(
        self,
        config: Cluster,
        clock: Clock,
        rng: random.Random,
        previous: ClusterState | None = None,
    ) -> None:
        self.name = config.name
        self.config = config
        self.clock = clock
        old_hosts = {h.address: h for h in previous.hosts.hosts} if previous else {}
        hosts = []
        for endpoint in config.endpoints:
            fresh = Host.from_endpoint(endpoint)
            kept = old_hosts.get(fresh.address)
            if kept is not None:
                kept.endpoint = endpoint
            hosts.append(kept or fresh)
        self.hosts = HostSet(hosts)
        policy = config.traffic_policy
        self.balancer: Balancer = make_balancer(policy.load_balancer, self.hosts, rng)
        # consistentHash on a cookie with a ttl: a request without the cookie gets one (pick_with_cookie)
        self.makes_cookies = isinstance(self.balancer, RingHash) and self.balancer.makes_cookies
        # the data path calls pick() unless the cluster is an original-destination one or makes cookies
        self.plain_pick = not (
            self.makes_cookies or isinstance(self.balancer, Passthrough) or config.name == PASSTHROUGH_CLUSTER
        )
        limits = Thresholds.from_pool(policy.connection_pool)
        if previous is not None:
            self.breaker = previous.breaker
            self.breaker.limits = limits
            self.upstream_rq_total = previous.upstream_rq_total
        else:
            self.breaker = CircuitBreaker(limits)
            self.upstream_rq_total = 0
        od = policy.outlier_detection
        self.outlier = OutlierDetector(od, self.hosts, clock()) if od is not None else None
        if self.outlier is not None and previous is not None and previous.outlier is not None:
            self.outlier.ejections_active = sum(1 for h in hosts if h.ejected)
        elif self.outlier is None:
            for host in hosts:  # no detector any more: nothing stays ejected
                host.ejected = False
            self.hosts.refresh()

    @property
    def passthrough(self) -> bool:
        return isinstance(self.balancer, Passthrough)

    def pick(self, request: RequestHead | None = None, source_ip: str = "") -> Host | None:
        outlier = self.outlier
        if outlier is not None:
            outlier.maybe_sweep(self.clock())
        return self.balancer.pick(request, source_ip)

    def pick_with_cookie(self, request: RequestHead, source_ip: str, connection: str) -> Pick | None:
        """pick() for a cluster that `makes_cookies`: the host, and the Set-Cookie to answer with (if any)."""
        outlier = self.outlier
        if outlier is not None:
            outlier.maybe_sweep(self.clock())
        balancer = self.balancer
        assert isinstance(balancer, RingHash)
        return balancer.pick_with_cookie(request, source_ip, connection)

    def start(self, host: Host) -> None:
        """A request was sent to `host` (least-request balancing reads this count)."""
        host.active_requests += 1
        host.rq_total += 1
        self.upstream_rq_total += 1

    def finish(self, host: Host, status: int) -> None:
        """The request to `host` ended with an upstream `status`; 0 when it got none (a reset,
        which Envoy counts as a 5xx; pass 504 for a per-try timeout)."""
        host.active_requests -= 1
        if 0 < status < 500:
            host.rq_success += 1
        else:
            host.rq_error += 1
        if self.outlier is not None:
            self.outlier.on_response(host, status or 503, self.clock())

    def connect_failed(self, host: Host, timeout: bool = False) -> None:
        """A connection to `host` could not be made (local origin error)."""
        host.cx_connect_fail += 1
        if self.outlier is not None:
            self.outlier.on_connect_failure(host, self.clock(), timeout)


class ClusterManager:
    """All clusters of the current snapshot, by name."""

    def __init__(self, clock: Clock = time.monotonic, rng: random.Random | None = None) -> None:
        self.clock = clock
        self.rng = rng or random.Random()
        self.clusters: dict[str, ClusterState] = {}

    def update(self, snapshot: ProxySnapshot) -> None:
        old = self.clusters
        self.clusters = {c.name: ClusterState(c, self.clock, self.rng, old.get(c.name)) for c in snapshot.clusters}

    def get(self, name: str) -> ClusterState | None:
        return self.clusters.get(name)

    def __iter__(self) -> Iterator[ClusterState]:
        return iter(self.clusters.values())
