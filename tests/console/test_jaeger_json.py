"""Spans -> Jaeger query-API JSON, the span-id deduper, and trace summaries (sandbox/console/jaeger.py)."""

from __future__ import annotations

from typing import Any

import pytest
from console_helpers import T0, spans, zspan

from sandbox.console.jaeger import dedupe_span_ids, envelope, error_envelope, summarize, trace_json

A, B, C, D = "a" * 16, "b" * 16, "c" * 16, "d" * 16

# ingress CLIENT A -> productpage SERVER (shared A) -> productpage CLIENT B -> reviews SERVER (shared B)
HOPS = [
    zspan(span_id=A, service="istio-ingressgateway.istio-system", kind="CLIENT", start=T0, duration=900),
    zspan(span_id=A, service="productpage.default", kind="SERVER", shared=True, start=T0 + 10, duration=880),
    zspan(span_id=B, parent=A, service="productpage.default", kind="CLIENT", start=T0 + 20, duration=500),
    zspan(span_id=B, parent=A, service="reviews.default", kind="SERVER", shared=True, start=T0 + 30, duration=450),
]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # no shared ids: nothing changes
        ([zspan(span_id=A), zspan(span_id=B, parent=A)], [(A, None), (B, A)]),
        # Jaeger's SpanIDDeduper: server spans get 1, 2, ... and hang under the client span they shared
        (HOPS, [(A, None), ("0000000000000001", A), (B, "0000000000000001"), ("0000000000000002", B)]),
        # a server span sharing an id with no client span keeps it
        ([zspan(span_id=A, kind="SERVER"), zspan(span_id=B, parent=A)], [(A, None), (B, A)]),
        # a fresh id skips ids the trace already uses
        (
            [zspan(span_id="0" * 15 + "1"), zspan(span_id=A, kind="CLIENT"), zspan(span_id=A, kind="SERVER")],
            [("0" * 15 + "1", None), (A, None), ("0000000000000002", A)],
        ),
    ],
)
def test_span_ids_are_deduplicated_as_jaeger_does(raw: list[dict[str, Any]], expected: list[Any]) -> None:
    assert dedupe_span_ids(spans(*raw)) == expected


def test_a_trace_in_jaegers_json() -> None:
    trace = trace_json(list(reversed(spans(*HOPS))))  # arrival order does not matter
    assert trace["traceID"] == "a" * 32
    assert trace["warnings"] is None
    assert trace["processes"] == {
        "p1": {
            "serviceName": "istio-ingressgateway.istio-system",
            "tags": [{"key": "ip", "type": "string", "value": "127.0.0.1"}],
        },
        "p2": {"serviceName": "productpage.default", "tags": [{"key": "ip", "type": "string", "value": "127.0.0.1"}]},
        "p3": {"serviceName": "reviews.default", "tags": [{"key": "ip", "type": "string", "value": "127.0.0.1"}]},
    }
    first, second = trace["spans"][:2]
    assert first == {
        "traceID": "a" * 32,
        "spanID": A,
        "flags": 1,
        "operationName": "reviews.default.svc.cluster.local:9080/*",
        "references": [],
        "startTime": T0,
        "duration": 900,
        "tags": [
            {"key": "component", "type": "string", "value": "proxy"},
            {"key": "http.status_code", "type": "string", "value": "200"},
            {"key": "span.kind", "type": "string", "value": "client"},
        ],
        "logs": [],
        "processID": "p1",
        "warnings": None,
    }
    assert second["references"] == [{"refType": "CHILD_OF", "traceID": "a" * 32, "spanID": A}]
    assert [s["processID"] for s in trace["spans"]] == ["p1", "p2", "p2", "p3"]


def test_raw_traces_keep_the_shared_ids_and_the_tag_order() -> None:
    raw = [zspan(tags={"z": "1", "a": "2"}, start=T0 + 100)]
    assert [t["key"] for t in trace_json(spans(*raw))["spans"][0]["tags"]] == ["a", "span.kind", "z"]
    trace = trace_json(spans(*HOPS, *raw), adjust=False)
    assert [s["spanID"] for s in trace["spans"]] == [A, A, B, B, "1" * 16]
    assert [t["key"] for t in trace["spans"][-1]["tags"]] == ["z", "a", "span.kind"]


def test_envelopes() -> None:
    assert envelope(["x"], total=1) == {"data": ["x"], "total": 1, "limit": 0, "offset": 0, "errors": None}
    assert error_envelope(404, "trace not found") == {
        "data": None,
        "total": 0,
        "limit": 0,
        "offset": 0,
        "errors": [{"code": 404, "msg": "trace not found"}],
    }


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            HOPS,
            {
                "service": "istio-ingressgateway.istio-system",
                "duration": 900,
                "spans": 4,
                "statusCode": 200,
                "error": False,
                "services": ["istio-ingressgateway.istio-system", "productpage.default", "reviews.default"],
            },
        ),
        # the root is the span without a parent in the trace; the trace lasts until its last span ends
        (
            [
                zspan(span_id=B, parent=C, service="reviews.default", start=T0 + 50, duration=2_000, status="503"),
                zspan(span_id=C, parent=D, service="web.default", start=T0, duration=100, status="504"),
            ],
            {"service": "web.default", "duration": 2_050, "statusCode": 504, "error": False},
        ),
        ([zspan(status=None, tags={"error": "true"})], {"statusCode": None, "error": True}),
        ([zspan(status="abc")], {"statusCode": None}),
    ],
)
def test_summaries(raw: list[dict[str, Any]], expected: dict[str, Any]) -> None:
    summary = summarize(trace_json(spans(*raw)))
    assert summary is not None
    data = summary.to_json()
    assert {k: data[k] for k in expected} == expected


def test_a_trace_without_spans_has_no_summary() -> None:
    assert summarize({"traceID": "x", "spans": []}) is None


def test_the_trace_page_rows_nest_under_their_parents() -> None:
    from sandbox.console.views import trace_view

    view = trace_view(trace_json(spans(*HOPS)))
    assert [(r["service"], r["depth"], r["left"], r["width"]) for r in view["spans"]] == [
        ("istio-ingressgateway.istio-system", 0, 0.0, 100.0),
        ("productpage.default", 1, 1.11, 97.78),
        ("productpage.default", 2, 2.22, 55.56),
        ("reviews.default", 3, 3.33, 50.0),
    ]
    assert (view["duration"], view["startTime"]) == (900, T0)


def test_spans_in_a_reference_cycle_still_show() -> None:
    from sandbox.console.views import trace_view

    loop = trace_json(spans(zspan(span_id=A, parent=B), zspan(span_id=B, parent=A, start=T0 + 1)), adjust=False)
    assert sorted(r["spanID"] for r in trace_view(loop)["spans"]) == [A, B]
