"""Spans in Zipkin v2 JSON, sent in batches without ever blocking a request."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer
from bookinfo_proxies import PRODUCTPAGE

from sandbox.proxy import record as records
from sandbox.proxy.record import RequestRecord
from sandbox.proxy.tracecontext import TraceContext
from sandbox.proxy.tracing import SpanBuilder, SpanReporter


def record(kind: str = "CLIENT", status: int = 200, **kw: Any) -> RequestRecord:
    rec = records.record(
        1_700_000_000.25,
        method="GET",
        path="/reviews/0?x=1",
        authority="reviews:9080",
        request_id="req-1",
        response_code=status,
        duration=0.0125,
        bytes_sent=295,
        upstream_host="127.0.0.1:15006",
        upstream_cluster="outbound|9080|v2|reviews.default.svc.cluster.local",
        downstream_remote_address="127.0.0.1:40000",
        operation="reviews.default.svc.cluster.local:9080/*",
        **kw,
    )
    rec.trace = TraceContext("a" * 32, "b" * 16, "c" * 16, True, kind, shared=kind == "SERVER")
    return rec


def span_of(rec: RequestRecord) -> dict[str, Any]:
    span = json.loads(SpanBuilder(PRODUCTPAGE).span_json(rec))
    assert isinstance(span, dict)
    return span


def test_client_span_is_named_and_tagged_like_envoys() -> None:
    span = span_of(record())
    assert span["name"] == "reviews.default.svc.cluster.local:9080/*"
    assert span["kind"] == "CLIENT"
    assert (span["traceId"], span["id"], span["parentId"]) == ("a" * 32, "b" * 16, "c" * 16)
    assert span["timestamp"] == 1_700_000_000_250_000 and span["duration"] == 12_500
    assert span["localEndpoint"]["serviceName"] == "productpage.default"
    assert span["remoteEndpoint"] == {"ipv4": "127.0.0.1", "port": 15006}
    assert "shared" not in span
    tags = span["tags"]
    assert tags["http.method"] == "GET"
    assert tags["http.url"] == "http://reviews:9080/reviews/0?x=1"
    assert tags["http.status_code"] == "200"
    assert tags["response_flags"] == "-"
    assert tags["upstream_cluster"] == "outbound|9080|v2|reviews.default.svc.cluster.local"
    assert tags["component"] == "proxy"
    assert tags["guid:x-request-id"] == "req-1"
    assert tags["peer.address"] == "127.0.0.1"
    assert tags["node_id"] == "sidecar~127.0.0.1~productpage-v1.default~default.svc.cluster.local"
    assert tags["istio.canonical_service"] == "productpage" and tags["istio.namespace"] == "default"
    assert tags["istio.canonical_revision"] == "v1"
    assert "error" not in tags


def test_server_span_is_shared_and_errors_are_tagged() -> None:
    span = span_of(record("SERVER", status=503, response_flags="UH"))
    assert span["kind"] == "SERVER" and span["shared"] is True
    assert span["remoteEndpoint"] == {"ipv4": "127.0.0.1", "port": 40000}
    assert span["tags"]["error"] == "true" and span["tags"]["response_flags"] == "UH"


def test_full_queue_drops_and_counts_without_blocking() -> None:
    reporter = SpanReporter(SpanBuilder(PRODUCTPAGE), max_queue=2)
    for _ in range(5):
        reporter.submit(record())
    assert reporter.spans_dropped == 3


def test_flush_sends_batches_and_survives_a_failing_backend() -> None:
    bodies: list[bytes] = []

    async def post(body: bytes) -> None:
        bodies.append(body)

    reporter = SpanReporter(SpanBuilder(PRODUCTPAGE), post=post, batch_size=2)
    for _ in range(5):
        reporter.submit(record())
    asyncio.run(reporter.flush())
    assert [len(json.loads(b)) for b in bodies] == [2, 2, 1] and reporter.spans_sent == 5

    async def broken(body: bytes) -> None:
        raise ConnectionRefusedError("no collector")

    failing = SpanReporter(SpanBuilder(PRODUCTPAGE), post=broken)
    failing.submit(record())
    asyncio.run(failing.flush())
    assert failing.send_failures == 1 and failing.spans_dropped == 1


def test_spans_reach_a_zipkin_endpoint_over_http() -> None:
    received: list[Any] = []

    async def spans(request: web.Request) -> web.Response:
        assert request.content_type == "application/json"
        received.extend(await request.json())
        return web.Response(status=202)

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/api/v2/spans", spans)
        async with TestServer(app) as server:
            url = str(server.make_url("/api/v2/spans"))
            reporter = SpanReporter(SpanBuilder(PRODUCTPAGE), url=url, flush_interval=0.01)
            task = asyncio.create_task(reporter.run())
            reporter.submit(record())
            for _ in range(200):
                await asyncio.sleep(0.01)
                if received:
                    break
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())
    assert len(received) == 1 and received[0]["name"] == "reviews.default.svc.cluster.local:9080/*"


def test_odd_values_still_make_valid_spans() -> None:
    quoted = record("SERVER", status=503, user_agent='curl "quoted" \\ é', x_forwarded_for="1.2.3.4")
    assert span_of(quoted)["tags"]["user_agent"] == 'curl "quoted" \\ é'
    bare = record(status=0)
    bare.upstream_host, bare.downstream_remote_address, bare.operation = "", "[::1]:5000", ""
    span = span_of(bare)
    assert span["name"] == "reviews:9080/reviews/0" and span["tags"]["error"] == "true"
    assert "upstream_address" not in span["tags"] and span["tags"]["peer.address"] == "::1"
    failed = record(response_flags="UF,URX")
    failed.upstream_cluster = ""
    assert span_of(failed)["tags"]["upstream_cluster"] == "-"
    reporter = SpanReporter(SpanBuilder(PRODUCTPAGE))
    assert json.loads(reporter.encode([quoted, bare])) == [span_of(quoted), span_of(bare)]
