"""Spans -> the JSON Jaeger's query API answers (`model/json` in Jaeger), and summaries of it.

A trace is `{traceID, spans, processes, warnings}`; a span is `{traceID, spanID, flags,
operationName, references: [{refType: CHILD_OF, traceID, spanID}], startTime (us), duration (us),
tags: [{key, type, value}], logs, processID, warnings}`; processes are numbered p1, p2, ... in
order of first appearance, one per distinct (serviceName, tags).

Zipkin-style proxies give the SERVER span the CLIENT span's id (proxy/tracecontext.py `shared`).
Jaeger's query service runs its SpanIDDeduper adjuster on such traces: each server span sharing
an id with a client span gets a fresh id (1, 2, ... not used in the trace), becomes the CHILD_OF
the client span, and the spans that named the shared id as parent now name the server span. The
UI then draws client -> server -> next hop. We do the same, on a copy: stored spans never change.
Its SortTagsAndLogFields adjuster is applied too (span tags sorted by key); `?raw=true` skips both.

`summarize()` reads that JSON back (from our store or an external Jaeger alike) into the row the
overview shows: root service and operation, duration, span count, HTTP status, error.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sandbox.console.spans import KeyValue, Process, Span

CHILD_OF = "CHILD_OF"


def dedupe_span_ids(spans: Sequence[Span]) -> list[tuple[str, str | None]]:
    """(spanID, parentSpanID) per span after Jaeger's SpanIDDeduper adjuster."""
    client_ids = {s.span_id for s in spans if s.kind == "client"}
    used = {int(s.span_id, 16) for s in spans}
    ids: list[tuple[str, str | None]] = [(s.span_id, s.parent_id) for s in spans]
    renamed: dict[str, str] = {}
    max_used = 0
    for i, span in enumerate(spans):
        if span.kind == "server" and span.span_id in client_ids:
            candidate = max_used + 1
            while candidate in used:
                candidate += 1
            max_used = candidate
            new_id = f"{candidate:016x}"
            renamed[span.span_id] = new_id
            ids[i] = (new_id, span.span_id)  # the previously shared id is now its parent
    if renamed:
        for i, (span_id, parent_id) in enumerate(ids):
            new_parent = renamed.get(parent_id) if parent_id is not None else None
            if new_parent is not None and new_parent != span_id:
                ids[i] = (span_id, new_parent)
    return ids


def _by_key(kv: KeyValue) -> str:
    return kv[0]


def _key_values(values: Iterable[KeyValue]) -> list[dict[str, Any]]:
    return [{"key": k, "type": t, "value": v} for k, t, v in values]


def trace_json(spans: Sequence[Span], adjust: bool = True) -> dict[str, Any]:
    """One trace in Jaeger's UI JSON; spans in start-time order. `adjust=False` is Jaeger's `?raw=true`."""
    ordered = sorted(spans, key=lambda s: s.start_time)
    ids = dedupe_span_ids(ordered) if adjust else [(s.span_id, s.parent_id) for s in ordered]
    trace_id = ordered[0].trace_id if ordered else ""
    process_ids: dict[Process, str] = {}
    out_spans = []
    for span, (span_id, parent_id) in zip(ordered, ids, strict=True):
        pid = process_ids.get(span.process)
        if pid is None:
            pid = process_ids[span.process] = f"p{len(process_ids) + 1}"
        references = [] if parent_id is None else [{"refType": CHILD_OF, "traceID": trace_id, "spanID": parent_id}]
        out_spans.append(
            {
                "traceID": trace_id,
                "spanID": span_id,
                "flags": span.flags,
                "operationName": span.operation_name,
                "references": references,
                "startTime": span.start_time,
                "duration": span.duration,
                "tags": _key_values(sorted(span.tags, key=_by_key) if adjust else span.tags),
                "logs": [{"timestamp": log.timestamp, "fields": _key_values(log.fields)} for log in span.logs],
                "processID": pid,
                "warnings": None,
            }
        )
    processes = {pid: {"serviceName": p.service_name, "tags": _key_values(p.tags)} for p, pid in process_ids.items()}
    return {"traceID": trace_id, "spans": out_spans, "processes": processes, "warnings": None}


def envelope(data: Any, total: int = 0, errors: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Jaeger's structuredResponse; `total` is set for services/operations only, as Jaeger does."""
    return {"data": data, "total": total, "limit": 0, "offset": 0, "errors": errors}


def error_envelope(code: int, message: str) -> dict[str, Any]:
    return envelope(None, errors=[{"code": code, "msg": message}])


@dataclass(frozen=True)
class TraceSummary:
    """One row of the overview's trace list."""

    trace_id: str
    service: str  # the root span's service
    operation: str
    start_time: int  # microseconds since the epoch
    duration: int  # microseconds, first span start to last span end
    spans: int
    services: tuple[str, ...]
    status_code: int | None  # the root span's http.status_code
    error: bool  # any span tagged error=true

    def to_json(self) -> dict[str, Any]:
        return {
            "traceID": self.trace_id,
            "service": self.service,
            "operation": self.operation,
            "startTime": self.start_time,
            "duration": self.duration,
            "spans": self.spans,
            "services": list(self.services),
            "statusCode": self.status_code,
            "error": self.error,
        }


def _tag(span: Mapping[str, Any], key: str) -> Any:
    return next((t.get("value") for t in span.get("tags") or () if t.get("key") == key), None)


def summarize(trace: Mapping[str, Any]) -> TraceSummary | None:
    """A Jaeger JSON trace -> its summary row; None for a trace without spans."""
    spans: list[Mapping[str, Any]] = list(trace.get("spans") or ())
    if not spans:
        return None
    ids = {s.get("spanID") for s in spans}

    def is_root(span: Mapping[str, Any]) -> bool:
        refs = span.get("references") or ()
        return not any(r.get("refType") == CHILD_OF and r.get("spanID") in ids for r in refs)

    root = min((s for s in spans if is_root(s)), key=lambda s: s.get("startTime", 0), default=spans[0])
    processes: Mapping[str, Any] = trace.get("processes") or {}

    def service(span: Mapping[str, Any]) -> str:
        return str((processes.get(span.get("processID", "")) or {}).get("serviceName", ""))

    start = min(int(s.get("startTime", 0)) for s in spans)
    end = max(int(s.get("startTime", 0)) + int(s.get("duration", 0)) for s in spans)
    status = _tag(root, "http.status_code")
    try:
        status_code = int(status) if status is not None else None
    except (TypeError, ValueError):
        status_code = None
    return TraceSummary(
        trace_id=str(trace.get("traceID") or root.get("traceID", "")),
        service=service(root),
        operation=str(root.get("operationName", "")),
        start_time=start,
        duration=end - start,
        spans=len(spans),
        services=tuple(sorted({service(s) for s in spans} - {""})),
        status_code=status_code,
        error=any(_tag(s, "error") in (True, "true") for s in spans),
    )
