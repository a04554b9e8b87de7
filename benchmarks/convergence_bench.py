"""Convergence: from an editor's atomic save of a VirtualService to the last sidecar's ACK.

Run: .venv/bin/python benchmarks/convergence_bench.py [--sidecars 10] [--edits 50] [--simulated [--decode] | --light]

The control plane (watcher, debounce, store with the analyzer, compile, push) runs in this
process. By default each sidecar is a real `sandbox proxy --control-plane` process (Bookinfo's
six workloads round-robin; listeners on free ports): it decodes each snapshot, rebuilds its
routes and clusters, then ACKs. `--simulated` runs subscriptions in one child process instead
(`--decode` makes them decode the snapshot; without it they only parse the JSON); `--light`
reads only each push's header (1,000 connections in one child process). Every edit flips
reviews' subset, which changes every sidecar's snapshot. Reported: p50/p99/max of write -> last
ACK (debounce included), istiod-style "seen -> ACK" per proxy, and CPU per edit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from sandbox.control.plane import ControlPlane, ControlPlaneSettings
from sandbox.control.push import ProxyStatus
from sandbox.control.server import ControlPlaneServer
from sandbox.control.tokens import TokenAuthority
from sandbox.proxy.subscription import Subscription
from sandbox.xds import messages
from sandbox.xds.certificate import WorkloadCertificate
from sandbox.xds.identity import ProxyIdentity
from sandbox.xds.messages import Hello
from sandbox.xds.snapshot import ProxySnapshot

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "bookinfo"
WORKLOADS = [
    ("productpage-v1", "bookinfo-productpage"),
    ("details-v1", "bookinfo-details"),
    ("reviews-v1", "bookinfo-reviews"),
    ("reviews-v2", "bookinfo-reviews"),
    ("reviews-v3", "bookinfo-reviews"),
    ("ratings-v1", "bookinfo-ratings"),
]
VS = """apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts: [reviews]
  http:
  - route:
    - destination:
        host: reviews
        subset: {subset}
"""


class Sink:
    def __init__(self, decode: bool) -> None:
        self.decode = decode

    def on_snapshot(self, payload: dict[str, Any]) -> None:
        if self.decode:
            ProxySnapshot.from_data(payload)

    def on_certificate(self, bundle: WorkloadCertificate) -> None:
        pass


async def light_client(url: str, me: Hello) -> None:
    """A simulated sidecar that reads only each push's header (type, version, nonce) and ACKs it:
    what remains is the control plane's own fan-out cost."""
    async with aiohttp.ClientSession() as session, session.ws_connect(url, heartbeat=30) as ws:
        await ws.send_str(messages.encode(me))
        async for msg in ws:
            text = msg.data
            cut = text.find(', "snapshot": ')
            head = json.loads(text[:cut] + "}" if cut > 0 else text)
            if head["type"] in ("snapshot", "certificate"):
                await ws.send_str(
                    json.dumps({"type": "ack", "nonce": head["nonce"], "version": head.get("version", "")})
                )


async def clients(port: int, count: int, state_dir: str, decode: bool, light: bool = False) -> None:
    authority = TokenAuthority.load_or_create(state_dir)
    subs = []
    for i in range(count):
        workload, sa = WORKLOADS[i % len(WORKLOADS)]
        identity = ProxyIdentity(workload, "default", sa)
        me = Hello(f"{workload}-{i}", identity, authority.issue(identity))
        subs.append(Subscription(f"http://127.0.0.1:{port}/v1/push", me, Sink(decode), heartbeat=30))
    if light:
        tasks = [asyncio.create_task(light_client(sub.url, sub.hello)) for sub in subs]  # noqa: F841
    else:
        for sub in subs:
            sub.start()
    await asyncio.Event().wait()  # until the parent terminates us


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) of another process, from /proc (Linux); 0 elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def real_sidecars(port: int, count: int, tokens: TokenAuthority) -> list[subprocess.Popen[bytes]]:
    """`sandbox proxy` processes subscribed to the control plane, every listener on a free port."""
    procs = []
    for i in range(count):
        workload, sa = WORKLOADS[i % len(WORKLOADS)]
        argv = [sys.executable, "-m", "sandbox", "proxy", "--control-plane", f"http://127.0.0.1:{port}"]
        argv += ["--workload", workload, "--service-account", sa, "--node", f"{workload}-{i}", "--access-log", "off"]
        for name in ("outbound", "inbound", "admin", "stats", "ready"):
            argv += [f"--{name}-port", "0"]
        env = {**os.environ, "SANDBOX_TOKEN": tokens.issue(ProxyIdentity(workload, "default", sa))}
        procs.append(subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return procs


async def bench(sidecars: int, edits: int, decode: bool, light: bool = False, real: bool = False) -> None:
    root = Path(tempfile.mkdtemp(prefix="convergence-"))
    istio = root / "istio"
    istio.mkdir()
    shutil.copy(FIXTURES / "compose.yaml", root / "compose.yaml")
    shutil.copy(FIXTURES / "destination-rule-all.yaml", istio)
    vs = istio / "reviews.yaml"
    vs.write_text(VS.format(subset="v1"))
    plane = ControlPlane(ControlPlaneSettings(istio, root / "compose.yaml", root / "state", port=0))
    plane_server = ControlPlaneServer(plane)
    port = await plane_server.start()
    if real:
        children = real_sidecars(port, sidecars, plane.tokens)
    else:
        args = [sys.executable, __file__, "--client", str(port), "--sidecars", str(sidecars)]
        args += ["--state", str(root / "state"), *(["--decode"] if decode else []), *(["--light"] if light else [])]
        children = [subprocess.Popen(args)]
    done: set[str] = set()
    all_acked = asyncio.Event()
    generation = [plane.store.generation]

    def on_ack(status: ProxyStatus) -> None:
        if plane.store.generation >= generation[0] and status.version_acked == status.version_current:
            done.add(status.node)
            if len(done) == sidecars:
                all_acked.set()

    plane.push.ack_listeners.append(on_ack)
    try:
        await asyncio.wait_for(all_acked.wait(), 120)
        seen_to_ack: list[float] = []
        plane.push._on_converged = seen_to_ack.append  # istiod's definition, per proxy
        write_to_last_ack: list[float] = []
        cpu0, child0 = time.process_time(), sum(process_cpu(c.pid) for c in children)
        for i in range(edits):
            done.clear()
            all_acked.clear()
            generation[0] = plane.store.generation + 1
            tmp = vs.with_name(".reviews.yaml.tmp")
            tmp.write_text(VS.format(subset=("v2", "v3", "v1")[i % 3]))
            start = time.monotonic()
            os.replace(tmp, vs)
            await asyncio.wait_for(all_acked.wait(), 60)
            write_to_last_ack.append(time.monotonic() - start)
            await asyncio.sleep(0.05)  # separate edits, so each is its own debounce window
        cpu, child_cpu = time.process_time() - cpu0, sum(process_cpu(c.pid) for c in children) - child0
    finally:
        for child in children:
            child.terminate()
        for child in children:
            child.wait(10)
        await plane_server.stop()
        shutil.rmtree(root, ignore_errors=True)
    ms = [x * 1000 for x in write_to_last_ack]
    seen = [x * 1000 for x in seen_to_ack]
    mode = "real sidecar processes" if real else "light clients" if light else f"simulated (decode={decode})"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"sidecars={sidecars} ({mode}) edits={edits} pushes={plane.push.stats.pushes} load average {load:.1f}")
    print(
        f"write -> last ACK: p50 {percentile(ms, 50):.1f} ms  p90 {percentile(ms, 90):.1f} ms  "
        f"p99 {percentile(ms, 99):.1f} ms  "
        f"max {max(ms):.1f} ms  mean {statistics.mean(ms):.1f} ms"
    )
    print(f"seen -> ACK per proxy: p50 {percentile(seen, 50):.1f} ms  p99 {percentile(seen, 99):.1f} ms")
    print(
        f"CPU per edit: control plane {cpu / edits * 1000:.1f} ms, "
        f"the {sidecars} sidecars {child_cpu / edits * 1000:.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sidecars", type=int, default=10)
    parser.add_argument("--edits", type=int, default=50)
    parser.add_argument("--simulated", action="store_true", help="subscriptions in one child, not real sidecars")
    parser.add_argument("--decode", action="store_true", help="simulated sidecars decode each snapshot")
    parser.add_argument("--light", action="store_true", help="simulated sidecars read only each push's header")
    parser.add_argument("--client", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--state", help=argparse.SUPPRESS)
    args = parser.parse_args()
    import uvloop  # as `sandbox controlplane` and `sandbox proxy` run

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    if args.client:
        asyncio.run(clients(args.client, args.sidecars, args.state, args.decode, args.light))
    else:
        real = not (args.simulated or args.decode or args.light)
        asyncio.run(bench(args.sidecars, args.edits, args.decode, args.light, real))


if __name__ == "__main__":
    main()
