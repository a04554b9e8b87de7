"""The console's writes against what `sandbox apply` itself costs, on a generated mesh.

Run: .venv/bin/python benchmarks/console_write_bench.py [--services 200] [--resources 1000] [--runs 15]

A mesh from meshgen.py runs as a real control plane (`sandbox controlplane`, no sidecars); the
console runs in this process with the project. For one VirtualService (its document as written,
what the editor shows), interleaved per run:

  (a) reference: the operator's plan of that change, called directly (what `sandbox apply -f`
      plans: the candidate directory loaded and analysed against the current one)
  (b) the console's dry run of the same change (`PUT ...?dryRun=All`, what the editor sends as you
      type): HTTP, the body's checks, the plan, its findings placed at their lines
  (c) the console's save of a changed label (`PUT`), until the control plane has it in force
      (its generation moved and nothing is pending on disk)

Reported: p50 and p95 of each, and (b)/(a), the console's cost over the planner's.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
import meshgen
from console_graph_bench import free_port, wait_http

from sandbox.console.app import Console, ConsoleSettings
from sandbox.operator.apply import Input
from sandbox.operator.edit import plan_change
from sandbox.runtime.project import find_project

TOKEN = "b" * 32


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(args: argparse.Namespace, work: Path, cp: str) -> None:
    project = find_project(work / "compose.yaml")
    console = Console(ConsoleSettings(port=0, control_plane=cp, project=project, token=TOKEN))
    port = await console.start()
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/yaml"}
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{cp}/api/v1/resources?kind=vs") as r:
            vs = next(v for v in (await r.json())["resources"] if "weight" in str(v["manifest"]))
        ns, name = vs["namespace"], vs["name"]
        url = f"http://127.0.0.1:{port}/api/namespaces/{ns}/istio/virtualservices/{name}"
        async with http.get(url) as r:
            text = original = (await r.json())["yaml"]
        print(f"{args.resources} resources in {len(list((work / 'istio').rglob('*.yaml')))} files; editing {ns}/{name}")
        a, b, c = [], [], []
        for run in range(args.runs):
            began = time.perf_counter()
            plan = plan_change(project.istio_dir, project.compose_file, [Input("-", text)])
            a.append(time.perf_counter() - began)
            assert plan.ok, [d.format() for d in plan.refused]

            began = time.perf_counter()
            async with http.put(url + "?dryRun=All", data=text.encode(), headers=headers) as r:
                assert r.status == 200, await r.text()
                await r.read()
            b.append(time.perf_counter() - began)

            async with http.get(f"{cp}/api/v1/sync") as r:
                generation = (await r.json())["generation"]
            if "  labels:\n" in original:
                changed = original.replace("  labels:\n", f"  labels:\n    bench: '{run}'\n", 1)
            else:
                changed = original.replace("metadata:\n", f"metadata:\n  labels: {{bench: '{run}'}}\n", 1)
            began = time.perf_counter()
            async with http.put(url, data=changed.encode(), headers=headers) as r:
                assert r.status == 200, await r.text()
            while True:
                async with http.get(f"{cp}/api/v1/sync") as r:
                    sync = await r.json()
                if sync["generation"] > generation and not sync["pending"]:
                    break
                await asyncio.sleep(0.005)
            c.append(time.perf_counter() - began)
    await console.stop()
    ms = lambda values, q: f"{p(values, q) * 1000:.0f} ms"  # noqa: E731
    print(f"{'':58}{'p50':>10}{'p95':>10}")
    for label, values in (
        ("(a) the operator's plan (sandbox apply)", a),
        ("(b) the console's dry run (PUT ?dryRun=All)", b),
        ("(c) the console's save, until in force", c),
    ):
        print(f"{label:58}{ms(values, 0.5):>10}{ms(values, 0.95):>10}")
    print(f"(b)/(a) at p50: {statistics.median(b) / statistics.median(a):.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=200)
    parser.add_argument("--workloads", type=int, default=600)
    parser.add_argument("--resources", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="console-write-bench-"))
    meshgen.generate(args.services, args.workloads, n_resources=args.resources).write(work)
    cp_port = free_port()
    control = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "controlplane", "--istio", str(work / "istio"), "--compose",
         str(work / "compose.yaml"), "--port", str(cp_port), "--state-dir", str(work / "state")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        cp = f"http://127.0.0.1:{cp_port}"
        wait_http(f"{cp}/ready", 120)
        asyncio.run(measure(args, work, cp))
    finally:
        control.terminate()
        control.wait(timeout=30)


if __name__ == "__main__":
    main()
