"""Zipkin v2 span dicts shaped like the sidecars' (sandbox/proxy/tracing.py), for the console tests."""

from __future__ import annotations

from typing import Any

from sandbox.console.spans import Span, decode_zipkin

T0 = 1_700_000_000_000_000  # microseconds


def zspan(
    trace: str = "a" * 32,
    span_id: str = "1" * 16,
    parent: str | None = None,
    service: str = "productpage.default",
    name: str = "reviews.default.svc.cluster.local:9080/*",
    kind: str | None = "CLIENT",
    start: int = T0,
    duration: int = 1_000,
    status: str | None = "200",
    **extra: Any,
) -> dict[str, Any]:
    span: dict[str, Any] = {
        "traceId": trace,
        "id": span_id,
        "name": name,
        "timestamp": start,
        "duration": duration,
        "localEndpoint": {"serviceName": service, "ipv4": "127.0.0.1"},
        "tags": {"component": "proxy"} | ({"http.status_code": status} if status is not None else {}),
    }
    if kind is not None:
        span["kind"] = kind
    if parent is not None:
        span["parentId"] = parent
    span.update(extra)
    return span


def spans(*raw: dict[str, Any]) -> list[Span]:
    return decode_zipkin(list(raw))
