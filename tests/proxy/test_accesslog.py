"""Access log lines in Istio's default text format, buffered."""

from __future__ import annotations

import asyncio
import calendar
import json

from sandbox.proxy.accesslog import AccessLog, format_json, format_line
from sandbox.proxy.record import record

T0 = calendar.timegm((2026, 11, 25, 21, 26, 18, 0, 0, 0)) + 0.409


def test_forwarded_request_line() -> None:
    rec = record(
        T0,
        method="GET",
        path="/reviews/0",
        authority="reviews:9080",
        request_id="6c2a3a4e-0000-4000-8000-000000000001",
        user_agent="curl/8.11.1",
        response_code=200,
        response_code_details="via_upstream",
        bytes_received=0,
        bytes_sent=295,
        duration=0.0123,
        upstream_service_time=11,
        upstream_host="127.0.0.1:15006",
        upstream_cluster="outbound|9080|v2|reviews.default.svc.cluster.local",
        upstream_local_address="127.0.0.1:51234",
        downstream_local_address="10.0.0.5:9080",
        downstream_remote_address="127.0.0.1:40000",
        route_name="default",
    )
    assert format_line(rec) == (
        '[2026-11-25T21:26:18.409Z] "GET /reviews/0 HTTP/1.1" 200 - via_upstream - "-" 0 295 12 11 "-" '
        '"curl/8.11.1" "6c2a3a4e-0000-4000-8000-000000000001" "reviews:9080" "127.0.0.1:15006" '
        "outbound|9080|v2|reviews.default.svc.cluster.local 127.0.0.1:51234 10.0.0.5:9080 127.0.0.1:40000 - "
        "default\n"
    )


def test_local_reply_line_prints_dashes_for_what_did_not_happen() -> None:
    rec = record(
        T0,
        method="GET",
        path="/productpage",
        authority="productpage:9080",
        request_id="r1",
        response_code=503,
        response_flags="UO",
        response_code_details="upstream_reset_before_response_started{overflow}",
        bytes_sent=81,
    )
    line = format_line(rec)
    assert line.startswith('[2026-11-25T21:26:18.409Z] "GET /productpage HTTP/1.1" 503 UO ')
    assert line.endswith(' "r1" "productpage:9080" "-" - - - - - -\n')
    assert ' 0 81 0 - "-" "-" ' in line


def test_lines_are_buffered_and_written_together() -> None:
    writes: list[str] = []
    log = AccessLog(writes.append, max_buffered=3)
    for i in range(4):
        log.log(record(T0, method="GET", path=f"/{i}", response_code=200))
    assert len(writes) == 1 and writes[0].count("\n") == 3
    log.flush()
    assert len(writes) == 2 and '"GET /3 HTTP/1.1"' in writes[1]
    log.flush()
    assert len(writes) == 2 and log.lines_written == 4


def test_run_flushes_periodically_and_on_cancel() -> None:
    writes: list[str] = []
    log = AccessLog(writes.append, flush_interval=0.01)

    async def main() -> None:
        task = asyncio.create_task(log.run())
        log.log(record(T0, method="GET", path="/a"))
        for _ in range(100):
            await asyncio.sleep(0.01)
            if writes:
                break
        log.log(record(T0, method="GET", path="/b"))
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())
    assert "".join(writes).count("\n") == 2


def test_json_encoding_uses_istios_keys() -> None:
    rec = record(
        T0, method="GET", path="/ratings/0", authority="ratings:9080", request_id="r2", response_code=500,
        response_flags="FI", bytes_sent=18, duration=0.0021, route_name="ratings",
    )  # fmt: skip
    data = json.loads(format_json(rec))
    assert data["start_time"] == "2026-11-25T21:26:18.409Z"
    assert (data["method"], data["path"], data["response_code"], data["response_flags"]) == (
        "GET", "/ratings/0", 500, "FI"
    )  # fmt: skip
    assert data["bytes_sent"] == 18 and data["duration"] == 2 and data["route_name"] == "ratings"
    assert data["upstream_host"] is None and data["user_agent"] is None
    writes: list[str] = []
    log = AccessLog(writes.append, encoding="JSON")
    log.log(rec)
    log.flush()
    assert json.loads(writes[0])["request_id"] == "r2"


def test_the_upstream_service_time_prints_in_whole_milliseconds_or_a_dash_when_there_was_none() -> None:
    for ms in (0, 1, 1001, 60007):
        rec = record(T0, upstream_service_time=ms)
        assert f" 0 0 0 {ms} " in format_line(rec)
        assert json.loads(format_json(rec))["upstream_service_time"] == ms
    local = record(T0, response_code=503)  # a local reply: no upstream answered
    assert ' 0 0 0 - "-" ' in format_line(local)
    assert json.loads(format_json(local))["upstream_service_time"] is None
