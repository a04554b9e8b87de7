"""Jaeger's `GET /api/traces` parameters, parsed and matched as Jaeger's query service and its
in-memory store do (cmd/query/app/query_parser.go, plugin/storage/memory).

    service=S           required unless traceID is given
    operation=O         exact operation name
    start=, end=        microseconds since the epoch; start defaults to end - lookback
    lookback=1h         the UI's window (1h, 2d, 30m, ...; "custom" means start/end decide);
                        without start or lookback Jaeger looks back 2 days
    minDuration=, maxDuration=   Go durations: 1.5ms, 100us, 2s, 1m30s
    tags={"k":"v"}      JSON object; also tag=k:v (repeatable)
    limit=N             default 100; 0 or less means no limit
    traceID=ID          repeatable: fetch these traces instead of searching

A trace matches when one of its spans satisfies everything at once: its service, operation,
duration bounds, start within [start, end], and every tag found among the span's tags, its
process's tags or its log fields (values compared as strings).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from sandbox.console.spans import KeyValue, Span, normalize_trace_id

DEFAULT_LIMIT = 100
DEFAULT_LOOKBACK_US = 2 * 24 * 3600 * 1_000_000  # Jaeger's defaultTraceQueryLookbackDuration
_UNITS_US = {"ns": 0.001, "us": 1, "µs": 1, "μs": 1, "ms": 1_000, "s": 1_000_000, "m": 60_000_000, "h": 3_600_000_000}
_GO_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_LOOKBACK = re.compile(r"(\d+)([mhdw])")
_LOOKBACK_US = {"m": 60_000_000, "h": 3_600_000_000, "d": 86_400_000_000, "w": 604_800_000_000}


class QueryError(ValueError):
    """A parameter Jaeger would answer 400 for; the message is Jaeger's wording where it has one."""


@dataclass(frozen=True)
class TraceQuery:
    service: str = ""
    operation: str = ""
    start_min: int | None = None  # microseconds since the epoch
    start_max: int | None = None
    duration_min: int = 0  # microseconds; 0 = unbounded
    duration_max: int = 0
    tags: Mapping[str, str] = field(default_factory=dict)
    limit: int = DEFAULT_LIMIT
    trace_ids: tuple[str, ...] = ()


def parse_go_duration(text: str) -> int:
    """A Go duration ("1.5ms", "1m30s", "250us") in microseconds."""
    text = text.strip()
    sign = -1 if text.startswith("-") else 1
    body = text.lstrip("+-")
    if body == "0":
        return 0
    pos, total = 0, 0.0
    for match in _GO_DURATION.finditer(body):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS_US[match.group(2)]
        pos = match.end()
    if not body or pos != len(body):
        raise ValueError(f'time: invalid duration "{text}"')
    return sign * round(total)


def parse_lookback(text: str) -> int | None:
    """The Jaeger UI's lookback ("1h", "2d", "30m", "1w") in microseconds; None for "custom"."""
    if text in ("", "custom"):
        return None
    match = _LOOKBACK.fullmatch(text.strip())
    if match is None:
        raise QueryError(f"unable to parse param 'lookback': {text!r} is not like 1h, 2d or 30m")
    return int(match.group(1)) * _LOOKBACK_US[match.group(2)]


def _first(params: Mapping[str, Sequence[str]], name: str) -> str:
    values = params.get(name) or ()
    return values[0] if values else ""


def _integer(params: Mapping[str, Sequence[str]], name: str) -> int | None:
    text = _first(params, name)
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise QueryError(
            f"unable to parse param '{name}': strconv.ParseInt: parsing \"{text}\": invalid syntax"
        ) from None


def _duration(params: Mapping[str, Sequence[str]], name: str) -> int:
    text = _first(params, name)
    if not text:
        return 0
    try:
        return parse_go_duration(text)
    except ValueError as exc:
        raise QueryError(f"unable to parse param '{name}': {exc}") from None


def _tags(simple: Iterable[str], as_json: Iterable[str]) -> dict[str, str]:
    tags: dict[str, str] = {}
    for tag in simple:
        key, sep, value = tag.partition(":")
        if not sep:
            raise QueryError(f"malformed 'tag' parameter, expecting key:value, received: {tag}")
        tags[key] = value
    for text in as_json:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise QueryError(f"malformed 'tags' parameter, cannot unmarshal JSON: {exc}") from None
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise QueryError("malformed 'tags' parameter, cannot unmarshal JSON: expected an object of strings")
        tags.update(data)
    return tags


def parse_query(params: Mapping[str, Sequence[str]], now_us: int) -> TraceQuery:
    """Query-string values (name -> every value given) -> TraceQuery; raises QueryError."""
    trace_ids = []
    for text in params.get("traceID") or ():
        normalized = normalize_trace_id(text)
        if normalized is None:
            raise QueryError(f"cannot parse traceID param: {text!r} is not a hex trace id")
        trace_ids.append(normalized)
    service = _first(params, "service")
    if not service and not trace_ids:
        raise QueryError("parameter 'service' is required")
    end = _integer(params, "end")
    start = _integer(params, "start")
    if end is None:
        end = now_us
    if start is None:
        lookback = parse_lookback(_first(params, "lookback"))
        start = end - (DEFAULT_LOOKBACK_US if lookback is None else lookback)
    duration_min, duration_max = _duration(params, "minDuration"), _duration(params, "maxDuration")
    if duration_min and duration_max and duration_max < duration_min:
        raise QueryError("'maxDuration' should be greater than 'minDuration'")
    limit = _integer(params, "limit")
    return TraceQuery(
        service=service,
        operation=_first(params, "operation"),
        start_min=start,
        start_max=end,
        duration_min=duration_min,
        duration_max=duration_max,
        tags=_tags(params.get("tag") or (), params.get("tags") or ()),
        limit=DEFAULT_LIMIT if limit is None else limit,
        trace_ids=tuple(trace_ids),
    )


def _as_string(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def span_matches(span: Span, query: TraceQuery) -> bool:
    if span.process.service_name != query.service:
        return False
    if query.operation and span.operation_name != query.operation:
        return False
    if query.duration_min and span.duration < query.duration_min:
        return False
    if query.duration_max and span.duration > query.duration_max:
        return False
    if query.start_min is not None and span.start_time < query.start_min:
        return False
    if query.start_max is not None and span.start_time > query.start_max:
        return False
    for key, value in query.tags.items():
        if not (
            _has(span.tags, key, value)
            or _has(span.process.tags, key, value)
            or any(_has(log.fields, key, value) for log in span.logs)
        ):
            return False
    return True


def _has(values: Iterable[KeyValue], key: str, value: str) -> bool:
    return any(k == key and _as_string(v) == value for k, _, v in values)


def find_traces(newest_first: Iterable[Sequence[Span]], query: TraceQuery) -> list[Sequence[Span]]:
    """The matching traces, newest first (by their earliest span), at most `limit` when positive.

    `newest_first` is in order of arrival, newest first (the store's order): the search stops once it
    has `limit` matches, so a query for the last 20 traces does not scan the whole store. Traces
    arrive about in start order, so this is Jaeger's "the newest traces" up to reordering in flight."""
    matching = []
    for trace in newest_first:
        if trace and any(span_matches(s, query) for s in trace):
            matching.append(trace)
            if 0 < query.limit <= len(matching):
                break
    matching.sort(key=lambda t: min(s.start_time for s in t), reverse=True)
    return matching
