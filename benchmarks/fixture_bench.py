"""How long the pytest fixture takes to start and stop a mesh of three workloads (`sandbox init`'s
web, api-v1, api-v2, plus the ingress gateway and the control plane) on the local runtime, side by
side with `sandbox up --detach` + `sandbox down` of the same project in one run.

    .venv/bin/python benchmarks/fixture_bench.py [--runs 10] [--tests 10]

Rows:
- reference: `sandbox up --detach --runtime local` then `sandbox down`, as commands (every
  component, Prometheus and the console included when installed), timed from launch to exit;
- the fixture's first mesh of a session: the supervisor server starts and preloads, then the mesh
  starts (sandbox.testing.Launcher, what `mesh_factory` calls) and stops;
- each further mesh of the session (a function-scoped `mesh`): start + stop, median and worst;
- a pytest session of `--tests` tests with a function-scoped `mesh` (`sandbox_scope = function`) in
  a project of its own: wall time of the whole `python -m pytest`, and per test.
Target (issue 17): a function-scoped mesh of three workloads starts and stops in under 3 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET = 3.0


def timed(*command: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> float:
    began = time.monotonic()
    done = subprocess.run(list(command), cwd=cwd, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")
    return time.monotonic() - began


def reference(compose: Path, runs: int) -> list[float]:
    """`sandbox up --detach` + `sandbox down`, the way a test without the fixture would do it."""
    from sandbox.runtime.workcopy import work_copy
    from sandbox.testing.lifecycle import free_port

    results = []
    for i in range(runs):
        with tempfile.TemporaryDirectory(prefix="fixture-bench-ref-") as tmp:
            copy = work_copy(compose, compose.parent / "istio", Path(tmp) / f"ref{i}", "local", free_port())
            cli = (sys.executable, "-m", "sandbox")
            up = timed(*cli, "up", "--detach", "--runtime", "local", "-f", str(copy.compose_file))
            down = timed(*cli, "down", "-f", str(copy.compose_file))
            results.append(up + down)
    return results


def fixture(compose: Path, runs: int) -> tuple[float, list[float], list[float]]:
    """(first mesh's start+stop, further meshes' start+stop, their start alone)."""
    from sandbox.testing import Launcher, MeshConfig

    config = MeshConfig(compose)
    launcher = Launcher()
    try:
        began = time.monotonic()
        launcher.start(config).stop()
        first = time.monotonic() - began
        totals, starts = [], []
        for _ in range(runs):
            began = time.monotonic()
            mesh = launcher.start(config)
            started = time.monotonic()
            if mesh.request("GET", mesh.url("web")).status != 200:
                sys.exit("the mesh did not answer through its ingress")
            answered = time.monotonic()
            mesh.stop()
            totals.append(time.monotonic() - began - (answered - started))
            starts.append(started - began)
    finally:
        launcher.close()
    return first, totals, starts


def pytest_session(tests: int) -> float:
    """Wall time of `python -m pytest` over `tests` tests with a function-scoped mesh."""
    from sandbox.scaffold import create

    body = "\n\n".join(
        f"def test_{i}(mesh):\n    assert mesh.request('GET', mesh.url('web')).status == 200" for i in range(tests)
    )
    with tempfile.TemporaryDirectory(prefix="fixture-bench-pytest-") as tmp:
        project = Path(tmp)
        create(project / "mesh")
        (project / "pytest.ini").write_text("[pytest]\nsandbox_compose = mesh/compose.yaml\nsandbox_scope = function\n")
        (project / "test_many.py").write_text(body + "\n")
        env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_ADDOPTS", "PYTEST_PLUGINS")}
        return timed(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=project, env=env)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="meshes started after the first")
    parser.add_argument("--reference-runs", type=int, default=3)
    parser.add_argument("--tests", type=int, default=10, help="tests in the pytest session")
    args = parser.parse_args()
    from sandbox.scaffold import create

    with tempfile.TemporaryDirectory(prefix="fixture-bench-") as tmp:
        create(Path(tmp) / "project")
        compose = Path(tmp) / "project" / "compose.yaml"
        ref = reference(compose, args.reference_runs)
        first, totals, starts = fixture(compose, args.runs)
    session = pytest_session(args.tests)
    median = statistics.median(totals)
    print(f"\nA mesh of three workloads, local runtime: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}\n")
    print("| What | Start + stop | Ratio to the reference | Target |")
    print("|---|---|---|---|")
    ref_median = statistics.median(ref)
    print(f"| `sandbox up --detach` + `sandbox down` (reference, median of {len(ref)}) | {ref_median:.2f} s | 1.00 | |")
    ok = "met" if first < TARGET else "MISSED"
    what = "fixture, the session's first mesh (supervisor server included)"
    print(f"| {what} | {first:.2f} s | {first / ref_median:.2f} | < {TARGET:g} s {ok} |")
    ok = "met" if max(totals) < TARGET else "MISSED"
    print(
        f"| fixture, each further mesh (median of {len(totals)}; worst {max(totals):.2f} s; start alone "
        f"{statistics.median(starts):.2f} s) | {median:.2f} s | {median / ref_median:.2f} | < {TARGET:g} s {ok} |"
    )
    print(
        f"| `pytest`, {args.tests} tests with a function-scoped `mesh` (whole session) | {session:.2f} s, "
        f"{session / args.tests:.2f} s per test | | |"
    )


if __name__ == "__main__":
    main()
