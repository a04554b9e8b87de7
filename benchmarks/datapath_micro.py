"""The sidecar's Python cost per request, without sockets: what the data path itself spends.

    .venv/bin/python benchmarks/datapath_micro.py [--requests 20000] [--profile] [--spans] [--no-telemetry]
        [--inbound [--policies N]]

A request goes through the real DownstreamConnection, route(), Exchange, pool and
Http1Connection objects, with in-memory transports on both sides, so the figure excludes the
kernel (the syscalls proxy_bench.py measures) and isolates the Python work per request.
`--inbound` sends it through a sidecar's inbound side instead (where authorization runs), with
the first N of authz_policies.py's ten AuthorizationPolicies selecting the workload.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from sandbox.proxy.accesslog import AccessLog
from sandbox.proxy.server import DownstreamConnection
from sandbox.proxy.sidecar import ProxyOptions, Sidecar
from sandbox.proxy.telemetry import Telemetry
from sandbox.proxy.tracing import SpanBuilder, SpanReporter
from sandbox.proxy.upstream import Http1Connection
from sandbox.service import install_uvloop
from sandbox.xds.identity import ProxyIdentity
from sandbox.xds.snapshot import (
    Cluster,
    Endpoint,
    ProxySnapshot,
    Route,
    RouteConfiguration,
    VirtualHost,
    WeightedCluster,
)

FQDN = "server.default.svc.cluster.local"
CLUSTER = f"outbound|9080||{FQDN}"
REQUEST = (
    b"GET /api/v1/products/0/reviews HTTP/1.1\r\nHost: server:9080\r\nUser-Agent: curl/8.5.0\r\n"
    b"Accept: */*\r\nAccept-Encoding: gzip\r\n\r\n"
)
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Wed, 25 Nov 2026 19:00:00 GMT\r\nContent-Type: text/plain\r\n"
    b"Content-Length: 20\r\nConnection: keep-alive\r\n\r\nhello from upstream\n"
)


def server_snapshot(app_address: str, policies: int) -> ProxySnapshot:
    """What compile() gives server-v1 (inbound to its app), with `policies` AuthorizationPolicies."""
    from authz_policies import policies as ten_policies

    from sandbox.control.compile import compile
    from sandbox.mesh.state import MeshState
    from sandbox.mesh.topology import parse_compose

    compose = "services:\n  server-v1:\n    image: x\n    labels: {app: server, version: v1}\n    expose: ['9080']\n"
    mesh = MeshState(tuple(ten_policies(policies)) if policies else (), parse_compose(compose, "compose.yaml"))
    return compile(mesh, "server-v1", app_address=app_address)


def client_snapshot(server_address: str) -> ProxySnapshot:
    """What compile() gives client-v1 for one service `server` on port 9080 (default routing)."""
    identity = ProxyIdentity(
        workload="client-v1",
        namespace="default",
        service_account="default",
        spiffe_id="spiffe://cluster.local/ns/default/sa/default",
        labels={"app": "client", "version": "v1"},
        app="client",
        version="v1",
    )
    server = Endpoint(address=server_address, workload="server-v1", namespace="default", service_account="default")
    cluster = Cluster(name=CLUSTER, service=FQDN, port=9080, endpoints=(server,))
    route = Route(name="default", operation=f"{FQDN}:9080/*", clusters=(WeightedCluster(cluster=CLUSTER),))
    domains = ("server", "server:9080", FQDN, f"{FQDN}:9080")
    vhost = VirtualHost(name=f"{FQDN}:9080", domains=domains, routes=(route,), service=FQDN)
    config = RouteConfiguration(name="9080", port=9080, virtual_hosts=(vhost,))
    return ProxySnapshot(identity=identity, route_configs=(config,), clusters=(cluster,)).seal()


class MemoryTransport:
    def __init__(self) -> None:
        self.written = 0

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 15001)}.get(name, default)

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def run(
    requests: int,
    profile: bool,
    access_log: bool,
    sort: str = "tottime",
    telemetry_on: bool = True,
    spans: bool = False,
    inbound: bool = False,
    policies: int = 0,
) -> None:
    snapshot = server_snapshot("127.0.0.1:9", policies) if inbound else client_snapshot("127.0.0.1:9")
    cluster = snapshot.inbound[0].cluster if inbound else CLUSTER
    sink = AccessLog(lambda text: None) if access_log else None
    reporter = None
    if spans:  # Zipkin spans for every request (100% sampling), encoded as the sender would; no network

        async def post(body: bytes) -> None:
            return None

        reporter = SpanReporter(SpanBuilder(snapshot.identity), post=post, max_queue=1 << 30)
    telemetry = Telemetry(snapshot.identity, access_log=sink, spans=reporter)
    options = ProxyOptions(outbound_port=None, inbound_port=None, admin_port=None, stats_port=None, ready_port=None)
    sidecar = Sidecar(snapshot, options, telemetry=telemetry)
    state = sidecar.clusters.get(cluster)
    assert state is not None
    pool = sidecar.upstreams.pool(state, state.hosts.hosts[0])
    upstream = Http1Connection(pool, sidecar.writes)
    upstream.connection_made(MemoryTransport())  # type: ignore[arg-type]
    state.breaker.try_connection()
    pool.open += 1
    pool.idle.append(upstream)
    listener = sidecar.inbound if inbound else sidecar.outbound
    if not telemetry_on:
        listener.ctx.telemetry = None
    down = DownstreamConnection(listener)
    down_transport = MemoryTransport()
    down.connection_made(down_transport)  # type: ignore[arg-type]

    writes = sidecar.writes

    def one() -> None:
        down.data_received(REQUEST)
        writes.flush()  # what the loop does at the end of the pass (writes.py)
        upstream.data_received(RESPONSE)
        writes.flush()

    async def some(n: int) -> None:
        for i in range(n):
            one()
            if i & 63 == 63:
                await asyncio.sleep(0)  # let the loop run the (now empty) flushes each pass queued
        if reporter is not None and len(reporter._queue) >= reporter.batch_size:
            reporter.encode(reporter._queue)  # what the sender does with each batch, off the request path
            reporter._queue.clear()

    await some(1000)
    profiler = cProfile.Profile() if profile else None
    if profiler:
        profiler.enable()
    rounds = []
    for _ in range(5):  # the best of five rounds: other processes only ever add time
        start = time.process_time()
        await some(requests // 5)
        rounds.append((time.process_time() - start) / (requests // 5))
    if profiler:
        profiler.disable()
        pstats.Stats(profiler).sort_stats(sort).print_stats(40)
    assert down_transport.written > 0 and pool.idle == [upstream], "the exchange did not complete"
    side = f"inbound, {policies} AuthorizationPolicies" if inbound else "outbound"
    print(f"{min(rounds) * 1e6:.1f} us CPU per request ({side}; Python only; best of 5 rounds of {requests // 5})")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--no-access-log", action="store_true")
    parser.add_argument("--no-telemetry", action="store_true", help="no metrics, spans or access log at all")
    parser.add_argument("--spans", action="store_true", help="also build and encode a Zipkin span per request")
    parser.add_argument("--sort", default="tottime", help="profile order: tottime, ncalls, cumtime")
    parser.add_argument("--inbound", action="store_true", help="through a sidecar's inbound side")
    parser.add_argument("--policies", type=int, default=0, help="with --inbound: AuthorizationPolicies (0-10)")
    args = parser.parse_args()
    install_uvloop()
    asyncio.run(
        run(
            args.requests,
            args.profile,
            not args.no_access_log,
            args.sort,
            not args.no_telemetry,
            args.spans,
            args.inbound,
            args.policies,
        )
    )


if __name__ == "__main__":
    main()
