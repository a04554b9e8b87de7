"""Microbenchmark of route(): microseconds per call on a Bookinfo-sized snapshot.

Run: .venv/bin/python benchmarks/route_bench.py [--n 200000]
Prints per-scenario CPU time per call (process_time, which a shared VM disturbs less than wall
time), the best of 5 rounds, and the one-off cost of compiling the snapshot and its route table.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

from sandbox.control.compile import compile as compile_snapshot
from sandbox.mesh.loader import load_paths
from sandbox.mesh.state import MeshState
from sandbox.mesh.topology import load_compose
from sandbox.proxy.routing import RequestHead, RouteTable
from sandbox.xds.snapshot import ProxySnapshot

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "bookinfo"
RULES = ["destination-rule-all.yaml", "virtual-service-reviews-test-v2.yaml"]  # jason -> v2, else v1
WEIGHTED = [
    "destination-rule-all.yaml",
    "virtual-service-reviews-80-20.yaml",
    "virtual-service-ratings-test-abort.yaml",
]


def snapshot(rules: list[str]) -> ProxySnapshot:
    loaded = load_paths([FIXTURES / r for r in rules])
    mesh = MeshState(loaded.resources, load_compose(FIXTURES / "compose.yaml"))
    return compile_snapshot(mesh, "productpage-v1")


def head(path: str, authority: str, headers: dict[str, str] | None = None) -> RequestHead:
    return RequestHead("GET", path, authority, headers or {"user-agent": "python", "accept": "*/*"}, 9080)


def measure(name: str, snap: ProxySnapshot, h: RequestHead, n: int) -> None:
    rng = random.Random(7)
    table = RouteTable(snap)  # as the sidecar keeps it, one per snapshot
    best = float("inf")
    for _ in range(5):
        start = time.process_time()
        for _ in range(n):
            table.route(h, rng)
        best = min(best, (time.process_time() - start) / n)
    print(f"  {name:<44} {best * 1e6:6.2f} us/call")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100_000)
    n = parser.parse_args().n
    loaded = load_paths([FIXTURES / r for r in RULES])
    mesh = MeshState(loaded.resources, load_compose(FIXTURES / "compose.yaml"))
    start = time.process_time()
    for _ in range(20):
        snap = compile_snapshot(mesh, "productpage-v1")
    compiled = time.process_time()
    for _ in range(20):
        RouteTable(snap)
    tabled = time.process_time()
    print(
        f"compile(productpage-v1): {(compiled - start) / 20 * 1e3:.2f} ms, "
        f"RouteTable build: {(tabled - compiled) / 20 * 1e3:.2f} ms"
    )
    print(f"route() CPU time per call, best of 5 x {n}:")
    measure("details (single v1 route)", snap, head("/details/0", "details:9080"), n)
    measure("reviews, anonymous (header miss, fallthrough)", snap, head("/reviews/0", "reviews:9080"), n)
    measure(
        "reviews, end-user: jason (header match)",
        snap,
        head("/reviews/0", "reviews:9080", {"end-user": "jason", "user-agent": "python"}),
        n,
    )
    measure("reviews by FQDN", snap, head("/reviews/0", "reviews.default.svc.cluster.local:9080"), n)
    measure("unknown host (allow_any passthrough)", snap, head("/", "example.com:9080"), n)
    weighted = snapshot(WEIGHTED)
    measure("reviews 80/20 (weighted draw)", weighted, head("/reviews/0", "reviews:9080"), n)
    measure(
        "ratings abort for jason (fault draw)",
        weighted,
        head("/ratings/0", "ratings:9080", {"end-user": "jason"}),
        n,
    )


if __name__ == "__main__":
    main()
