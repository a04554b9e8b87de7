"""`sandbox demo bookinfo` end to end on the local runtime: `--auto` plays every step and checks
its outcome (the CI run of the workshop), never opens a browser, and leaves the samples' rules as
they were and nothing running; played by hand, it opens each step's page, waits for Enter, and
Ctrl-C puts the starting rules back on a mesh the presenter started (which keeps running)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sandbox.operator.edit import istio_files
from sandbox.workshop.steps import BOOKINFO

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def samples(tmp_path: Path) -> Path:
    """samples/bookinfo and samples/httpbin side by side in tmp_path, Bookinfo on a free ingress port."""
    for name in ("bookinfo", "httpbin"):
        shutil.copytree(
            ROOT / "samples" / name, tmp_path / name, ignore=shutil.ignore_patterns(".sandbox", "__pycache__")
        )
    compose = tmp_path / "bookinfo" / "compose.yaml"
    compose.write_text(f"x-sandbox: {{ingress: {{port: {free_port()}}}}}\n" + compose.read_text())
    return compose


def browser(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """An environment whose BROWSER records each URL it is asked to open."""
    opened = tmp_path / "opened.txt"
    script = tmp_path / "browser.sh"
    script.write_text(f'#!/bin/sh\necho "$1" >> {opened}\n')
    script.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    return {**env, "BROWSER": str(script), "NO_COLOR": "1"}, opened


def sandbox(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sandbox", *args], capture_output=True, text=True, env=env, timeout=timeout, check=False
    )


def test_auto_plays_every_step_and_leaves_everything_as_it_was(tmp_path: Path) -> None:
    compose = samples(tmp_path)
    before = {name: istio_files(tmp_path / name / "istio") for name in ("bookinfo", "httpbin")}
    env, opened = browser(tmp_path)
    began = time.monotonic()
    done = sandbox("demo", "bookinfo", "-f", str(compose), "--auto", "--runtime", "local", env=env)
    took = time.monotonic() - began
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    played = [s for s in BOOKINFO if s.available]  # all but what the sidecar does not enforce yet
    assert f"{len(played)} step(s) as expected, 0 not, {len(BOOKINFO) - len(played)} skipped." in out
    assert len(re.findall(r"\[ok, \d+\.\d s\]", out)) == len(played) and "NOT AS EXPECTED" not in out
    for step in BOOKINFO:
        if not step.available:
            assert f"{step.title}\n  Not available in this version: {step.unavailable_because}" in out, out
    assert "refused, as it should be: nothing applied" in out and "KIA1107" in out  # the validation step
    assert "Console: http://127.0.0.1:" in out
    assert not opened.exists()  # --auto never opens a page
    assert {name: istio_files(tmp_path / name / "istio") for name in before} == before  # rules as they were
    assert not (tmp_path / "bookinfo" / ".sandbox" / "mesh.json").exists()  # the mesh it started is gone
    assert "Stopping the httpbin mesh the workshop started." in out
    assert took < 180, took  # tens of seconds on an idle machine; bounded for a busy CI


def test_played_by_hand_it_opens_pages_waits_and_ctrl_c_restores_the_rules(tmp_path: Path) -> None:
    compose = samples(tmp_path)
    up = sandbox("up", "--detach", "--runtime", "local", "-f", str(compose))
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        before = istio_files(tmp_path / "bookinfo" / "istio")
        env, opened = browser(tmp_path)
        walk = subprocess.Popen(
            [sys.executable, "-m", "sandbox", "demo", "bookinfo", "-f", str(compose), "--step", "3"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        assert walk.stdin is not None and walk.stdout is not None
        seen = _read_until(walk, "Press Enter for the next step")
        assert "Using the running bookinfo mesh" in seen and "Step 3/15: Weighted routing, a canary" in seen
        assert "virtualservice.networking.istio.io/reviews configured" in seen
        walk.stdin.write("\n")
        walk.stdin.flush()
        seen = _read_until(walk, "Press Enter for the next step")
        assert "Step 4/15: Weighted routing, an A/B test" in seen
        assert istio_files(tmp_path / "bookinfo" / "istio") != before  # step 4's rules are in force
        walk.send_signal(signal.SIGINT)
        rest, _ = walk.communicate(timeout=60)
        assert walk.returncode == 130, rest
        assert "Leaving the workshop." in rest and "starting rules are back" in rest
        assert istio_files(tmp_path / "bookinfo" / "istio") == before
        urls = opened.read_text().split()
        assert len(urls) == 2 and all(u.startswith("http://127.0.0.1:") for u in urls)  # one page per step
        status = sandbox("status", "-f", str(compose))
        assert status.returncode == 0, status.stdout  # the presenter's mesh keeps running
    finally:
        sandbox("down", "-f", str(compose))


def _read_until(walk: subprocess.Popen[str], marker: str, timeout: float = 120) -> str:
    assert walk.stdout is not None
    seen = ""
    deadline = time.monotonic() + timeout
    while marker not in seen:
        assert time.monotonic() < deadline, seen
        chunk = walk.stdout.read(1)
        assert chunk, seen  # it ended
        seen += chunk
    return seen


def test_list_and_bad_arguments() -> None:
    listed = sandbox("demo", "bookinfo", "--list")
    assert listed.returncode == 0 and listed.stdout.count("\n") == 15
    assert sandbox("demo", "bookinfo", "--step", "16").returncode == 2
    other = sandbox("demo", "sockshop")
    assert other.returncode == 2 and "no demo named 'sockshop' (demos: bookinfo)" in other.stderr


def test_a_mesh_that_cannot_start_ends_the_walk_with_the_reason(tmp_path: Path) -> None:
    compose = samples(tmp_path)
    port = int(compose.read_text().split("port: ", 1)[1].split("}", 1)[0])
    with socket.socket() as holder:  # something else listens on Bookinfo's ingress port
        holder.bind(("127.0.0.1", port))
        holder.listen()
        done = sandbox("demo", "bookinfo", "-f", str(compose), "--auto", "--runtime", "local", timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "error: the mesh cannot start" in done.stdout and "SBX504" in done.stdout
    assert f"host port {port}" in done.stdout
    assert not (tmp_path / "bookinfo" / ".sandbox" / "mesh.json").exists()
