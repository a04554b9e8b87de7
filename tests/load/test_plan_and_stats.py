"""The load plan's bounds and request bytes, percentiles, histogram and the fortio-style report."""

from __future__ import annotations

import pytest

from sandbox.load import LoadPlan, PlanError, parse_duration, parse_header
from sandbox.load.plan import MAX_DURATION, MAX_REQUESTS
from sandbox.load.report import starting_line, text, to_json
from sandbox.load.stats import Latency, LoadResult, Recorder, histogram, percentile


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"connections": 0}, "-c/--connections must be 1 to 1000"),
        ({"connections": 1001}, "-c/--connections"),
        ({"qps": -1}, "--qps"),
        ({"qps": float("nan")}, "--qps"),
        ({"requests": 0}, "-n/--requests must be 1 to 1,000,000"),
        ({"requests": MAX_REQUESTS + 1}, "-n/--requests"),
        ({"duration": 0.0}, "-t/--duration"),
        ({"duration": MAX_DURATION + 1}, "-t/--duration"),
        ({"requests": 5, "duration": 1.0}, "not both"),
        ({"timeout": 0.0}, "--timeout"),
        ({"url": "https://example.com/"}, "must be an http://"),
        ({"url": "httpbin:8000/get"}, "must be an http://"),
        ({"url": "http://h:99999/"}, "URL"),
        ({"proxy": "127.0.0.1:15001"}, "--proxy must be an http://"),
    ],
)
def test_plan_rejects_what_cannot_run(kwargs: dict[str, object], message: str) -> None:
    args = {"url": "http://127.0.0.1:8000/get", **kwargs}
    with pytest.raises(PlanError, match=message.replace("(", r"\(")):
        LoadPlan(**args)  # type: ignore[arg-type]


def test_run_length_defaults_and_caps() -> None:
    assert LoadPlan("http://h/").run_for == 5.0  # fortio's default
    assert LoadPlan("http://h/", duration=2.5).run_for == 2.5
    only_n = LoadPlan("http://h/", requests=20)
    assert (only_n.max_requests, only_n.run_for) == (20, MAX_DURATION)
    assert LoadPlan("http://h/", duration=1.0).max_requests == MAX_REQUESTS
    assert LoadPlan("http://h/", connections=4, qps=8).interval == 0.5
    assert LoadPlan("http://h/", connections=4).interval == 0.0


def test_request_bytes_direct_and_through_a_proxy() -> None:
    direct = LoadPlan("http://127.0.0.1:8000/get?a=1", headers=(("end-user", "jason"),))
    assert direct.target().host == "127.0.0.1" and direct.target().port == 8000
    assert direct.request_bytes() == (
        b"GET /get?a=1 HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUser-Agent: sandbox-load\r\nend-user: jason\r\n\r\n"
    )
    proxied = LoadPlan("http://httpbin:8000/get", proxy="http://127.0.0.1:15001", headers=(("Host", "x"),))
    target = proxied.target()
    assert (target.host, target.port) == ("127.0.0.1", 15001)
    assert proxied.request_bytes().startswith(b"GET http://httpbin:8000/get HTTP/1.1\r\nUser-Agent: sandbox-load\r\n")
    assert b"Host: x\r\n" in proxied.request_bytes() and b"Host: httpbin" not in proxied.request_bytes()
    assert LoadPlan("http://h").request_bytes().startswith(b"GET / HTTP/1.1\r\nHost: h\r\n")


def test_header_and_duration_arguments() -> None:
    assert parse_header("end-user: jason") == ("end-user", "jason")
    assert parse_header("X-A:b:c") == ("X-A", "b:c")
    for bad in ("no colon", ": v", "bad name: v", "a: b\r\nc: d"):
        with pytest.raises(PlanError, match="-H"):
            parse_header(bad)
    assert parse_duration("1m") == 60.0
    assert parse_duration("500ms") == 0.5
    assert parse_duration("2") == 2.0
    with pytest.raises(PlanError, match="-t/--duration"):
        parse_duration("soon")


def test_percentiles_interpolate_between_ranks() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 90) == pytest.approx(90.1)
    assert percentile(values, 99.9) == pytest.approx(99.901)
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) == 0.0


def test_histogram_uses_fortios_buckets_clamped_to_min_and_max() -> None:
    buckets = histogram(sorted([0.0005, 0.0007, 0.0015, 0.0035, 0.0036, 0.25]))
    assert [(b.start, b.end, b.count) for b in buckets] == [
        (0.0005, 0.001, 2),
        (0.001, 0.002, 1),
        (0.003, 0.004, 2),
        (0.2, 0.25, 1),
    ]
    assert [round(b.percent, 2) for b in buckets] == [33.33, 50.0, 83.33, 100.0]
    assert histogram(sorted([200.0, 300.0]))[-1].end == 300.0  # beyond the last bucket
    assert Latency.of([]).count == 0


def result_of(codes: dict[int, int], seconds: float = 0.004) -> LoadResult:
    recorder = Recorder()
    for code, count in codes.items():
        for _ in range(count):
            if code == -1:
                recorder.fail("connection refused", seconds)
            else:
                recorder.record(code, seconds, 100, 200)
    recorder.sockets = 4
    return LoadResult.build("http://httpbin:8000/get", None, 2, 0.0, 20, None, 0.5, recorder)


def test_text_report_reads_like_fortio() -> None:
    out = text(result_of({200: 17, 503: 3}))
    assert "Code 200 : 17 (85.0 %)" in out.splitlines()
    assert "Code 503 : 3 (15.0 %)" in out.splitlines()
    assert "Ended after 500.000ms : 20 calls. qps=40" in out
    assert "# target 50% 0.004" in out and "# target 99.9% 0.004" in out
    assert "# range, mid point, percentile, count" in out
    assert ">= 0.004 <= 0.004 , 0.004 , 100.00, 20" in out
    assert "Sockets used: 4 (for perfect keepalive, would be 2)" in out
    assert "All done 20 calls 4.000 ms avg, 40.0 qps" in out
    failed = text(result_of({-1: 2}))
    assert "Code -1 : 2 (100.0 %)" in failed and "Errors (code -1): connection refused: 2" in failed


def test_json_report_uses_fortios_keys() -> None:
    data = to_json(result_of({200: 17, 503: 3}))
    assert data["RetCodes"] == {"200": 17, "503": 3}
    assert data["DurationHistogram"]["Count"] == 20
    assert [p["Percentile"] for p in data["DurationHistogram"]["Percentiles"]] == [50, 75, 90, 99, 99.9]
    assert data["ActualQPS"] == 40.0 and data["NumThreads"] == 2 and data["RequestedQPS"] == "max"
    assert data["Exactly"] == 20 and data["SocketCount"] == 4 and data["ActualDuration"] == 500_000_000


def test_starting_line() -> None:
    plan = LoadPlan("http://httpbin:8000/get", connections=3, requests=30, proxy="http://127.0.0.1:1")
    assert starting_line(plan) == (
        "Starting at max qps with 3 connection(s) for exactly 30 calls: GET http://httpbin:8000/get"
        " through proxy http://127.0.0.1:1"
    )
    assert "at 10 qps" in starting_line(LoadPlan("http://h/", qps=10, duration=2.0))
    assert "for 2s:" in starting_line(LoadPlan("http://h/", qps=10, duration=2.0))
