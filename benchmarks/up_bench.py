"""How long `sandbox up --detach` takes to a ready mesh, and how much memory the mesh uses.

    .venv/bin/python benchmarks/up_bench.py [--compose samples/bookinfo/compose.yaml] [--runs 3]

Copies the project to a temporary directory (its `.sandbox/` state stays out of the source tree,
and the ingress moves to a free port), then per run: `sandbox up --detach --runtime local`
timed from launch to exit (the command returns once every component is ready), one request
through the ingress, the memory of every process of the mesh (supervisor included) from /proc:
RSS summed (counts shared pages once per process, so it overstates) and PSS summed (shares them
out, the honest total), then `sandbox down` timed, with a check that no process is left.
Targets (issue 5): a Bookinfo-sized mesh ready in under 5 s, under 500 MB in total.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_COMPOSE = ROOT / "samples" / "bookinfo" / "compose.yaml"
TARGET_SECONDS, TARGET_MB = 5.0, 500.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def copy_project(compose: Path, into: Path, ingress: int) -> Path:
    """The project directory copied, with x-sandbox.ingress.port set to `ingress`."""
    from sandbox.mesh.yamlsrc import dump_yaml, parse_documents

    target = into / compose.parent.name
    shutil.copytree(compose.parent, target, ignore=shutil.ignore_patterns(".sandbox", "__pycache__"))
    documents, problems = parse_documents(compose.read_text(), str(compose))
    if problems or not documents:
        sys.exit(f"cannot read {compose}: {problems}")
    data = documents[0].data
    settings = data.setdefault("x-sandbox", {})
    settings.setdefault("ingress", {})["port"] = ingress
    (target / compose.name).write_text(dump_yaml(data))
    return target / compose.name


def memory_kb(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of a process in kB; (0, 0) when it is gone."""
    try:
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
    except OSError:
        return 0, 0
    fields = {line.split(":")[0]: int(line.split()[1]) for line in rollup[1:] if line.split()[1:2] != []}
    return fields.get("Rss", 0), fields.get("Pss", 0)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def mesh_processes(project: Path) -> list[tuple[str, str, int]]:
    """(component, kind, pid) of every running process of the mesh, the supervisor first."""
    data = json.loads((project / ".sandbox" / "local" / "processes.json").read_text())
    rows = [("supervisor", "supervisor", int(data["supervisor"]))]
    rows += [(r["name"], r["kind"], int(r["pid"])) for r in data["processes"] if r["pid"]]
    return rows


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def sandbox(*args: str) -> tuple[float, float, subprocess.CompletedProcess[str]]:
    """(wall seconds, CPU seconds of the command itself, result)."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "sandbox", *args], capture_output=True, text=True, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return time.monotonic() - began, cpu, result


@dataclass
class Run:
    up: float  # seconds, `sandbox up --detach` launch to exit
    ready: float  # seconds, the supervisor's start to the last component ready
    down: float
    cli_cpu: float  # CPU seconds of the `up` command itself
    status: int
    processes: int
    rss_mb: float
    pss_mb: float
    cpu: float  # CPU seconds of everything, to ready
    by_kind: dict[str, list[float]] = field(default_factory=dict)  # kind -> [count, rss kB, pss kB, cpu s]
    left: list[int] = field(default_factory=list)


def one_run(compose: Path, ingress: int, path: str) -> Run:
    up_seconds, up_cpu, up = sandbox("up", "--detach", "--runtime", "local", "-f", str(compose))
    if up.returncode != 0:
        sandbox("down", "-f", str(compose))
        sys.exit(f"sandbox up failed:\n{up.stdout}\n{up.stderr}")
    ready_lines = [line for line in up.stdout.splitlines() if " ready in " in line]
    supervisor_ready = max(float(line.rsplit(" ready in ", 1)[1].split()[0]) for line in ready_lines)
    with urllib.request.urlopen(f"http://127.0.0.1:{ingress}{path}", timeout=10) as answer:
        status = answer.status
    processes = mesh_processes(compose.parent)
    run = Run(up_seconds, supervisor_ready, 0.0, up_cpu, status, len(processes), 0.0, 0.0, up_cpu)
    for _name, kind, pid in processes:
        rss, pss = memory_kb(pid)
        cpu = cpu_seconds(pid)
        run.rss_mb += rss / 1024
        run.pss_mb += pss / 1024
        run.cpu += cpu
        totals = run.by_kind.setdefault(kind, [0, 0, 0, 0.0])
        for i, value in enumerate((1, rss, pss, cpu)):
            totals[i] += value
    pids = [pid for _, _, pid in processes]
    run.down, _, down = sandbox("down", "-f", str(compose))
    run.left = [pid for pid in pids if alive(pid)]
    if down.returncode != 0:
        sys.exit(f"sandbox down failed:\n{down.stderr}")
    return run


def verdict(value: float, target: float) -> str:
    return "met" if value < target else "MISSED"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--compose", type=Path, default=DEFAULT_COMPOSE)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--path", default="/productpage", help="Request sent through the ingress once ready.")
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory(prefix="up-bench-") as tmp:
        ingress = free_port()
        compose = copy_project(args.compose.resolve(), Path(tmp), ingress)
        for i in range(args.runs):
            run = one_run(compose, ingress, args.path)
            runs.append(run)
            print(
                f"run {i + 1}: up {run.up:.2f} s (supervisor ready at {run.ready:.2f} s), down {run.down:.2f} s, "
                f"{run.processes} processes, RSS {run.rss_mb:.0f} MB, PSS {run.pss_mb:.0f} MB, CPU {run.cpu:.1f} s "
                f"(the up command {run.cli_cpu:.1f} s), ingress {run.status}, left behind: {run.left or 'none'}",
                file=sys.stderr,
            )
    up = statistics.median(r.up for r in runs)
    pss = statistics.median(r.pss_mb for r in runs)
    cores = os.cpu_count()
    name = args.compose.relative_to(ROOT) if args.compose.is_relative_to(ROOT) else args.compose
    print(f"\n`sandbox up --detach --runtime local` of {name}: median of {len(runs)} runs, {cores} CPUs, ", end="")
    print(f"load average {os.getloadavg()[0]:.1f}\n")
    print("| Measure | Value | Target |")
    print("|---|---|---|")
    print(f"| up to ready (command exit) | {up:.2f} s | < {TARGET_SECONDS:.0f} s {verdict(up, TARGET_SECONDS)} |")
    print(f"| CPU time to ready, all processes | {statistics.median(r.cpu for r in runs):.1f} s | |")
    print(f"| down | {statistics.median(r.down for r in runs):.2f} s | |")
    print(f"| memory, PSS summed | {pss:.0f} MB | < {TARGET_MB:.0f} MB {verdict(pss, TARGET_MB)} |")
    print(f"| memory, RSS summed | {statistics.median(r.rss_mb for r in runs):.0f} MB | |")
    print(f"| processes left after down | {sum(len(r.left) for r in runs)} | 0 |")
    last = runs[-1]
    print("\n| Kind | Processes | RSS MB | PSS MB | CPU s to ready |")
    print("|---|---|---|---|---|")
    print(f"| `sandbox up` command | 1 | | | {last.cli_cpu:.1f} |")
    for kind, (count, rss_kb, pss_kb, cpu_s) in sorted(last.by_kind.items()):
        print(f"| {kind} | {count:.0f} | {rss_kb / 1024:.0f} | {pss_kb / 1024:.0f} | {cpu_s:.1f} |")


if __name__ == "__main__":
    main()
