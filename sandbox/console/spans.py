"""Spans in Jaeger's model, decoded from Zipkin v2 JSON (what the sidecars post, proxy/tracing.py).

The conversion follows Jaeger's Zipkin receiver: the local endpoint's service name is the
process (with its address as the process tag `ip`), the Zipkin kind becomes the tag `span.kind`
(client, server, producer, consumer), the remote endpoint becomes `peer.service`/`peer.ipv4`/
`peer.ipv6`/`peer.port` tags, annotations become logs with an `event` field, and trace ids are
normalised as Jaeger prints them (a 128-bit id whose high half is zero prints as 16 hex digits).

A batch with any malformed span is refused whole, naming the span and the field, as Zipkin's
and Jaeger's collectors answer 400 for an unparseable body.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

UNKNOWN_SERVICE = "unknown-service-name"  # Jaeger's name for a span without a local service
_HEX = frozenset("0123456789abcdef")
_KINDS = {"CLIENT": "client", "SERVER": "server", "PRODUCER": "producer", "CONSUMER": "consumer"}
_INTERN_LIMIT = 64  # tag values shorter than this repeat across spans (names, flags, clusters)

# (key, type, value) as Jaeger's JSON KeyValue; type is "string", "bool", "int64" or "float64".
KeyValue = tuple[str, str, Any]


class SpanFormatError(ValueError):
    """A Zipkin batch that cannot be read; the message names the span index and the field."""


@dataclass(frozen=True, slots=True)
class Process:
    service_name: str
    tags: tuple[KeyValue, ...] = ()


@dataclass(frozen=True, slots=True)
class Log:
    timestamp: int  # microseconds since the epoch
    fields: tuple[KeyValue, ...]


@dataclass(frozen=True, slots=True)
class Span:
    trace_id: str  # normalised lower hex (see normalize_trace_id)
    span_id: str  # 16 lower hex
    parent_id: str | None
    operation_name: str
    start_time: int  # microseconds since the epoch
    duration: int  # microseconds
    process: Process
    tags: tuple[KeyValue, ...] = ()
    logs: tuple[Log, ...] = ()
    flags: int = 1  # Jaeger's flags: 1 sampled, 2 debug

    @property
    def kind(self) -> str:
        return next((str(v) for k, _, v in self.tags if k == "span.kind"), "")

    def tag(self, key: str) -> Any:
        return next((v for k, _, v in self.tags if k == key), None)


def normalize_trace_id(text: str) -> str | None:
    """Jaeger's TraceID string: 16 hex digits when the high 64 bits are zero, else 32; None if not hex."""
    text = text.strip().lower()
    if not 0 < len(text) <= 32 or not _HEX.issuperset(text):
        return None
    value = int(text, 16)
    high, low = value >> 64, value & 0xFFFF_FFFF_FFFF_FFFF
    return f"{low:016x}" if high == 0 else f"{high:016x}{low:016x}"


def normalize_span_id(text: str) -> str | None:
    text = text.strip().lower()
    if not 0 < len(text) <= 16 or not _HEX.issuperset(text):
        return None
    return f"{int(text, 16):016x}"


class _SharedTags:
    """Tag tuples repeated across spans (node id, Istio tags, method, flags, cluster) held once: most
    of a stored span is such tuples. Bounded: the table starts over when full."""

    def __init__(self, limit: int = 20_000) -> None:
        self.limit = limit
        self._items: dict[KeyValue, KeyValue] = {}

    def get(self, item: KeyValue) -> KeyValue:
        found = self._items.get(item)
        if found is None:
            if len(self._items) >= self.limit:
                self._items.clear()
            found = self._items[item] = item
        return found


_SHARED = _SharedTags()


class _Decoder:
    """One batch: shares Process objects and interns short strings, since every span of a sidecar
    repeats the same service, node id and Istio tags (most of a span's memory otherwise)."""

    def __init__(self) -> None:
        self._processes: dict[tuple[str, tuple[KeyValue, ...]], Process] = {}

    def process(self, service: str, tags: tuple[KeyValue, ...]) -> Process:
        key = (service, tags)
        found = self._processes.get(key)
        if found is None:
            found = self._processes[key] = Process(sys.intern(service), tags)
        return found

    def span(self, raw: Any, where: str) -> Span:
        if not isinstance(raw, dict):
            raise SpanFormatError(f"{where}: expected a JSON object, got {_kind(raw)}")
        trace_id = _ident(raw, "traceId", where, normalize_trace_id, "16 or 32 hex digits")
        span_id = _ident(raw, "id", where, normalize_span_id, "16 hex digits")
        parent = raw.get("parentId")
        parent_id = None if parent in (None, "") else _ident(raw, "parentId", where, normalize_span_id, "16 hex digits")
        name = _string(raw, "name", where) or ""
        timestamp = _integer(raw, "timestamp", where)
        duration = _integer(raw, "duration", where)
        kind = _string(raw, "kind", where)
        if kind is not None and kind not in _KINDS:
            raise SpanFormatError(f"{where}.kind: must be one of {', '.join(_KINDS)}, not {kind!r}")

        local = _endpoint(raw, "localEndpoint", where)
        service = (local.get("serviceName") or "").strip() or UNKNOWN_SERVICE
        process_tags: tuple[KeyValue, ...] = ()
        if local.get("ipv4") or local.get("ipv6"):
            process_tags = (("ip", "string", sys.intern(str(local.get("ipv4") or local.get("ipv6")))),)

        tags: list[KeyValue] = []
        raw_tags = raw.get("tags") or {}
        if not isinstance(raw_tags, dict):
            raise SpanFormatError(f"{where}.tags: expected an object of strings, got {_kind(raw_tags)}")
        for key, value in raw_tags.items():
            if not isinstance(value, str):
                raise SpanFormatError(f"{where}.tags.{key}: tag values are strings in Zipkin v2, got {_kind(value)}")
            tags.append(_SHARED.get((sys.intern(key), "string", value)))
        if kind is not None:
            tags.append(("span.kind", "string", _KINDS[kind]))
        remote = _endpoint(raw, "remoteEndpoint", where)
        for field_name, tag in (("serviceName", "peer.service"), ("ipv4", "peer.ipv4"), ("ipv6", "peer.ipv6")):
            if remote.get(field_name):
                tags.append((tag, "string", str(remote[field_name])))
        if isinstance(remote.get("port"), int) and remote["port"] > 0:
            tags.append(("peer.port", "int64", remote["port"]))

        return Span(
            trace_id=trace_id,
            span_id=span_id,
            parent_id=parent_id,
            operation_name=sys.intern(name) if len(name) < _INTERN_LIMIT else name,
            start_time=timestamp or 0,
            duration=duration or 0,
            process=self.process(service, process_tags),
            tags=tuple(tags),
            logs=_logs(raw, where),
            flags=3 if raw.get("debug") is True else 1,
        )


def decode_zipkin(payload: Any) -> list[Span]:
    """A Zipkin v2 JSON batch (already parsed) -> spans; raises SpanFormatError on any bad span."""
    if not isinstance(payload, list):
        raise SpanFormatError(f"expected a JSON array of spans, got {_kind(payload)}")
    decoder = _Decoder()
    return [decoder.span(raw, f"span[{i}]") for i, raw in enumerate(payload)]


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def _ident(raw: dict[str, Any], key: str, where: str, parse: Any, expected: str) -> str:
    value = raw.get(key)
    parsed = parse(value) if isinstance(value, str) else None
    if parsed is None or int(parsed, 16) == 0:  # Zipkin: ids are never all zeros
        shown = "missing" if value is None else repr(value)
        raise SpanFormatError(f"{where}.{key}: expected {expected}, got {shown}")
    return str(parsed)


def _string(raw: dict[str, Any], key: str, where: str) -> str | None:
    value = raw.get(key)
    if value is not None and not isinstance(value, str):
        raise SpanFormatError(f"{where}.{key}: expected a string, got {_kind(value)}")
    return value


def _integer(raw: dict[str, Any], key: str, where: str) -> int | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise SpanFormatError(f"{where}.{key}: expected microseconds (a non-negative integer), got {value!r}")
    return int(value)


def _endpoint(raw: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = raw.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SpanFormatError(f"{where}.{key}: expected an object, got {_kind(value)}")
    return value


def _logs(raw: dict[str, Any], where: str) -> tuple[Log, ...]:
    annotations = raw.get("annotations") or []
    if not isinstance(annotations, list):
        raise SpanFormatError(f"{where}.annotations: expected an array, got {_kind(annotations)}")
    logs = []
    for i, annotation in enumerate(annotations):
        at = f"{where}.annotations[{i}]"
        if not isinstance(annotation, dict):
            raise SpanFormatError(f"{at}: expected an object, got {_kind(annotation)}")
        timestamp = _integer(annotation, "timestamp", at) or 0
        value = _string(annotation, "value", at) or ""
        logs.append(Log(timestamp, (("event", "string", value),)))
    return tuple(logs)
