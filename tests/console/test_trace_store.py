"""The bounded in-memory trace store (sandbox/console/store.py)."""

from __future__ import annotations

import pytest
from console_helpers import T0, spans, zspan

from sandbox.console.query import TraceQuery
from sandbox.console.store import TraceStore


def trace(n: int, count: int = 1, service: str = "web.default", op: str = "op") -> list[dict[str, object]]:
    return [
        zspan(trace=f"{n:016x}", span_id=f"{i + 1:016x}", service=service, name=op, start=T0 + n * 1_000 + i)
        for i in range(count)
    ]


def test_the_oldest_trace_goes_when_there_are_too_many() -> None:
    store = TraceStore(max_traces=3, max_spans=100)
    for n in range(1, 6):
        store.add(spans(*trace(n)))
    assert store.trace_count == 3
    assert store.get(f"{1:016x}") is None and store.get(f"{2:016x}") is None
    assert [t[0].trace_id for t in store.recent(10)] == [f"{n:016x}" for n in (5, 4, 3)]
    assert store.stats.traces_evicted == 2


def test_the_oldest_traces_go_when_there_are_too_many_spans() -> None:
    store = TraceStore(max_traces=100, max_spans=5)
    store.add(spans(*trace(1, 2)))
    store.add(spans(*trace(2, 2)))
    store.add(spans(*trace(3, 2)))  # 6 spans: trace 1 goes
    assert (store.trace_count, store.span_count) == (2, 4)
    assert store.get(f"{1:016x}") is None


def test_a_trace_still_arriving_is_not_evicted_for_its_own_spans() -> None:
    store = TraceStore(max_traces=100, max_spans=4)
    store.add(spans(*trace(1, 1)))
    store.add(spans(*trace(2, 3)))
    store.add(spans(zspan(trace=f"{1:016x}", span_id="f" * 16, start=T0 + 9)))  # trace 1 is oldest but live
    assert store.get(f"{1:016x}") is not None and store.get(f"{2:016x}") is None
    assert store.span_count == 2


def test_one_trace_over_the_span_cap_drops_its_extra_spans() -> None:
    store = TraceStore(max_traces=10, max_spans=3)
    kept = store.add(spans(*trace(1, 5)))
    assert kept == 3
    assert (store.span_count, store.stats.spans_dropped, store.stats.spans_received) == (3, 2, 5)


def test_a_batch_sent_twice_is_kept_once() -> None:
    store = TraceStore()
    batch = [zspan(kind="CLIENT"), zspan(kind="SERVER", shared=True, service="reviews.default")]
    assert store.add(spans(*batch)) == 2
    assert store.add(spans(*batch)) == 0
    assert (store.span_count, store.stats.spans_duplicate) == (2, 2)


def test_services_and_operations_follow_what_is_stored() -> None:
    store = TraceStore(max_traces=2)
    store.add(spans(*trace(1, service="old.default", op="gone")))
    store.add(spans(*trace(2, service="web.default", op="a")))
    store.add(spans(zspan(trace=f"{2:016x}", span_id="9" * 16, service="web.default", name="b", kind="SERVER")))
    assert store.services() == ["old.default", "web.default"]
    assert store.operations("web.default") == [("a", "client"), ("b", "server")]
    assert store.operations("web.default", "server") == [("b", "server")]
    store.add(spans(*trace(3, service="web.default", op="a")))  # evicts trace 1
    assert store.services() == ["web.default"]
    assert store.operations("old.default") == []


def test_find_by_query_or_by_trace_ids() -> None:
    store = TraceStore()
    store.add(spans(*trace(1, service="web.default"), *trace(2, service="api.default")))
    found = store.find(TraceQuery(service="api.default"))
    assert [t[0].trace_id for t in found] == [f"{2:016x}"]
    by_id = store.find(TraceQuery(trace_ids=(f"{1:016x}", "f" * 16)))
    assert [t[0].trace_id for t in by_id] == [f"{1:016x}"]


def test_caps_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        TraceStore(max_traces=0)


def test_memory_stays_bounded_at_about_a_kilobyte_per_sidecar_span() -> None:
    """Spans as sidecars build them (proxy/tracing.py: ~20 tags, mostly repeated); the cap, not the
    traffic, bounds what the collector holds."""
    import json
    import time
    import tracemalloc

    from bookinfo_proxies import INGRESS, PRODUCTPAGE, REVIEWS
    from console_helpers import hop

    from sandbox.console.spans import decode_zipkin
    from sandbox.proxy.tracecontext import TraceContext
    from sandbox.proxy.tracing import SpanBuilder

    builders = [SpanBuilder(i) for i in (INGRESS, PRODUCTPAGE, PRODUCTPAGE, REVIEWS)]

    def batch(first: int, count: int) -> bytes:
        out = []
        for n in range(first, first + count):
            trace, a, b = f"{n + 1:032x}", f"{2 * n + 1:016x}", f"{2 * n + 2:016x}"
            contexts = [
                TraceContext(trace, a, None, True, "CLIENT"),
                TraceContext(trace, a, None, True, "SERVER", shared=True),
                TraceContext(trace, b, a, True, "CLIENT"),
                TraceContext(trace, b, a, True, "SERVER", shared=True),
            ]
            for builder, ctx in zip(builders, contexts, strict=True):
                out.append(json.loads(builder.span_json(hop(ctx, time.time(), 0.01, "reviews:9080", 200))))
        return json.dumps(out).encode()

    bodies = [batch(i * 64, 64) for i in range(8)]  # 512 traces, 2048 spans
    store = TraceStore(max_traces=10_000, max_spans=1_600)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for body in bodies:
            store.add(decode_zipkin(json.loads(body)))
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert store.span_count == 1_600 and store.stats.traces_evicted == 112
    assert held / store.span_count < 1_600, f"{held / store.span_count:.0f} bytes per stored span"
