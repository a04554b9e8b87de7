"""The console's graph endpoint on a generated mesh, against a real Prometheus holding its series.

Run: .venv/bin/python benchmarks/console_graph_bench.py [--services 50] [--workloads 200] [--runs 20]

A mesh from meshgen.py (one namespace; service i calls services i+1 and i+2, every version of
them) runs as a real control plane (`sandbox controlplane` over the generated Compose file and
Istio YAML) and an exporter process serving the Istio metrics its sidecars would: per workload
edge, istio_requests_total from both reporters (200s, and 503s on one edge in twenty) and
istio_request_duration_milliseconds histograms (Envoy's buckets, destination reporter). The
Debian `prometheus` binary scrapes it every 5 s. Once Prometheus holds a minute of samples, the
console (in this process) answers GET /api/namespaces/graph for each graph type, and, as the
reference in the same run, the same PromQL is sent straight to Prometheus (all queries at once,
as the console sends them): the difference is the console's own work (parsing, the traffic map,
appenders, JSON). Reported: p50 and p95 per graph type, nodes and edges, and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent))
import meshgen

from sandbox.console.app import Console, ConsoleSettings
from sandbox.console.graph_queries import namespace_queries
from sandbox.proxy.metrics import DEFAULT_BUCKETS
from sandbox.runtime.project import find_project

SCRAPE_SECONDS = 15  # Istio's and Prometheus' default interval (the local runtime scrapes every 5 s)
WINDOW = "60s"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ------------------------------------------------------------------------------------- exporter
def edges(services: list[meshgen.Service]) -> list[tuple[meshgen.Service, str, meshgen.Service, str]]:
    """(source service, source version, destination service, destination version) per workload edge."""
    out = []
    for s in services:
        for target in services[s.index + 1 : s.index + 3]:
            for v in s.versions:
                for dv in target.versions:
                    out.append((s, v, target, dv))
    return out


def labels(src: meshgen.Service, sv: str, dst: meshgen.Service, dv: str, reporter: str) -> str:
    peer = {
        "reporter": reporter,
        "source_workload": f"{src.name}-{sv}", "source_canonical_service": src.name, "source_canonical_revision": sv,
        "source_workload_namespace": src.namespace, "source_principal": f"spiffe://{src.principal}",
        "source_app": src.name, "source_version": sv, "source_cluster": "Kubernetes",
        "destination_workload": f"{dst.name}-{dv}", "destination_workload_namespace": dst.namespace,
        "destination_principal": f"spiffe://{dst.principal}", "destination_app": dst.name, "destination_version": dv,
        "destination_service": dst.fqdn, "destination_canonical_service": dst.name,
        "destination_canonical_revision": dv, "destination_service_name": dst.name,
        "destination_service_namespace": dst.namespace, "destination_cluster": "Kubernetes",
        "request_protocol": "http", "response_flags": "-",
        "connection_security_policy": "mutual_tls" if reporter == "destination" else "unknown",
    }  # fmt: skip
    return ",".join(f'{k}="{v}"' for k, v in peer.items())


def exposition(mesh: list[tuple[str, str, float, float]], elapsed: float) -> str:
    """The metrics text at `elapsed` seconds: (labels, reporter, requests/s, error share) per series."""
    lines = ["# TYPE istio_requests_total counter", "# TYPE istio_request_duration_milliseconds histogram"]
    for base, reporter, rps, errors in mesh:
        total = rps * elapsed
        ok = total * (1 - errors)
        lines.append(f'istio_requests_total{{{base},response_code="200",grpc_response_status=""}} {ok:.3f}')
        if errors:
            lines.append(f'istio_requests_total{{{base},response_code="503",grpc_response_status=""}} {total - ok:.3f}')
        if reporter == "destination":
            for le in DEFAULT_BUCKETS:  # about 30 ms typical: a log-normal-ish spread over the buckets
                share = 0.0 if le < 5 else 0.5 if le < 25 else 0.9 if le < 100 else 0.99 if le < 500 else 1.0
                bucket = f'{base},response_code="200",le="{le:g}"'
                lines.append(f"istio_request_duration_milliseconds_bucket{{{bucket}}} {total * share:.3f}")
            lines.append(
                f'istio_request_duration_milliseconds_bucket{{{base},response_code="200",le="+Inf"}} {total:.3f}'
            )
            lines.append(f'istio_request_duration_milliseconds_sum{{{base},response_code="200"}} {total * 30:.3f}')
            lines.append(f'istio_request_duration_milliseconds_count{{{base},response_code="200"}} {total:.3f}')
    return "\n".join(lines) + "\n"


def serve_exporter(services: int, workloads: int, port: int) -> None:
    rng = random.Random(1)
    generated = meshgen.services(services, workloads, per_namespace=services)
    series = []
    for src, sv, dst, dv in edges(generated):
        rps, errors = rng.uniform(0.2, 3.0), (0.05 if rng.random() < 0.05 else 0.0)
        for reporter in ("source", "destination"):
            series.append((labels(src, sv, dst, dv, reporter), reporter, rps, errors))
    started = time.time()

    async def metrics(_request: web.Request) -> web.Response:
        return web.Response(text=exposition(series, time.time() - started), content_type="text/plain")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


# ----------------------------------------------------------------------------------------- run
def wait_http(url: str, timeout: float) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


async def measure(args: argparse.Namespace, work: Path, cp: str, prom: str) -> None:
    project = find_project(work / "compose.yaml")
    console = Console(ConsoleSettings(port=0, control_plane=cp, prometheus=prom, project=project))
    port = await console.start()
    base = f"http://127.0.0.1:{port}"
    rows = []
    async with aiohttp.ClientSession() as http:

        async def graph(graph_type: str, inject: bool, rt: bool = False) -> tuple[float, dict[str, Any]]:
            url = f"{base}/api/namespaces/graph?namespaces=team-0&graphType={graph_type}&duration={WINDOW}"
            url += "&injectServiceNodes=true" if inject else ""
            url += "&appenders=deadNode,istio,securityPolicy,health" + (",responseTime" if rt else "")
            started = time.perf_counter()
            async with http.get(url) as resp:
                data = await resp.json()
                assert resp.status == 200, data
            return (time.perf_counter() - started) * 1000, data

        async def promql_only(rt: bool = False) -> float:
            started = time.perf_counter()
            plan = namespace_queries("team-0", 60, response_time=rt)

            async def one(q: str) -> None:
                async with http.post(f"{prom}/api/v1/query", data={"query": q}) as resp:
                    await resp.read()

            await asyncio.gather(*(one(q) for _, q in plan.queries))
            return (time.perf_counter() - started) * 1000

        for _ in range(3):  # warm Prometheus' caches and the console's
            await graph("versionedApp", True)
            await promql_only()
        if args.profile:  # where the console's own time goes (cProfile of this process)
            import cProfile
            import pstats

            profile = cProfile.Profile()
            profile.enable()
            for _ in range(3):
                await graph("versionedApp", False)
            profile.disable()
            pstats.Stats(profile).sort_stats("tottime").print_stats(25)
        for graph_type, inject, rt in (
            ("versionedApp", True, False), ("versionedApp", False, False), ("app", False, False),
            ("workload", False, False), ("service", False, False), ("versionedApp", True, True),
        ):  # fmt: skip
            times, refs = [], []
            data: dict[str, Any] = {}
            for _ in range(args.runs):  # interleaved, so both see the same machine
                elapsed, data = await graph(graph_type, inject, rt)
                times.append(elapsed)
                refs.append(await promql_only(rt))
            name = graph_type + (" +service nodes" if inject else "") + (" +response times" if rt else "")
            rows.append((name, data, times, refs))
    await console.stop()

    def p(values: list[float], q: float) -> float:
        return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]

    print(f"\ngraph endpoint, {args.services} services, {args.workloads} workloads, window {WINDOW}, {args.runs} runs")
    print(f"{'graph':<46} {'nodes':>6} {'edges':>6} {'p50 ms':>8} {'p95 ms':>8} {'PromQL p50':>11} {'x PromQL':>9}")
    for name, data, times, refs in rows:
        nodes, edges_ = len(data["elements"]["nodes"]), len(data["elements"]["edges"])
        ratio = statistics.median(times) / statistics.median(refs)
        print(
            f"{name:<46} {nodes:>6} {edges_:>6} {statistics.median(times):>8.0f} {p(times, 95):>8.0f} "
            f"{statistics.median(refs):>11.0f} {ratio:>9.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=50)
    parser.add_argument("--workloads", type=int, default=200)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--profile", action="store_true", help="print where the console's time goes")
    parser.add_argument("--exporter", type=int, help=argparse.SUPPRESS)  # internal: serve metrics on this port
    args = parser.parse_args()
    if args.exporter:
        serve_exporter(args.services, args.workloads, args.exporter)
        return
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        sys.exit("console_graph_bench: needs the prometheus binary (apt-get install prometheus)")
    work = Path(tempfile.mkdtemp(prefix="console-graph-bench-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        mesh = meshgen.generate(
            args.services, args.workloads, n_resources=args.services * 3, per_namespace=args.services
        )
        mesh.write(work)
        exporter_port, cp_port, prom_port = free_port(), free_port(), free_port()
        me = [sys.executable, __file__, "--services", str(args.services), "--workloads", str(args.workloads)]
        procs.append(subprocess.Popen([*me, "--exporter", str(exporter_port)]))
        cp_argv = [sys.executable, "-m", "sandbox", "controlplane", "--istio", str(work / "istio"), "--compose",
                   str(work / "compose.yaml"), "--port", str(cp_port), "--state-dir", str(work / "state")]  # fmt: skip
        procs.append(subprocess.Popen(cp_argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        (work / "prometheus.yml").write_text(
            f"global: {{scrape_interval: {SCRAPE_SECONDS}s}}\n"
            f"scrape_configs:\n- job_name: envoy-stats\n  static_configs:\n  - targets: ['127.0.0.1:{exporter_port}']\n"
        )
        procs.append(
            subprocess.Popen(
                [prometheus, f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={work / 'data'}",
                 f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=error"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
        )  # fmt: skip
        prom, cp = f"http://127.0.0.1:{prom_port}", f"http://127.0.0.1:{cp_port}"
        wait_http(f"{prom}/-/ready", 60)
        wait_http(f"{cp}/ready", 60)
        n_edges = len(edges(meshgen.services(args.services, args.workloads, per_namespace=args.services)))
        print(
            f"{args.services} services, {args.workloads} workloads, {n_edges} workload edges: {n_edges * 2} request "
            f"series and {n_edges * 22} histogram series; waiting for 75 s of samples"
        )
        time.sleep(75)
        asyncio.run(measure(args, work, cp, prom))
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
