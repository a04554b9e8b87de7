"""`sandbox console` as a user runs it: usage errors, and a real process that serves and stops cleanly."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sandbox.cli import app


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tracing", "ftp://jaeger:16686"], "--tracing must be an http(s) base URL"),
        (["--prometheus", "localhost:9090"], "--prometheus must be an http(s) base URL"),
        (["--port", "70000"], "--port must be between 0 and 65535"),
        (["--max-traces", "0"], "--max-traces and --max-spans must be at least 1"),
        (["--tracing", "http://127.0.0.1:16686", "--zipkin-port", "9411"], "--zipkin-port is for the built-in"),
        (["-f", "no/such/compose.yaml"], "no such compose file: no/such/compose.yaml"),
    ],
)
def test_unusable_options_exit_2_with_a_message(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["console", *args])
    assert result.exit_code == 2
    assert f"error: {message}" in result.output
    assert "Traceback" not in result.output


def start(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "sandbox", "console", "--control-plane", "http://127.0.0.1:9", *args],
        cwd=tmp_path,  # no compose file here or above: the console runs without a project
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def test_the_console_serves_until_sigterm(tmp_path: Path) -> None:
    proc = start(tmp_path, "--port", "0")
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 30
        port = None
        while port is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, "the console exited before listening"
            if found := re.search(r"console on http://127\.0\.0\.1:(\d+)/", line):
                port = int(found.group(1))
        assert port is not None
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz/ready", timeout=5) as resp:
            assert resp.read() == b"ok"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as resp:
            assert b"Unreachable" in resp.read()  # nothing at 127.0.0.1:9
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=15)
        assert proc.returncode == 0
        assert "Traceback" not in output
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_port_in_use_is_named_without_a_traceback(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = start(tmp_path, "--port", str(port))
        output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 2  # it cannot start here (sandbox.service's rule)
    assert f"cannot listen on 127.0.0.1:{port}" in output
    assert "Traceback" not in output
