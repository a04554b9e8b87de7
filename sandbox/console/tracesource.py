"""Where the console's traces come from: its own collector, or an external Jaeger's query API.

Either way the console answers Jaeger's query API on its own port (the local store's collector
routes, or a pass-through to Jaeger), so pages and clients have one base URL, and the overview's
recent-traces list is built from Jaeger JSON by the same `summarize()`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Protocol
from urllib.parse import quote

import aiohttp
from aiohttp import web

from sandbox.console.jaeger import TraceSummary, summarize, trace_json
from sandbox.console.mesh import describe_error, get_json, join
from sandbox.console.query import QueryError, parse_query
from sandbox.console.spans import normalize_trace_id
from sandbox.console.store import TraceStore

JAEGER_SELF = ("jaeger", "jaeger-query", "jaeger-all-in-one")  # Jaeger traces its own API calls
MAX_SERVICES_SCANNED = 25  # recent traces from an external Jaeger: one search per service
RECENT_LOOKBACK = "1h"


class TraceSource(Protocol):
    mode: str  # "builtin" or "jaeger"

    async def recent(self, limit: int) -> tuple[list[TraceSummary], str | None]:
        """The newest traces (summaries, newest first), and why none could be read (or None)."""
        ...

    def describe(self) -> dict[str, Any]:
        """The tracing block of /api/status (mode, URLs, counts)."""
        ...

    async def search(self, service: str, limit: int, lookback: str) -> tuple[list[dict[str, Any]], str | None]:
        """A service's traces in Jaeger JSON, newest first, and why none could be read (or None)."""
        ...

    async def trace(self, trace_id: str) -> tuple[dict[str, Any] | None, str | None]:
        """One trace in Jaeger JSON (None when unknown), and why it could not be read (or None)."""
        ...


class LocalTraces:
    mode = "builtin"

    def __init__(self, store: TraceStore, ingest_url: str) -> None:
        self.store = store
        self.ingest_url = ingest_url

    async def recent(self, limit: int) -> tuple[list[TraceSummary], str | None]:
        found = [summarize(trace_json(spans)) for spans in self.store.recent(limit)]
        rows = [s for s in found if s is not None]
        rows.sort(key=lambda s: s.start_time, reverse=True)
        return rows, None

    async def search(self, service: str, limit: int, lookback: str) -> tuple[list[dict[str, Any]], str | None]:
        params = {"service": [service], "limit": [str(limit)], "lookback": [lookback]}
        try:
            query = parse_query(params, int(time.time() * 1_000_000))
        except QueryError as exc:
            return [], str(exc)
        return [trace_json(spans) for spans in self.store.find(query)], None

    async def trace(self, trace_id: str) -> tuple[dict[str, Any] | None, str | None]:
        normalized = normalize_trace_id(trace_id)
        spans = self.store.get(normalized) if normalized else None
        return (trace_json(spans) if spans else None), None

    def describe(self) -> dict[str, Any]:
        stats = self.store.stats
        return {
            "mode": self.mode,
            "url": None,
            "ingest": self.ingest_url,
            "reachable": True,
            "error": None,
            "stored": {
                "traces": self.store.trace_count,
                "spans": self.store.span_count,
                "maxTraces": self.store.max_traces,
                "maxSpans": self.store.max_spans,
                "received": stats.spans_received,
                "dropped": stats.spans_dropped,
                "evicted": stats.traces_evicted,
            },
        }


class JaegerTraces:
    """An external Jaeger query service (base URL like http://127.0.0.1:16686)."""

    mode = "jaeger"

    def __init__(self, base: str, session: aiohttp.ClientSession | None = None) -> None:
        self.base = base.rstrip("/")
        self.session = session
        self.last_error: str | None = None

    async def recent(self, limit: int) -> tuple[list[TraceSummary], str | None]:
        if self.session is None:
            return [], "not started"
        try:
            services = (await get_json(self.session, join(self.base, "/api/services"))).get("data") or []
            wanted = sorted(s for s in services if isinstance(s, str) and s not in JAEGER_SELF)[:MAX_SERVICES_SCANNED]
            answers = await asyncio.gather(*(self._search(s, limit) for s in wanted))
        except (aiohttp.ClientError, TimeoutError, ValueError, AttributeError) as exc:
            self.last_error = describe_error(exc)
            return [], self.last_error
        self.last_error = None
        by_id: dict[str, TraceSummary] = {}
        for traces in answers:
            for trace in traces:
                summary = summarize(trace) if isinstance(trace, dict) else None
                if summary is not None:
                    by_id[summary.trace_id] = summary
        rows = sorted(by_id.values(), key=lambda s: s.start_time, reverse=True)
        return rows[:limit], None

    async def _search(self, service: str, limit: int) -> list[Any]:
        assert self.session is not None
        url = join(self.base, f"/api/traces?service={quote(service)}&limit={limit}&lookback={RECENT_LOOKBACK}")
        data = await get_json(self.session, url)
        return list(data.get("data") or []) if isinstance(data, dict) else []

    async def search(self, service: str, limit: int, lookback: str) -> tuple[list[dict[str, Any]], str | None]:
        if self.session is None:
            return [], "not started"
        url = join(self.base, f"/api/traces?service={quote(service)}&limit={limit}&lookback={quote(lookback)}")
        try:
            data = await get_json(self.session, url)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            return [], describe_error(exc)
        traces = data.get("data") if isinstance(data, dict) else None
        return [t for t in traces or () if isinstance(t, dict)], None

    async def trace(self, trace_id: str) -> tuple[dict[str, Any] | None, str | None]:
        if self.session is None:
            return None, "not started"
        try:
            async with self.session.get(join(self.base, f"/api/traces/{quote(trace_id)}")) as resp:
                if resp.status == 404:
                    return None, None
                resp.raise_for_status()
                data = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            return None, describe_error(exc)
        found = (data.get("data") or [None])[0] if isinstance(data, dict) else None
        return (found if isinstance(found, dict) else None), None

    def describe(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "url": self.base,
            "ingest": None,
            "reachable": self.last_error is None,
            "error": self.last_error,
            "stored": None,
        }

    def add_routes(self, app: web.Application) -> None:
        """Jaeger's query API on the console's port, passed through to the external Jaeger."""
        for path in (
            "/api/services",
            "/api/services/{service}/operations",
            "/api/operations",
            "/api/traces",
            "/api/traces/{trace_id}",
        ):
            app.router.add_get(path, self._forward)

    async def _forward(self, request: web.Request) -> web.Response:
        if self.session is None:
            return web.json_response({"errors": [{"code": 503, "msg": "not started"}]}, status=503)
        try:
            async with self.session.get(join(self.base, request.rel_url.raw_path_qs)) as resp:
                body = await resp.read()
                return web.Response(body=body, status=resp.status, content_type=resp.content_type)
        except (aiohttp.ClientError, TimeoutError) as exc:
            message = f"tracing backend {self.base}: {describe_error(exc)}"
            return web.json_response({"data": None, "errors": [{"code": 502, "msg": message}]}, status=502)
