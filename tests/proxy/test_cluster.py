"""Live cluster state: a snapshot's clusters with balancer, breaker and detector wired together."""

from __future__ import annotations

import random

from sandbox.proxy.cluster import ClusterManager
from sandbox.xds.snapshot import (
    Cluster,
    ConnectionPool,
    Endpoint,
    LoadBalancer,
    OutlierDetectionPolicy,
    ProxyIdentity,
    ProxySnapshot,
    TrafficPolicy,
)

NAME = "outbound|9080||reviews.default.svc.cluster.local"


def endpoint(i: int) -> Endpoint:
    return Endpoint(
        address=f"127.0.0.{i}:9080", workload=f"reviews-v{i}", namespace="default", service_account="reviews"
    )


def snapshot(n: int = 3, outlier: OutlierDetectionPolicy | None = None, **pool: int) -> ProxySnapshot:
    policy = TrafficPolicy(
        load_balancer=LoadBalancer(simple="ROUND_ROBIN"),
        connection_pool=ConnectionPool(**pool),
        outlier_detection=outlier,
    )
    cluster = Cluster(
        name=NAME,
        service="reviews.default.svc.cluster.local",
        port=9080,
        traffic_policy=policy,
        endpoints=tuple(endpoint(i + 1) for i in range(n)),
    )
    identity = ProxyIdentity(
        workload="productpage-v1", namespace="default", service_account="bookinfo-productpage", spiffe_id="x"
    )
    return ProxySnapshot(identity=identity, clusters=(cluster,))


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_failing_endpoint_stops_receiving_traffic_and_returns_after_ejection() -> None:
    clock = Clock()
    manager = ClusterManager(clock, random.Random(1))
    manager.update(snapshot(outlier=OutlierDetectionPolicy(consecutive_5xx_errors=2, max_ejection_percent=50)))
    state = manager.get(NAME)
    assert state is not None
    bad = state.hosts.hosts[0]
    for _ in range(2):
        state.start(bad)
        state.finish(bad, 500)
    assert bad.ejected
    assert all(state.pick() is not bad for _ in range(30))
    clock.now = 40.0  # 30 s ejection, first sweep at 10 s steps after it
    assert bad in {state.pick() for _ in range(6)}
    assert state.upstream_rq_total == 2 and bad.active_requests == 0


def test_without_outlier_detection_nothing_is_ejected() -> None:
    manager = ClusterManager(Clock(), random.Random(1))
    manager.update(snapshot())
    state = manager.get(NAME)
    assert state is not None and state.outlier is None
    host = state.hosts.hosts[0]
    for _ in range(50):
        state.finish(host, 503)
        state.connect_failed(host)
    assert not host.ejected


def test_reset_without_response_counts_as_5xx() -> None:
    manager = ClusterManager(Clock(), random.Random(1))
    manager.update(snapshot(outlier=OutlierDetectionPolicy(consecutive_5xx_errors=1)))
    state = manager.get(NAME)
    assert state is not None
    state.finish(state.hosts.hosts[1], 0)
    assert state.hosts.hosts[1].ejected


def test_a_new_snapshot_keeps_host_and_breaker_state() -> None:
    clock = Clock()
    manager = ClusterManager(clock, random.Random(1))
    manager.update(snapshot(outlier=OutlierDetectionPolicy(consecutive_5xx_errors=1), max_connections=1))
    state = manager.get(NAME)
    assert state is not None
    state.finish(state.hosts.hosts[0], 503)
    assert state.breaker.try_connection() and not state.breaker.try_connection()
    manager.update(snapshot(n=4, outlier=OutlierDetectionPolicy(consecutive_5xx_errors=1), max_connections=5))
    new = manager.get(NAME)
    assert new is not None and new is not state
    assert new.hosts.hosts[0].ejected and len(new.hosts.healthy) == 3
    assert new.outlier is not None and new.outlier.ejections_active == 1
    assert new.breaker.connections == 1 and new.breaker.upstream_cx_overflow == 1
    assert new.breaker.limits.max_connections == 5


def test_removing_outlier_detection_returns_ejected_hosts() -> None:
    manager = ClusterManager(Clock(), random.Random(1))
    manager.update(snapshot(outlier=OutlierDetectionPolicy(consecutive_5xx_errors=1)))
    state = manager.get(NAME)
    assert state is not None
    state.finish(state.hosts.hosts[0], 503)
    manager.update(snapshot())
    again = manager.get(NAME)
    assert again is not None and len(again.hosts.healthy) == 3
