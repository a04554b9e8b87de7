"""The console's collector over real HTTP: sidecars' span reporters post Zipkin v2 JSON to it and
Jaeger-style queries read the traces back (sandbox/console/collector.py, tracesource.py)."""

from __future__ import annotations

import asyncio
import gzip
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from bookinfo_proxies import INGRESS, PRODUCTPAGE, REVIEWS
from console_helpers import hop, read_page

from sandbox.console.app import Console, ConsoleSettings
from sandbox.proxy.tracecontext import TraceContext
from sandbox.proxy.tracing import SpanBuilder, SpanReporter

TRACE = "5" * 32
EDGE, CALL = "e" * 16, "f" * 16  # ingress -> productpage, productpage -> reviews


async def send_one_request_through_three_proxies(ingest: str, start: float) -> list[SpanReporter]:
    """ingress CLIENT -> productpage SERVER (shared) -> productpage CLIENT -> reviews SERVER (shared), 503."""
    reporters = {i.workload: SpanReporter(SpanBuilder(i), url=ingest) for i in (INGRESS, PRODUCTPAGE, REVIEWS)}
    reporters["istio-ingressgateway"].submit(
        hop(TraceContext(TRACE, EDGE, None, True, "CLIENT"), start, 0.020, "productpage:9080", 503)
    )
    reporters["productpage-v1"].submit(
        hop(TraceContext(TRACE, EDGE, None, True, "SERVER", shared=True), start + 0.001, 0.018, "productpage:9080", 503)
    )
    reporters["productpage-v1"].submit(
        hop(TraceContext(TRACE, CALL, EDGE, True, "CLIENT"), start + 0.002, 0.010, "reviews:9080", 503)
    )
    reporters["reviews-v2"].submit(
        hop(TraceContext(TRACE, CALL, EDGE, True, "SERVER", shared=True), start + 0.003, 0.008, "reviews:9080", 503)
    )
    for reporter in reporters.values():
        await reporter.flush()
        await reporter.close()
    return list(reporters.values())


@asynccontextmanager
async def console(**settings: Any) -> AsyncIterator[tuple[Console, str]]:
    c = Console(ConsoleSettings(port=0, control_plane="http://127.0.0.1:9", **settings))
    port = await c.start()
    try:
        yield c, f"http://127.0.0.1:{port}"
    finally:
        await c.stop()


async def get(session: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with session.get(url) as resp:
        return resp.status, await resp.json()


def test_spans_posted_by_sidecars_read_back_through_jaegers_api() -> None:
    async def scenario() -> None:
        async with console() as (_, base), aiohttp.ClientSession() as http:
            reporters = await send_one_request_through_three_proxies(f"{base}/api/v2/spans", time.time())
            assert [(r.spans_sent, r.send_failures) for r in reporters] == [(1, 0), (2, 0), (1, 0)]

            status, services = await get(http, f"{base}/api/services")
            assert status == 200
            assert services == {
                "data": ["istio-ingressgateway.istio-system", "productpage.default", "reviews.default"],
                "total": 3,
                "limit": 0,
                "offset": 0,
                "errors": None,
            }
            _, ops = await get(http, f"{base}/api/services/productpage.default/operations")
            assert ops["data"] == [
                "productpage.default.svc.cluster.local:9080/*",
                "reviews.default.svc.cluster.local:9080/*",
            ]
            _, ops = await get(http, f"{base}/api/operations?service=productpage.default&spanKind=server")
            assert ops["data"] == [{"name": "productpage.default.svc.cluster.local:9080/*", "spanKind": "server"}]

            query = "service=reviews.default&limit=20&lookback=1h&tags=" + '{"http.status_code":"503","error":"true"}'
            status, found = await get(http, f"{base}/api/traces?{query}")
            assert status == 200 and found["errors"] is None
            (trace,) = found["data"]
            services_by_pid = {pid: p["serviceName"] for pid, p in trace["processes"].items()}
            chain = [
                (services_by_pid[s["processID"]], s["spanID"], [r["spanID"] for r in s["references"]])
                for s in trace["spans"]
            ]
            # Jaeger's deduper: each shared server span gets a fresh id under its client span
            assert chain == [
                ("istio-ingressgateway.istio-system", EDGE, []),
                ("productpage.default", "0000000000000001", [EDGE]),
                ("productpage.default", CALL, ["0000000000000001"]),
                ("reviews.default", "0000000000000002", [CALL]),
            ]
            assert all(
                r["refType"] == "CHILD_OF" and r["traceID"] == TRACE for s in trace["spans"] for r in s["references"]
            )
            first = trace["spans"][0]
            assert first["duration"] == 20_000 and isinstance(first["startTime"], int)

            _, none = await get(http, f"{base}/api/traces?service=reviews.default&tags=" + '{"http.status_code":"200"}')
            assert none["data"] == []
            _, by_op = await get(http, f"{base}/api/traces?service=reviews.default&operation=nope")
            assert by_op["data"] == []
            _, slow = await get(http, f"{base}/api/traces?service=reviews.default&minDuration=9ms")
            assert slow["data"] == []  # reviews' span took 8ms

            status, one = await get(http, f"{base}/api/traces/{TRACE}")
            assert status == 200 and [t["traceID"] for t in one["data"]] == [TRACE]
            _, raw = await get(http, f"{base}/api/traces/{TRACE}?raw=true")
            assert [s["spanID"] for s in raw["data"][0]["spans"]] == [EDGE, EDGE, CALL, CALL]
            _, by_ids = await get(http, f"{base}/api/traces?traceID={TRACE}&traceID={'1' * 32}")
            assert [t["traceID"] for t in by_ids["data"]] == [TRACE]
            assert by_ids["errors"] == [{"msg": "trace not found", "traceID": "1" * 32}]

    asyncio.run(scenario())


def test_jaeger_errors_come_in_its_envelope() -> None:
    async def scenario() -> None:
        async with console() as (_, base), aiohttp.ClientSession() as http:
            status, body = await get(http, f"{base}/api/traces/{'1' * 32}")
            assert (status, body["errors"]) == (404, [{"code": 404, "msg": "trace not found"}])
            status, body = await get(http, f"{base}/api/traces/not-hex")
            assert status == 400 and body["data"] is None and "invalid syntax" in body["errors"][0]["msg"]
            status, body = await get(http, f"{base}/api/traces?limit=5")
            assert (status, body["errors"]) == (400, [{"code": 400, "msg": "parameter 'service' is required"}])
            status, body = await get(http, f"{base}/api/operations")
            assert status == 400

    asyncio.run(scenario())


def test_ingest_refuses_what_it_cannot_store_and_takes_gzip() -> None:
    async def scenario() -> None:
        async with console() as (c, base), aiohttp.ClientSession() as http:
            url = f"{base}/api/v2/spans"
            bad = [{"traceId": TRACE, "id": "1" * 16}, {"traceId": TRACE, "id": "nope"}]
            async with http.post(url, json=bad) as resp:
                assert resp.status == 400
                assert await resp.text() == "cannot store spans: span[1].id: expected 16 hex digits, got 'nope'"
            async with http.post(url, data=b"{not json", headers={"Content-Type": "application/json"}) as resp:
                assert resp.status == 400 and (await resp.text()).startswith("cannot store spans: malformed JSON")
            async with http.post(url, data=b"\x0a\x01", headers={"Content-Type": "application/x-protobuf"}) as resp:
                assert resp.status == 415
            assert c.store is not None and c.store.span_count == 0  # a refused batch stores nothing

            span = {"traceId": TRACE, "id": "1" * 16, "name": "x", "localEndpoint": {"serviceName": "web.default"}}
            body = gzip.compress(json.dumps([span]).encode())
            headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
            async with http.post(url, data=body, headers=headers) as resp:
                assert resp.status == 202
            assert c.store.span_count == 1

    asyncio.run(scenario())


def test_with_an_external_jaeger_the_console_passes_its_query_api_through() -> None:
    """The 'external Jaeger' is a second console's collector: it genuinely answers Jaeger's API."""

    async def scenario() -> None:
        async with console() as (_, jaeger), console(tracing=jaeger) as (front, base), aiohttp.ClientSession() as http:
            assert front.store is None
            await send_one_request_through_three_proxies(f"{jaeger}/api/v2/spans", time.time())
            async with http.post(f"{base}/api/v2/spans", json=[]) as resp:
                assert resp.status in (404, 405)  # no collector here: sidecars send to Jaeger
            status, services = await get(http, f"{base}/api/services")
            assert status == 200 and services["total"] == 3
            status, one = await get(http, f"{base}/api/traces/{TRACE}")
            assert status == 200 and one["data"][0]["traceID"] == TRACE
            status, missing = await get(http, f"{base}/api/traces/{'1' * 32}")
            assert status == 404 and missing["errors"][0]["msg"] == "trace not found"

            _, status_json = await get(http, f"{base}/api/status")
            assert status_json["tracing"]["mode"] == "jaeger" and status_json["tracing"]["reachable"]
            assert status_json["urls"]["tracing"] == jaeger
            (row,) = status_json["recentTraces"]
            assert (row["traceID"], row["service"], row["statusCode"], row["spans"]) == (
                TRACE,
                "istio-ingressgateway.istio-system",
                503,
                4,
            )
            assert row["link"] == f"{jaeger}/trace/{TRACE}"
            async with http.get(f"{base}/") as resp:
                html = await resp.text()
            page = read_page(html)
            assert "Jaeger" in page.cards["card-tracing"] and "from Jaeger" in html
            assert f'href="{jaeger}/trace/{TRACE}"' in html
            assert [r[1] for r in page.sections["traces"][1:]] == ["istio-ingressgateway.istio-system +2"]

        async with console(tracing="http://127.0.0.1:9") as (_, base), aiohttp.ClientSession() as http:
            status, body = await get(http, f"{base}/api/services")
            assert status == 502 and "cannot connect to 127.0.0.1:9" in body["errors"][0]["msg"]
            _, status_json = await get(http, f"{base}/api/status")
            assert status_json["tracing"]["reachable"] is False
            assert "cannot connect" in status_json["tracing"]["error"]

    asyncio.run(scenario())


def test_an_extra_zipkin_port_takes_spans_for_the_same_store() -> None:
    async def scenario() -> None:
        async with console(zipkin_port=0) as (c, base), aiohttp.ClientSession() as http:
            assert c.zipkin_port is not None and c.zipkin_port != c.port
            zipkin = f"http://127.0.0.1:{c.zipkin_port}"
            await send_one_request_through_three_proxies(f"{zipkin}/api/v2/spans", time.time())
            status, one = await get(http, f"{base}/api/traces/{TRACE}")
            assert status == 200 and len(one["data"][0]["spans"]) == 4
            async with http.get(f"{zipkin}/api/services") as resp:
                assert resp.status == 404  # the Zipkin port only ingests
            _, status_json = await get(http, f"{base}/api/status")
            assert status_json["tracing"]["ingest"] == f"{zipkin}/api/v2/spans"

    asyncio.run(scenario())


def test_the_trace_page_shows_the_hops_as_a_waterfall() -> None:
    async def scenario() -> tuple[str, int]:
        async with console() as (_, base), aiohttp.ClientSession() as http:
            await send_one_request_through_three_proxies(f"{base}/api/v2/spans", time.time())
            async with http.get(f"{base}/traces/{TRACE}") as resp:
                assert resp.status == 200
                html = await resp.text()
            async with http.get(f"{base}/traces/{'1' * 32}") as resp:
                return html, resp.status

    html, missing = asyncio.run(scenario())
    assert missing == 404
    rows = read_page(html).sections["trace"]
    assert rows[0] == ["Service", "Operation", "Status", "Duration", "Timeline"]
    # each span names its service and kind, and links the workload whose sidecar reported it
    assert [(r[0], r[1].split()[0], r[2], r[3].split()[0]) for r in rows[1:]] == [
        (
            "istio-ingressgateway.istio-system client istio-ingressgateway",
            "productpage.default.svc.cluster.local:9080/*",
            "503 error",
            "20.00ms",
        ),
        (
            "productpage.default server productpage-v1",
            "productpage.default.svc.cluster.local:9080/*",
            "503 error",
            "18.00ms",
        ),
        (
            "productpage.default client productpage-v1",
            "reviews.default.svc.cluster.local:9080/*",
            "503 error",
            "10.00ms",
        ),
        ("reviews.default server reviews-v2", "reviews.default.svc.cluster.local:9080/*", "503 error", "8.00ms"),
    ]
    assert 'href="/console/namespaces/istio-system/workloads/istio-ingressgateway"' in html
    # each hop is indented under the one that called it
    assert [html.count(f"padding-left: {16 + 18 * depth}px") for depth in range(4)] == [1, 1, 1, 1]
