"""The built-in collector's HTTP face: Zipkin's ingest endpoint and Jaeger's query API on a TraceStore.

    POST /api/v2/spans                       Zipkin v2 JSON (gzip too); 202, or 400 naming the bad field
    GET  /api/services                       Jaeger: service names
    GET  /api/services/{service}/operations  Jaeger (legacy, what its UI calls): operation names
    GET  /api/operations?service=&spanKind=  Jaeger: [{name, spanKind}]
    GET  /api/traces?service=...             Jaeger search (query.py)
    GET  /api/traces/{traceID}[?raw=true]    Jaeger: one trace, 404 "trace not found"

Every Jaeger answer is its envelope `{data, total, limit, offset, errors}`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from aiohttp import web

from sandbox.console.jaeger import envelope, error_envelope, trace_json
from sandbox.console.query import QueryError, parse_query
from sandbox.console.spans import SpanFormatError, decode_zipkin, normalize_trace_id
from sandbox.console.store import TraceStore

STORE_KEY: web.AppKey[TraceStore] = web.AppKey("trace_store", TraceStore)
MAX_BODY = 16 * 1024 * 1024  # a sidecar batch is at most a few hundred KB


class Collector:
    def __init__(self, store: TraceStore, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self._clock = clock

    def add_routes(self, app: web.Application) -> None:
        self.add_ingest_route(app)
        app.router.add_get("/api/services", self.services)
        app.router.add_get("/api/services/{service}/operations", self.operations_legacy)
        app.router.add_get("/api/operations", self.operations)
        app.router.add_get("/api/traces", self.search)
        app.router.add_get("/api/traces/{trace_id}", self.trace)

    def add_ingest_route(self, app: web.Application) -> None:
        """Only Zipkin's ingest: what an extra listener on Zipkin's port 9411 serves."""
        app[STORE_KEY] = self.store
        app.router.add_post("/api/v2/spans", self.ingest)

    async def ingest(self, request: web.Request) -> web.Response:
        if "protobuf" in request.content_type or "thrift" in request.content_type:
            return web.Response(
                status=415, text="only Zipkin v2 JSON is accepted here (Content-Type: application/json)"
            )
        body = await request.read()
        try:
            spans = decode_zipkin(json.loads(body or b"[]"))
        except (ValueError, UnicodeDecodeError) as exc:  # SpanFormatError is a ValueError
            reason = str(exc) if isinstance(exc, SpanFormatError) else f"malformed JSON: {exc}"
            return web.Response(status=400, text=f"cannot store spans: {reason}")
        self.store.add(spans)
        return web.Response(status=202)

    async def services(self, _request: web.Request) -> web.Response:
        names = self.store.services()
        return web.json_response(envelope(names, total=len(names)))

    async def operations_legacy(self, request: web.Request) -> web.Response:
        names = sorted({name for name, _ in self.store.operations(request.match_info["service"])})
        return web.json_response(envelope(names, total=len(names)))

    async def operations(self, request: web.Request) -> web.Response:
        service = request.query.get("service", "")
        if not service:
            return web.json_response(error_envelope(400, "parameter 'service' is required"), status=400)
        found = self.store.operations(service, request.query.get("spanKind", ""))
        data = [{"name": name, "spanKind": kind} for name, kind in found]
        return web.json_response(envelope(data, total=len(data)))

    async def search(self, request: web.Request) -> web.Response:
        params = {key: request.query.getall(key) for key in request.query}
        try:
            query = parse_query(params, int(self._clock() * 1_000_000))
        except QueryError as exc:
            return web.json_response(error_envelope(400, str(exc)), status=400)
        traces = self.store.find(query)
        found = {t[0].trace_id for t in traces}
        errors = [{"msg": "trace not found", "traceID": t} for t in query.trace_ids if t not in found]
        return web.json_response(envelope([trace_json(t) for t in traces], errors=errors or None))

    async def trace(self, request: web.Request) -> web.Response:
        text = request.match_info["trace_id"]
        trace_id = normalize_trace_id(text)
        if trace_id is None:
            message = f'strconv.ParseUint: parsing "{text}": invalid syntax'
            return web.json_response(error_envelope(400, message), status=400)
        spans = self.store.get(trace_id)
        if not spans:
            return web.json_response(error_envelope(404, "trace not found"), status=404)
        adjust = request.query.get("raw", "").lower() not in ("true", "1")
        return web.json_response(envelope([trace_json(spans, adjust=adjust)]))
