"""A workload's logs as Kiali's Logs tab shows them: the app's log and its sidecar's access log
merged into one time-ordered view, the last N lines, filtered. Pure (the caller reads the files).

Envoy-format access log lines start with `[2026-12-03T09:55:24.201Z]`; app lines may start with an
ISO time. A line without a time takes the time of the line before it in the same log, so a
multi-line message stays together. Entries follow Kiali's LogEntry: {timestamp, timestampUnix
(ms), message, severity, container} where container is `istio-proxy` or the app's.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from typing import Any

PROXY_CONTAINER = "istio-proxy"
_ACCESS = re.compile(r"^\[(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z?)\]")
_ISO = re.compile(r"^(\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?)(Z|[+-]\d\d:?\d\d)?")
_SEVERITY = re.compile(r"\b(ERROR|CRITICAL|WARNING|WARN|INFO|DEBUG)\b")
MAX_TAIL = 10_000


def line_time(line: str) -> float | None:
    """Seconds since the epoch of a line's leading timestamp (UTC when none is given), or None."""
    match = _ACCESS.match(line) or _ISO.match(line)
    if match is None:
        return None
    text = match.group(1).replace(",", ".").replace(" ", "T").rstrip("Z")
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


def _severity(line: str, container: str) -> str:
    if container == PROXY_CONTAINER:
        return "INFO"
    match = _SEVERITY.search(line[:120])
    return {"WARN": "WARNING"}.get(match.group(1), match.group(1)) if match else "INFO"


def entries(lines: Iterable[str], container: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    last = 0.0
    for line in lines:
        when = line_time(line)
        last = when if when is not None else last
        out.append(
            {
                "timestamp": dt.datetime.fromtimestamp(last, dt.UTC).isoformat(timespec="milliseconds") if last else "",
                "timestampUnix": int(last * 1000),
                "message": line,
                "severity": _severity(line, container),
                "container": container,
            }
        )
    return out


def merged(
    sources: Sequence[tuple[str, Sequence[str]]],
    tail: int = 100,
    contains: str = "",
    since_ms: int = 0,
) -> dict[str, Any]:
    """Every source's lines (container, lines) in one view, oldest first: the last `tail` entries
    matching `contains` (case-insensitive) and newer than `since_ms`."""
    tail = max(1, min(tail, MAX_TAIL))
    found: list[dict[str, Any]] = []
    for order, (container, lines) in enumerate(sources):
        for position, entry in enumerate(entries(lines, container)):
            entry["_order"] = (entry["timestampUnix"], order, position)
            found.append(entry)
    needle = contains.lower()
    chosen = [
        e
        for e in found
        if (not needle or needle in e["message"].lower()) and (not since_ms or e["timestampUnix"] > since_ms)
    ]
    chosen.sort(key=lambda e: e["_order"])
    truncated = len(chosen) > tail
    chosen = chosen[-tail:]
    for e in chosen:
        del e["_order"]
    return {"entries": chosen, "linesTruncated": truncated}
