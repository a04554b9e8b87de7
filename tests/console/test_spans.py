"""Zipkin v2 JSON -> spans in Jaeger's model (sandbox/console/spans.py)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from console_helpers import T0, zspan

from sandbox.console.spans import UNKNOWN_SERVICE, SpanFormatError, decode_zipkin, normalize_trace_id


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a" * 32, "a" * 32),
        ("0" * 16 + "b" * 16, "b" * 16),  # high half zero prints as 64 bits, as Jaeger's TraceID.String
        ("B" * 16, "b" * 16),
        ("1", "0000000000000001"),
        ("00000000000000010000000000000002", "00000000000000010000000000000002"),
        ("x" * 16, None),
        ("a" * 33, None),
        ("", None),
    ],
)
def test_trace_ids_print_as_jaeger_does(text: str, expected: str | None) -> None:
    assert normalize_trace_id(text) == expected


@pytest.mark.parametrize(
    ("raw", "checks"),
    [
        (
            zspan(kind="CLIENT", remoteEndpoint={"ipv4": "10.0.0.2", "port": 9080, "serviceName": "reviews"}),
            {
                "span.kind": "client",
                "peer.ipv4": "10.0.0.2",
                "peer.port": 9080,
                "peer.service": "reviews",
                "http.status_code": "200",
            },
        ),
        (zspan(kind="SERVER", shared=True), {"span.kind": "server"}),
        (zspan(kind="PRODUCER"), {"span.kind": "producer"}),
        (zspan(kind=None), {"span.kind": None}),
        (zspan(remoteEndpoint={"ipv6": "::1", "port": 0}), {"peer.ipv6": "::1", "peer.port": None}),
        (zspan(tags={"error": "true"}), {"error": "true", "component": None}),
    ],
)
def test_zipkin_fields_become_jaeger_tags(raw: dict[str, Any], checks: dict[str, Any]) -> None:
    (span,) = decode_zipkin([raw])
    for key, value in checks.items():
        assert span.tag(key) == value, key
    assert span.process.service_name == "productpage.default"
    assert span.process.tags == (("ip", "string", "127.0.0.1"),)


def test_a_span_keeps_ids_times_name_and_annotations() -> None:
    raw = zspan(
        trace="0" * 16 + "c" * 16,
        span_id="2" * 16,
        parent="1" * 16,
        start=T0 + 5,
        duration=42,
        debug=True,
        annotations=[{"timestamp": T0 + 7, "value": "ws"}],
    )
    (span,) = decode_zipkin([raw])
    assert (span.trace_id, span.span_id, span.parent_id) == ("c" * 16, "2" * 16, "1" * 16)
    assert (span.start_time, span.duration, span.operation_name) == (T0 + 5, 42, raw["name"])
    assert span.flags == 3
    assert [(log.timestamp, log.fields) for log in span.logs] == [(T0 + 7, (("event", "string", "ws"),))]


def test_a_span_without_a_local_service_is_jaegers_unknown_service() -> None:
    raw = zspan()
    del raw["localEndpoint"]
    (span,) = decode_zipkin([raw])
    assert span.process.service_name == UNKNOWN_SERVICE
    assert span.process.tags == ()


def test_spans_of_one_batch_share_their_process() -> None:
    a, b = decode_zipkin([zspan(span_id="1" * 16), zspan(span_id="2" * 16)])
    assert a.process is b.process


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"traceId": "a"}, "expected a JSON array of spans, got an object"),
        ([zspan(), "x"], "span[1]: expected a JSON object, got a string"),
        ([zspan(trace="xyz")], "span[0].traceId: expected 16 or 32 hex digits, got 'xyz'"),
        ([zspan(trace="0" * 32)], "span[0].traceId: expected 16 or 32 hex digits"),
        ([{k: v for k, v in zspan().items() if k != "id"}], "span[0].id: expected 16 hex digits, got missing"),
        ([zspan(parent="nothex")], "span[0].parentId: expected 16 hex digits"),
        ([zspan(kind="INTERNAL")], "span[0].kind: must be one of CLIENT, SERVER, PRODUCER, CONSUMER"),
        ([zspan(timestamp="soon")], "span[0].timestamp: expected microseconds"),
        ([zspan(duration=-1)], "span[0].duration: expected microseconds"),
        ([zspan(tags={"http.status_code": 200})], "span[0].tags.http.status_code: tag values are strings"),
        ([zspan(tags=["a"])], "span[0].tags: expected an object of strings, got an array"),
        ([zspan(localEndpoint="me")], "span[0].localEndpoint: expected an object, got a string"),
        ([zspan(annotations=[{"value": 3}])], "span[0].annotations[0].value: expected a string, got a number"),
    ],
)
def test_a_bad_span_refuses_the_batch_naming_the_field(payload: Any, message: str) -> None:
    with pytest.raises(SpanFormatError, match="^" + re.escape(message)):
        decode_zipkin(payload)
