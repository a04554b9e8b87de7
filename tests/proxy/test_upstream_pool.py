"""Endpoint pools under a cluster-wide connection limit (Envoy's HTTP/1 pool behaviour)."""

from __future__ import annotations

import asyncio

from dataplane_support import Received, Reply, Upstream, compose_for, fetch, mesh_snapshot, running_sidecar, socket_test

COMPOSE = compose_for(("productpage-v1", "productpage", "v1"), ("reviews-v1", "reviews", "v1"),
                      ("reviews-v2", "reviews", "v2"))  # fmt: skip
ONE_CONNECTION = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    connectionPool:
      tcp: {maxConnections: 1}
      http: {http1MaxPendingRequests: 1, maxRequestsPerConnection: 1}
"""


@socket_test
async def test_a_host_without_connections_opens_one_over_the_cluster_limit() -> None:
    """Istio's circuit-breaking task with two endpoints: the cluster's one connection is busy on one
    host while a request waits on the other; Envoy still opens that host's first connection
    (conn_pool_base tryCreateNewConnection), so the waiting request is served, not stuck."""

    async def slow(request: Received) -> Reply:
        await asyncio.sleep(0.2)
        return Reply()

    async with Upstream(slow) as v1, Upstream(slow) as v2:
        addresses = {"reviews-v1": v1.address, "reviews-v2": v2.address}
        snapshot = mesh_snapshot(COMPOSE, ONE_CONNECTION, "productpage-v1", addresses)
        async with running_sidecar(snapshot) as sc:
            first = asyncio.ensure_future(fetch(sc.outbound, "/", host="reviews:9080"))
            while not v1.requests and not v2.requests:  # the first holds the cluster's one connection
                await asyncio.sleep(0.005)
            second = fetch(sc.outbound, "/", host="reviews:9080")
            results = await asyncio.wait_for(asyncio.gather(first, second), 3)
            state = next(s for s in sc.sidecar.clusters if s.name.startswith("outbound|9080||reviews"))
            await asyncio.sleep(0.1)  # both connections close after their one request
            assert state.breaker.connections == 0
    assert sorted(r.status for r in results) == [200, 200]
    assert v1.connections == 1 and v2.connections == 1
