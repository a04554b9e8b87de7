"""x-request-id, B3 and traceparent: created or continued as Envoy's Zipkin tracer does."""

from __future__ import annotations

import random
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox.proxy.tracecontext import Incoming, TraceIds, extract

T32 = "463ac35c9f6413ad48485a3953bb6124"
T16 = "48485a3953bb6124"
S1 = "a2fb4a1d1a96d312"
S0 = "0020000000000001"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"x-b3-traceid": T32, "x-b3-spanid": S1, "x-b3-sampled": "1"}, Incoming(T32, S1, None, True)),
        ({"x-b3-traceid": T16, "x-b3-spanid": S1, "x-b3-parentspanid": S0}, Incoming(T16, S1, S0, None)),
        ({"x-b3-traceid": T32.upper(), "x-b3-spanid": S1, "x-b3-sampled": "0"}, Incoming(T32, S1, None, False)),
        (
            {"x-b3-traceid": T32, "x-b3-spanid": S1, "x-b3-sampled": "0", "x-b3-flags": "1"},
            Incoming(T32, S1, None, True),
        ),
        ({"x-b3-traceid": "xyz", "x-b3-spanid": S1}, None),
        ({"x-b3-traceid": "0" * 32, "x-b3-spanid": S1}, None),  # all-zero ids are invalid
        ({"b3": f"{T32}-{S1}-1-{S0}"}, Incoming(T32, S1, S0, True)),
        ({"b3": f"{T32}-{S1}"}, Incoming(T32, S1, None, None)),
        ({"b3": "0"}, None),
        ({"traceparent": f"00-{T32}-{S1}-01"}, Incoming(T32, S1, None, True)),
        ({"traceparent": f"00-{T32}-{S1}-00"}, Incoming(T32, S1, None, False)),
        ({"traceparent": f"00-{T32}-{S1}-zz"}, None),
        ({"traceparent": f"ff-{T32}-{S1}-01"}, None),
        ({"traceparent": "garbage"}, None),
        # B3 wins over traceparent when both are present.
        ({"x-b3-traceid": T16, "x-b3-spanid": S1, "traceparent": f"00-{T32}-{S0}-01"}, Incoming(T16, S1, None, None)),
    ],
)
def test_extract(headers: dict[str, str], expected: Incoming | None) -> None:
    assert extract(headers) == expected


def test_outbound_starts_a_trace_when_the_app_sent_none() -> None:
    ctx = TraceIds(random.Random(1)).outbound({})
    assert ctx.kind == "CLIENT" and ctx.parent_id is None and ctx.sampled
    assert len(ctx.trace_id) == 32 and len(ctx.span_id) == 16
    sent = dict(ctx.headers())
    assert sent["x-b3-traceid"] == ctx.trace_id and sent["x-b3-spanid"] == ctx.span_id
    assert sent["x-b3-sampled"] == "1" and "x-b3-parentspanid" not in sent
    assert sent["traceparent"] == f"00-{ctx.trace_id}-{ctx.span_id}-01"


def test_outbound_continues_the_apps_trace_as_a_child() -> None:
    ctx = TraceIds(random.Random(1)).outbound({"x-b3-traceid": T16, "x-b3-spanid": S1, "x-b3-sampled": "0"})
    assert ctx.trace_id == T16 and ctx.parent_id == S1 and ctx.span_id != S1
    assert not ctx.sampled  # the incoming decision wins
    sent = dict(ctx.headers())
    assert sent["x-b3-parentspanid"] == S1 and sent["x-b3-sampled"] == "0"
    assert sent["traceparent"] == f"00-{T16.rjust(32, '0')}-{ctx.span_id}-00"


def test_inbound_shares_the_clients_span() -> None:
    ctx = TraceIds(random.Random(1)).inbound({"x-b3-traceid": T32, "x-b3-spanid": S1, "x-b3-parentspanid": S0})
    assert (ctx.trace_id, ctx.span_id, ctx.parent_id, ctx.kind, ctx.shared) == (T32, S1, S0, "SERVER", True)


def test_inbound_without_context_starts_a_root_server_span() -> None:
    ctx = TraceIds(random.Random(1)).inbound({})
    assert ctx.kind == "SERVER" and not ctx.shared and ctx.parent_id is None


@pytest.mark.parametrize(("sampling", "low", "high"), [(100.0, 1000, 1000), (0.0, 0, 0), (25.0, 200, 300)])
def test_sampling_percentage(sampling: float, low: int, high: int) -> None:
    ids = TraceIds(random.Random(4), sampling=sampling)
    sampled = sum(ids.outbound({}).sampled for _ in range(1000))
    assert low <= sampled <= high


def test_request_ids_are_uuid4() -> None:
    ids = TraceIds(random.Random(9))
    values = {ids.request_id() for _ in range(500)}
    assert len(values) == 500
    for value in list(values)[:50]:
        parsed = uuid.UUID(value)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122 and str(parsed) == value


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            ["x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid", "x-b3-sampled", "x-b3-flags", "b3", "traceparent"]
        ),
        st.text(alphabet="0123456789abcdefABCDEF-xyz ", max_size=70),
    )
)
def test_any_header_values_give_a_valid_context_or_none(headers: dict[str, str]) -> None:
    incoming = extract(headers)
    ids = TraceIds(random.Random(0))
    for ctx in (ids.outbound(headers), ids.inbound(headers)):
        sent = dict(ctx.headers())
        assert len(sent["x-b3-spanid"]) == 16 and len(sent["x-b3-traceid"]) in (16, 32)
        assert sent["traceparent"].count("-") == 3 and len(sent["traceparent"]) == 55
    if incoming is not None:
        assert len(incoming.trace_id) in (16, 32)


@pytest.mark.parametrize(
    "headers", [{}, {"x-b3-traceid": T16, "x-b3-spanid": S1, "x-b3-sampled": "0"}, {"traceparent": f"00-{T32}-{S0}-01"}]
)
def test_header_lines_are_the_headers_as_sent(headers: dict[str, str]) -> None:
    ids = TraceIds(random.Random(2))
    for ctx in (ids.outbound(headers), ids.inbound(headers)):
        assert ctx.header_lines() == "".join(f"{name}: {value}\r\n" for name, value in ctx.headers())
