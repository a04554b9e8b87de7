"""Microbenchmark of the per-request cluster and telemetry work: nanoseconds per call.

Run: .venv/bin/python benchmarks/cluster_bench.py [--n 200000]
CPU time (process_time) per call, best of 5 rounds; the loop overhead of an empty call is
subtracted. Covers balancer picks (3 and 50 hosts), ring-hash by header, the breaker's
acquire/release, an outlier result, metrics recording, Telemetry.finish, trace context creation
and one access-log line's formatting (once per request, when it ends; written in batches).
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable

from sandbox.proxy.accesslog import format_line
from sandbox.proxy.balancing import Host, HostSet, make_balancer
from sandbox.proxy.circuitbreaker import CircuitBreaker
from sandbox.proxy.decision import RequestHead
from sandbox.proxy.outlier import OutlierDetector
from sandbox.proxy.record import record
from sandbox.proxy.telemetry import Telemetry
from sandbox.xds.identity import ProxyIdentity
from sandbox.xds.snapshot import ConsistentHash, Endpoint, LoadBalancer, OutlierDetectionPolicy

IDENTITY = ProxyIdentity(
    workload="productpage-v1",
    namespace="default",
    service_account="bookinfo-productpage",
    spiffe_id="spiffe://cluster.local/ns/default/sa/bookinfo-productpage",
    labels={"app": "productpage", "version": "v1"},
    app="productpage",
    version="v1",
)
ENDPOINT = Endpoint(
    address="127.0.0.1:15006",
    workload="reviews-v2",
    namespace="default",
    service_account="bookinfo-reviews",
    labels={"app": "reviews", "version": "v2"},
)


def measure(fn: Callable[[], object], n: int) -> float:
    best = float("inf")
    for _ in range(5):
        start = time.process_time_ns()
        for _ in range(n):
            fn()
        best = min(best, (time.process_time_ns() - start) / n)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=200_000)
    n = parser.parse_args().n
    rng = random.Random(1)
    cases: dict[str, Callable[[], object]] = {}
    for count in (3, 50):
        hosts = HostSet([Host.of(f"10.0.{i // 250}.{i % 250 + 1}", 9080) for i in range(count)])
        for simple in ("LEAST_REQUEST", "ROUND_ROBIN", "RANDOM"):
            cases[f"pick {simple} ({count} hosts)"] = make_balancer(LoadBalancer(simple=simple), hosts, rng).pick
        ring = make_balancer(LoadBalancer(consistent_hash=ConsistentHash(http_header_name="x-user")), hosts, rng)
        head = RequestHead("GET", "/", "reviews:9080", {"x-user": "jason"}, 9080)
        cases[f"pick ringHash header ({count} hosts)"] = lambda ring=ring, head=head: ring.pick(head)

    breaker = CircuitBreaker()

    def breaker_cycle() -> None:
        breaker.try_request()
        breaker.release_request()

    cases["breaker try_request+release"] = breaker_cycle
    hosts3 = HostSet([Host.of(f"10.0.0.{i}", 9080) for i in range(3)])
    detector = OutlierDetector(OutlierDetectionPolicy(), hosts3, 0.0)
    cases["outlier on_response(200)"] = lambda: detector.on_response(hosts3.hosts[0], 200, 1.0)

    tel = Telemetry(IDENTITY, rng=rng)
    edge = tel.outbound_edge(ENDPOINT, "reviews.default.svc.cluster.local", True)
    cases["metrics.record_http"] = lambda: tel.metrics.record_http(edge, 200, "-", 12.5, 0, 295)
    rec = record(time.time(), method="GET", path="/reviews/0", authority="reviews:9080", response_code=200)
    rec.edge = edge
    cases["telemetry.finish (metrics, no log/spans)"] = lambda: tel.finish(rec)
    cases["telemetry.outbound_edge (cached)"] = lambda: tel.outbound_edge(
        ENDPOINT, "reviews.default.svc.cluster.local", True
    )
    cases["trace_ids.outbound({})"] = lambda: tel.trace_ids.outbound({})
    ctx = tel.trace_ids.outbound({})
    cases["trace context headers()"] = ctx.headers
    cases["trace context header_lines() (the data path's)"] = ctx.header_lines
    cases["trace_ids.request_id()"] = tel.trace_ids.request_id
    cases["access log format_line"] = lambda: format_line(rec)

    overhead = measure(lambda: None, n)
    print(f"{'case':45} ns/call   (n={n}, best of 5, empty-call overhead {overhead:.0f} ns subtracted)")
    for name, fn in cases.items():
        print(f"{name:45} {max(0.0, measure(fn, n) - overhead):8.0f}")


if __name__ == "__main__":
    main()
