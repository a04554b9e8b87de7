"""A project that is not this repository, for the plugin's tests: `sandbox init`'s mesh (web calls
api v1/v2) in a temporary directory with a pytest.ini, run with `python -m pytest` there. The
plugin comes from the installed package's `pytest11` entry point: the project has no conftest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from sandbox.scaffold import create

INI = """\
[pytest]
sandbox_compose = mesh/compose.yaml
{extra}"""


def make_project(directory: Path, tests: dict[str, str], ini_extra: str = "") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    create(directory / "mesh")
    (directory / "pytest.ini").write_text(INI.format(extra=ini_extra))
    for name, text in tests.items():
        (directory / name).write_text(text)
    assert not list(directory.rglob("conftest.py"))
    return directory


def pytest_env() -> dict[str, str]:
    """Our environment without what would change which plugins load."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTEST_CURRENT_TEST")}


def run_pytest(project: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=pytest_env(),
        check=False,
    )


def mesh_pids(compose_file: Path) -> list[int]:
    """Every process of a running local mesh (its supervisor included), from its state files."""
    state = json.loads((compose_file.parent / ".sandbox" / "local" / "processes.json").read_text())
    return [*(pid for row in state["processes"] for pid in row["pids"]), int(state["supervisor"])]


def children_running(parent: int, marker: str) -> list[int]:
    """Processes whose parent is `parent` and whose command line contains `marker`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent and marker in cmdline:
            found.append(int(entry.name))
    return found
