"""The in-memory trace collector's storage: bounded, oldest trace evicted first.

Like Jaeger's memory store (`--memory.max-traces`), a trace is evicted whole, oldest first (by
the arrival of its first span), whenever the trace count or the total span count passes its cap;
a span that would make one trace alone pass the span cap is dropped and counted. A span sent
twice (a reporter retrying a batch) is kept once. Services and operations are indexed with counts
so evicting a trace also forgets names no stored span carries any more.

One event loop owns a store: no locks.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from sandbox.console.query import TraceQuery, find_traces
from sandbox.console.spans import Span

DEFAULT_MAX_TRACES = 2_000
DEFAULT_MAX_SPANS = 20_000  # about 1 KB each held (sidecar spans): ~20 MB


@dataclass
class _Trace:
    spans: list[Span] = field(default_factory=list)
    keys: set[tuple[str, str, str, int]] = field(default_factory=set)


@dataclass
class StoreStats:
    spans_received: int = 0
    spans_duplicate: int = 0
    spans_dropped: int = 0  # a single trace over the span cap
    traces_evicted: int = 0


class TraceStore:
    def __init__(self, max_traces: int = DEFAULT_MAX_TRACES, max_spans: int = DEFAULT_MAX_SPANS) -> None:
        if max_traces < 1 or max_spans < 1:
            raise ValueError("max_traces and max_spans must be at least 1")
        self.max_traces = max_traces
        self.max_spans = max_spans
        self._traces: OrderedDict[str, _Trace] = OrderedDict()
        self._span_count = 0
        self._operations: dict[str, Counter[tuple[str, str]]] = {}  # service -> (operation, kind) -> spans
        self.stats = StoreStats()

    @property
    def trace_count(self) -> int:
        return len(self._traces)

    @property
    def span_count(self) -> int:
        return self._span_count

    def add(self, spans: Iterable[Span]) -> int:
        """Store spans; returns how many were kept (duplicates and over-cap spans are not)."""
        kept = 0
        for span in spans:
            self.stats.spans_received += 1
            trace = self._traces.get(span.trace_id)
            key = (span.span_id, span.kind, span.process.service_name, span.start_time)
            if trace is not None and key in trace.keys:
                self.stats.spans_duplicate += 1
                continue
            if trace is not None and len(trace.spans) >= self.max_spans:
                self.stats.spans_dropped += 1
                continue
            if trace is None:
                trace = self._traces[span.trace_id] = _Trace()
            trace.spans.append(span)
            trace.keys.add(key)
            self._span_count += 1
            self._operations.setdefault(span.process.service_name, Counter())[(span.operation_name, span.kind)] += 1
            kept += 1
            self._evict(keep=span.trace_id)
        return kept

    def _evict(self, keep: str) -> None:
        while len(self._traces) > self.max_traces or self._span_count > self.max_spans:
            # the trace being written stays (it is live, and alone it fits: add() checked)
            victim = next((t for t in self._traces if t != keep), None)
            if victim is None:
                break
            self._forget(victim)

    def _forget(self, trace_id: str) -> None:
        trace = self._traces.pop(trace_id)
        self._span_count -= len(trace.spans)
        self.stats.traces_evicted += 1
        for span in trace.spans:
            counts = self._operations[span.process.service_name]
            counts[(span.operation_name, span.kind)] -= 1
            if counts[(span.operation_name, span.kind)] <= 0:
                del counts[(span.operation_name, span.kind)]
            if not counts:
                del self._operations[span.process.service_name]

    def services(self) -> list[str]:
        return sorted(self._operations)

    def operations(self, service: str, span_kind: str = "") -> list[tuple[str, str]]:
        """(operation name, span kind) pairs of a service, sorted; `span_kind` filters (Jaeger's spanKind)."""
        counts = self._operations.get(service) or Counter()
        return sorted(op for op in counts if not span_kind or op[1] == span_kind)

    def get(self, trace_id: str) -> list[Span] | None:
        trace = self._traces.get(trace_id)
        return list(trace.spans) if trace is not None else None

    def find(self, query: TraceQuery) -> list[list[Span]]:
        if query.trace_ids:
            found = (self.get(t) for t in query.trace_ids)
            return [spans for spans in found if spans]
        newest_first = (self._traces[t].spans for t in reversed(self._traces))
        return [list(t) for t in find_traces(newest_first, query)]

    def recent(self, limit: int) -> Iterator[list[Span]]:
        """The traces that started arriving last, newest first."""
        for n, trace_id in enumerate(reversed(self._traces)):
            if n >= limit:
                return
            yield list(self._traces[trace_id].spans)
