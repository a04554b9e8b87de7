"""`sandbox load` against a loopback upstream: exact counts, codes, concurrency, pacing and time
bounds, connection reuse, failures as code -1, the proxy's absolute-form request line, the CLI."""

from __future__ import annotations

import asyncio
import json
import socket
import time

from load_support import Reply, upstream
from typer.testing import CliRunner

from sandbox.cli import app
from sandbox.load import LoadPlan
from sandbox.load.runner import run
from sandbox.load.stats import LoadResult


def load(plan: LoadPlan) -> tuple[LoadResult, float]:
    started = time.monotonic()
    result = asyncio.run(asyncio.wait_for(run(plan), 30))
    return result, time.monotonic() - started


def test_exactly_n_calls_with_codes_and_one_socket_per_connection() -> None:
    with upstream(lambda n, head: Reply(503 if n % 4 == 3 else 200)) as up:
        result, _ = load(LoadPlan(f"http://127.0.0.1:{up.port}/get", connections=3, requests=40))
    assert result.calls == 40 == up.calls
    assert result.codes == {200: 30, 503: 10}
    assert result.sockets == 3 == up.connections  # keep-alive: one per worker
    assert up.max_in_flight <= 3
    assert result.latency.count == 40 and 0 < result.latency.min <= result.latency.max


def test_concurrency_is_what_was_asked() -> None:
    with upstream(lambda n, head: Reply(delay=0.05)) as up:
        result, _ = load(LoadPlan(f"http://127.0.0.1:{up.port}/", connections=4, requests=16))
    assert result.codes == {200: 16}
    assert up.max_in_flight == 4


def test_qps_paces_the_calls() -> None:
    with upstream() as up:
        result, took = load(LoadPlan(f"http://127.0.0.1:{up.port}/", connections=2, qps=20, requests=10))
    assert result.calls == 10
    # 10 calls at 20/s over 2 connections: the last starts about 0.45 s after the first
    assert 0.4 <= took < 2.0
    assert 5 <= result.actual_qps <= 25


def test_duration_stops_new_calls() -> None:
    with upstream(lambda n, head: Reply(delay=0.01)) as up:
        result, took = load(LoadPlan(f"http://127.0.0.1:{up.port}/", connections=2, duration=0.3))
    assert 0.3 <= took < 1.5
    assert 4 <= result.calls == up.calls
    assert result.duration == 0.3


def test_closing_answers_reopen_connections() -> None:
    replies = [Reply(close=True), Reply(framing="close", body=b"until the end"), Reply(framing="chunked")]
    with upstream(lambda n, head: replies[n % 3]) as up:
        result, _ = load(LoadPlan(f"http://127.0.0.1:{up.port}/", requests=9))
    assert result.codes == {200: 9}
    assert result.sockets == up.connections == 7  # two of every three answers close the connection
    assert result.body_bytes == 3 * (2 + len(b"until the end") + 2)


def test_a_hanging_upstream_is_cut_at_the_timeout() -> None:
    with upstream(lambda n, head: Reply(hang=n == 0)) as up:
        result, took = load(LoadPlan(f"http://127.0.0.1:{up.port}/", requests=3, timeout=0.3))
    assert result.codes == {-1: 1, 200: 2}
    assert result.errors == {"timeout": 1}
    assert took < 2.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_refused_connections_are_code_minus_one() -> None:
    result, _ = load(LoadPlan(f"http://127.0.0.1:{free_port()}/", connections=2, requests=4))
    assert result.codes == {-1: 4}
    assert result.errors == {"connection refused": 4}


def test_through_a_proxy_the_request_line_is_absolute() -> None:
    with upstream() as proxy:
        result, _ = load(LoadPlan("http://httpbin:8000/get?x=1", proxy=f"http://127.0.0.1:{proxy.port}", requests=2))
    assert result.codes == {200: 2}
    assert proxy.heads[0].startswith(b"GET http://httpbin:8000/get?x=1 HTTP/1.1\r\nHost: httpbin:8000\r\n")


def test_http_proxy_is_not_read_unless_asked(monkeypatch: object) -> None:
    import pytest

    assert isinstance(monkeypatch, pytest.MonkeyPatch)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    with upstream() as up:
        result, _ = load(LoadPlan(f"http://127.0.0.1:{up.port}/", requests=2))
    assert result.codes == {200: 2}


def cli(*args: str) -> tuple[int, str]:
    outcome = CliRunner().invoke(app, ["load", *args])
    return outcome.exit_code, outcome.output


def test_cli_prints_fortios_summary() -> None:
    with upstream(lambda n, head: Reply(503 if n < 3 else 200)) as up:
        code, out = cli(f"http://127.0.0.1:{up.port}/get", "-c", "2", "-n", "20", "-H", "end-user: jason")
    assert code == 0
    lines = out.splitlines()
    assert (
        lines[0] == f"Starting at max qps with 2 connection(s) for exactly 20 calls: GET http://127.0.0.1:{up.port}/get"
    )
    assert "Code 200 : 17 (85.0 %)" in lines and "Code 503 : 3 (15.0 %)" in lines
    assert any(line.startswith("# target 99.9% ") for line in lines)
    assert b"end-user: jason\r\n" in up.heads[0]


def test_cli_json() -> None:
    with upstream() as up:
        code, out = cli(f"http://127.0.0.1:{up.port}/", "-n", "5", "--qps", "0", "-o", "json")
    assert code == 0
    data = json.loads(out)
    assert data["RetCodes"] == {"200": 5} and data["DurationHistogram"]["Count"] == 5


def test_cli_exit_codes() -> None:
    code, out = cli(f"http://127.0.0.1:{free_port()}/", "-n", "2")
    assert code == 1 and "Code -1 : 2 (100.0 %)" in out
    for args, message in [
        (["http://h/", "-n", "5", "-t", "1s"], "not both"),
        (["https://h/"], "http://"),
        (["http://h/", "-c", "0"], "--connections"),
        (["http://h/", "-H", "nocolon"], "-H wants"),
        (["http://h/", "-t", "soon"], "-t/--duration"),
        (["http://h/", "-o", "yaml"], "--output"),
    ]:
        code, out = cli(*args)
        assert code == 2 and "error:" in out and message in out, (args, out)
