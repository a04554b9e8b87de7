"""Jaeger's /api/traces parameters and matching (sandbox/console/query.py)."""

from __future__ import annotations

from typing import Any

import pytest
from console_helpers import T0, spans, zspan

from sandbox.console.query import (
    DEFAULT_LOOKBACK_US,
    QueryError,
    TraceQuery,
    find_traces,
    parse_go_duration,
    parse_query,
    span_matches,
)

NOW = T0 + 3_600_000_000


@pytest.mark.parametrize(
    ("text", "micros"),
    [
        ("1.5ms", 1_500),
        ("100us", 100),
        ("100µs", 100),
        ("2s", 2_000_000),
        ("1m30s", 90_000_000),
        ("0", 0),
        ("1h", 3_600_000_000),
        ("500ns", 0),
        ("1500ns", 2),
        (".5s", 500_000),
    ],
)
def test_go_durations(text: str, micros: int) -> None:
    assert parse_go_duration(text) == micros


@pytest.mark.parametrize("text", ["", "ms", "1", "1x", "1s2", "s1"])
def test_bad_go_durations(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_go_duration(text)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"service": ["a"]}, TraceQuery(service="a", start_min=NOW - DEFAULT_LOOKBACK_US, start_max=NOW)),
        (
            {"service": ["a"], "operation": ["op"], "limit": ["5"], "start": ["10"], "end": ["20"]},
            TraceQuery(service="a", operation="op", limit=5, start_min=10, start_max=20),
        ),
        ({"service": ["a"], "lookback": ["1h"]}, TraceQuery(service="a", start_min=T0, start_max=NOW)),
        (
            {"service": ["a"], "lookback": ["custom"], "start": ["7"]},
            TraceQuery(service="a", start_min=7, start_max=NOW),
        ),
        (
            {"service": ["a"], "minDuration": ["1ms"], "maxDuration": ["1s"]},
            TraceQuery(
                service="a",
                duration_min=1_000,
                duration_max=1_000_000,
                start_min=NOW - DEFAULT_LOOKBACK_US,
                start_max=NOW,
            ),
        ),
        (
            {"service": ["a"], "tags": ['{"error":"true"}'], "tag": ["http.url:http://x:1/"]},
            TraceQuery(
                service="a",
                tags={"error": "true", "http.url": "http://x:1/"},
                start_min=NOW - DEFAULT_LOOKBACK_US,
                start_max=NOW,
            ),
        ),
        (
            {"traceID": ["0000000000000000" + "b" * 16]},
            TraceQuery(trace_ids=("b" * 16,), start_min=NOW - DEFAULT_LOOKBACK_US, start_max=NOW),
        ),
    ],
)
def test_query_parameters(params: dict[str, list[str]], expected: TraceQuery) -> None:
    assert parse_query(params, NOW) == expected


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "parameter 'service' is required"),
        ({"service": ["a"], "limit": ["ten"]}, "unable to parse param 'limit'"),
        ({"service": ["a"], "start": ["yesterday"]}, "unable to parse param 'start'"),
        ({"service": ["a"], "minDuration": ["fast"]}, "unable to parse param 'minDuration': time: invalid duration"),
        ({"service": ["a"], "minDuration": ["2s"], "maxDuration": ["1s"]}, "'maxDuration' should be greater than"),
        ({"service": ["a"], "tags": ["{nope"]}, "malformed 'tags' parameter, cannot unmarshal JSON"),
        ({"service": ["a"], "tags": ['{"a": 1}']}, "malformed 'tags' parameter"),
        ({"service": ["a"], "tag": ["error"]}, "malformed 'tag' parameter, expecting key:value, received: error"),
        ({"service": ["a"], "lookback": ["soon"]}, "unable to parse param 'lookback'"),
        ({"traceID": ["zz"]}, "cannot parse traceID param"),
    ],
)
def test_bad_query_parameters(params: dict[str, list[str]], message: str) -> None:
    with pytest.raises(QueryError, match=message.replace("(", r"\(")):
        parse_query(params, NOW)


SPAN = spans(
    zspan(
        service="reviews.default",
        name="ratings.default.svc.cluster.local:9080/*",
        start=T0 + 100,
        duration=2_000,
        status="503",
        annotations=[{"timestamp": T0 + 200, "value": "retry"}],
    )
)[0]


@pytest.mark.parametrize(
    ("query", "matches"),
    [
        ({}, True),
        ({"service": "ratings.default"}, False),
        ({"operation": "ratings.default.svc.cluster.local:9080/*"}, True),
        ({"operation": "other"}, False),
        ({"duration_min": 2_000, "duration_max": 2_000}, True),
        ({"duration_min": 2_001}, False),
        ({"duration_max": 1_999}, False),
        ({"start_min": T0 + 100, "start_max": T0 + 100}, True),
        ({"start_min": T0 + 101}, False),
        ({"start_max": T0 + 99}, False),
        ({"tags": {"http.status_code": "503", "component": "proxy"}}, True),
        ({"tags": {"http.status_code": "200"}}, False),
        ({"tags": {"ip": "127.0.0.1"}}, True),  # process tags count
        ({"tags": {"event": "retry"}}, True),  # and log fields
        ({"tags": {"span.kind": "client"}}, True),
    ],
)
def test_span_matching(query: dict[str, Any], matches: bool) -> None:
    assert span_matches(SPAN, TraceQuery(**{"service": "reviews.default", **query})) is matches


def test_traces_match_on_any_one_span_and_come_newest_first_up_to_the_limit() -> None:
    older = spans(
        zspan(trace="1" * 16, service="web.default", start=T0),
        zspan(trace="1" * 16, span_id="2" * 16, service="api.default", start=T0 + 5, status="500"),
    )
    newer = spans(zspan(trace="2" * 16, service="api.default", start=T0 + 50))
    other = spans(zspan(trace="3" * 16, service="web.default", start=T0 + 99))
    traces = [other, newer, older]  # newest arrival first, as the store hands them over

    found = find_traces(traces, TraceQuery(service="api.default"))
    assert [t[0].trace_id for t in found] == ["2" * 16, "1" * 16]
    assert [t[0].trace_id for t in find_traces(traces, TraceQuery(service="api.default", limit=1))] == ["2" * 16]
    assert len(find_traces(traces, TraceQuery(service="api.default", limit=0))) == 2
    # both conditions on one span: web.default never answered 500
    assert find_traces(traces, TraceQuery(service="web.default", tags={"http.status_code": "500"})) == []


def test_the_search_stops_at_the_limit_and_sorts_what_it_found_by_start() -> None:
    late_arrival = spans(zspan(trace="1" * 16, start=T0 + 10))  # started later, arrived first
    early_start = spans(zspan(trace="2" * 16, start=T0))
    never_read = spans(zspan(trace="3" * 16, start=T0 + 99))
    found = find_traces([early_start, late_arrival, never_read], TraceQuery(service="productpage.default", limit=2))
    assert [t[0].trace_id for t in found] == ["1" * 16, "2" * 16]
