"""The sidecar's listeners over real sockets: request forms, keep-alive, bodies, headers Envoy adds."""

from __future__ import annotations

import asyncio

import pytest
from dataplane_support import (
    Client,
    Received,
    Reply,
    Upstream,
    compose_for,
    fetch,
    mesh_snapshot,
    running_sidecar,
    socket_test,
)

pytestmark = pytest.mark.timeout(30)

COMPOSE = compose_for(("productpage-v1", "productpage", "v1"), ("reviews-v1", "reviews", "v1"))
CLUSTER = "outbound|9080||reviews.default.svc.cluster.local"


def snapshot_for(upstream: Upstream, istio: str = "") -> object:
    return mesh_snapshot(COMPOSE, istio, "productpage-v1", {"reviews-v1": upstream.address})


@socket_test
async def test_absolute_form_from_http_proxy_reaches_the_service_with_origin_form() -> None:
    async with Upstream() as up, running_sidecar(snapshot_for(up)) as sc:
        response = await fetch(sc.outbound, "http://reviews:9080/reviews/0?x=1", host="ignored")
    assert response.status == 200
    assert response.body == b"hello from upstream"
    (seen,) = up.requests
    assert seen.path == "/reviews/0?x=1"
    assert seen.headers["host"] == "reviews:9080"  # the absolute-form authority wins over Host
    line = sc.lines()[0]
    assert '"GET /reviews/0?x=1 HTTP/1.1" 200 - ' in line
    assert CLUSTER in line and up.address in line


@socket_test
async def test_origin_form_is_routed_by_its_host_header() -> None:
    async with Upstream() as up, running_sidecar(snapshot_for(up)) as sc:
        response = await fetch(sc.outbound, "/ratings", host="reviews:9080")
    assert response.status == 200
    assert up.requests[0].path == "/ratings"


@socket_test
async def test_no_route_is_404_nr_with_an_empty_body() -> None:
    istio = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /only}}]
    route: [{destination: {host: reviews}}]
"""
    async with Upstream() as up, running_sidecar(snapshot_for(up, istio)) as sc:
        response = await fetch(sc.outbound, "/elsewhere", host="reviews:9080")
    assert response.status == 404
    assert response.body == b""
    assert sc.flags() == ["NR"]
    assert up.requests == []


@socket_test
async def test_envoy_response_headers_and_request_headers_upstream() -> None:
    async with Upstream() as up, running_sidecar(snapshot_for(up)) as sc:
        response = await fetch(sc.outbound, "/", host="reviews:9080", headers={"x-request-id": "abc-123"})
        fresh = await fetch(sc.outbound, "/", host="reviews:9080")
    assert response.headers["server"] == "envoy"
    assert response.headers["x-envoy-upstream-service-time"].isdigit()
    first, second = up.requests
    assert first.headers["x-request-id"] == "abc-123"  # propagated
    assert first.headers["x-envoy-attempt-count"] == "1"
    assert first.headers["x-forwarded-proto"] == "http"
    assert len(second.headers["x-request-id"]) == 36  # created, UUID-shaped
    assert second.headers["x-request-id"] != "abc-123"
    assert '"abc-123"' in sc.lines()[0]
    assert fresh.status == 200


@socket_test
async def test_hop_by_hop_headers_do_not_cross_and_repeats_are_kept() -> None:
    async def cookies(request: Received) -> Reply:
        return Reply(headers=(("set-cookie", "a=1"), ("set-cookie", "b=2"), ("keep-alive", "timeout=5")))

    async with Upstream(cookies) as up, running_sidecar(snapshot_for(up)) as sc, Client(sc.outbound) as client:
        response = await client.request(
            "GET", "/", {"connection": "keep-alive, x-private", "te": "trailers"}, host="reviews:9080"
        )
    assert [v for k, v in response.header_list if k == "set-cookie"] == ["a=1", "b=2"]
    assert "keep-alive" not in response.headers
    seen = up.requests[0].headers
    assert "te" not in seen and seen.get("connection", "keep-alive") == "keep-alive"


@socket_test
async def test_keep_alive_reuses_one_upstream_connection() -> None:
    async with Upstream() as up, running_sidecar(snapshot_for(up)) as sc, Client(sc.outbound) as client:
        for i in range(5):
            response = await client.request(target=f"/{i}", host="reviews:9080")
            assert response.status == 200
    assert [r.path for r in up.requests] == ["/0", "/1", "/2", "/3", "/4"]
    assert up.connections == 1


@socket_test
async def test_pipelined_requests_are_answered_in_order() -> None:
    async def slow_first(request: Received) -> Reply:
        if request.path == "/slow":
            await asyncio.sleep(0.2)
        return Reply(body=request.path.encode())

    async with Upstream(slow_first) as up, running_sidecar(snapshot_for(up)) as sc, Client(sc.outbound) as client:
        client.send(b"GET /slow HTTP/1.1\r\nhost: reviews:9080\r\n\r\nGET /fast HTTP/1.1\r\nhost: reviews:9080\r\n\r\n")
        first = await client.read_response()
        second = await client.read_response()
    assert (first.body, second.body) == (b"/slow", b"/fast")


@socket_test
async def test_request_bodies_stream_both_framings() -> None:
    async def echo(request: Received) -> Reply:
        return Reply(body=request.body, chunked=request.path == "/chunked-reply")

    payload = bytes(range(256)) * 4096  # 1 MiB
    async with Upstream(echo) as up, running_sidecar(snapshot_for(up)) as sc, Client(sc.outbound) as client:
        sized = await client.request("POST", "/", body=payload, host="reviews:9080")
        client.send(
            b"POST /chunked-reply HTTP/1.1\r\nhost: reviews:9080\r\ntransfer-encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        )
        chunked = await client.read_response()
    assert sized.status == 200 and sized.body == payload
    assert up.requests[0].headers["content-length"] == str(len(payload))
    assert chunked.body == b"hello world"
    assert up.requests[1].headers["transfer-encoding"] == "chunked"
    assert chunked.headers["transfer-encoding"] == "chunked"
    assert f" {len(payload)} {len(payload)} " in sc.lines()[0]  # bytes received and sent


@socket_test
async def test_large_response_streams_without_content_length() -> None:
    big = b"x" * (3 << 20)

    async def close_delimited(request: Received) -> bytes:
        return b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n" + big

    async with Upstream(close_delimited) as up, running_sidecar(snapshot_for(up)) as sc:
        response = await fetch(sc.outbound, "/", host="reviews:9080")
        # The upstream closes after the body: the sidecar frames it chunked for the client.
        assert response.headers.get("transfer-encoding") == "chunked"
    assert response.body == big


@socket_test
async def test_head_request_gets_headers_only() -> None:
    async with Upstream() as up, running_sidecar(snapshot_for(up)) as sc, Client(sc.outbound) as client:
        head = await client.request("HEAD", "/", host="reviews:9080")
        after = await client.request("GET", "/", host="reviews:9080")
    assert head.status == 200 and head.body == b"" and head.headers["content-length"] == "19"
    assert after.body == b"hello from upstream"  # the connection is still in sync


@socket_test
async def test_expect_100_continue_is_answered_by_the_proxy() -> None:
    async def echo(request: Received) -> Reply:
        return Reply(body=request.body)

    async with Upstream(echo) as up, running_sidecar(snapshot_for(up)) as sc, Client(sc.outbound) as client:
        client.send(b"PUT / HTTP/1.1\r\nhost: reviews:9080\r\ncontent-length: 4\r\nexpect: 100-continue\r\n\r\n")
        assert client.reader is not None
        interim = await asyncio.wait_for(client.reader.readuntil(b"\r\n\r\n"), 2)
        assert interim.startswith(b"HTTP/1.1 100 Continue")
        client.send(b"data")
        response = await client.read_response()
    assert response.body == b"data"
    assert "expect" not in up.requests[0].headers


@socket_test
async def test_http10_client_gets_a_closed_connection() -> None:
    async with Upstream() as up, running_sidecar(snapshot_for(up)) as sc, Client(sc.outbound) as client:
        client.send(b"GET / HTTP/1.0\r\nhost: reviews:9080\r\n\r\n")
        response = await client.read_response()
        assert response.status == 200
        assert await client.closed()


@socket_test
async def test_inbound_listener_forwards_to_the_app() -> None:
    async with Upstream() as app:
        snapshot = mesh_snapshot(COMPOSE, "", "reviews-v1", {}, app_address=app.address)
        async with running_sidecar(snapshot) as sc:
            response = await fetch(sc.inbound, "/reviews/1", host="reviews:9080")
    assert response.status == 200
    assert "server" not in response.headers or response.headers["server"] != "envoy"  # passed through inbound
    assert app.requests[0].path == "/reviews/1"
    line = sc.lines()[0]
    assert "inbound|9080||" in line and app.address in line


@socket_test
async def test_two_sidecars_make_a_mesh_hop_with_telemetry_headers() -> None:
    async with Upstream() as app:
        server = mesh_snapshot(COMPOSE, "", "reviews-v1", {}, app_address=app.address)
        async with running_sidecar(server) as inbound:
            address = f"127.0.0.1:{inbound.inbound}"
            client = mesh_snapshot(COMPOSE, "", "productpage-v1", {"reviews-v1": address})
            async with running_sidecar(client) as outbound:
                response = await fetch(outbound.outbound, "http://reviews:9080/r", host="x")
    assert response.status == 200
    seen = app.requests[0].headers
    assert "x-envoy-peer-metadata" not in seen  # consumed by the inbound sidecar
    assert seen["x-b3-traceid"] and seen["x-b3-sampled"] == "1"
    out_line, in_line = outbound.lines()[0], inbound.lines()[0]
    request_id = seen["x-request-id"]
    assert request_id in out_line and request_id in in_line  # one request id across the hop


@socket_test
async def test_a_new_snapshot_takes_effect_for_the_next_request() -> None:
    async with Upstream() as first, Upstream() as second:
        before = snapshot_for(first)
        async with running_sidecar(before) as sc:
            assert (await fetch(sc.outbound, "/", host="reviews:9080")).status == 200
            assert len(first.open) == 1  # a warm, idle keep-alive connection
            sc.sidecar.update(mesh_snapshot(COMPOSE, "", "productpage-v1", {"reviews-v1": second.address}))
            assert (await fetch(sc.outbound, "/", host="reviews:9080")).status == 200
            await asyncio.sleep(0.1)
            assert len(first.open) == 0  # the endpoint left the snapshot: its idle connection was closed
    assert len(first.requests) == 1 and len(second.requests) == 1


@socket_test
async def test_client_gone_before_the_response_is_logged_dc_and_frees_the_upstream() -> None:
    async def slow(request: Received) -> Reply:
        await asyncio.sleep(0.5)
        return Reply()

    async with Upstream(slow) as up, running_sidecar(snapshot_for(up)) as sc:
        async with Client(sc.outbound) as client:
            client.send(b"GET / HTTP/1.1\r\nhost: reviews:9080\r\n\r\n")
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.1)
        assert sc.flags() == ["DC"]
        assert (await fetch(sc.outbound, "/", host="reviews:9080")).status == 200  # a fresh connection works
    assert " 0 DC " in sc.lines()[0]  # no response code was sent


def test_original_destination_is_none_without_an_iptables_redirect() -> None:
    import socket

    from sandbox.proxy.server import original_destination

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        with socket.create_connection(listener.getsockname()):
            accepted, _ = listener.accept()
            with accepted:
                assert original_destination(accepted) is None  # not redirected: route by Host instead
        assert original_destination(None) is None


@socket_test
async def test_http10_keep_alive_client_never_gets_chunked_framing() -> None:
    async def chunked(request: Received) -> Reply:
        return Reply(body=b"chunked upstream", chunked=True)

    async with Upstream(chunked) as up, running_sidecar(snapshot_for(up)) as sc, Client(sc.outbound) as client:
        client.send(b"GET / HTTP/1.0\r\nhost: reviews:9080\r\nconnection: keep-alive\r\n\r\n")
        assert client.reader is not None
        raw = await asyncio.wait_for(client.reader.read(), 5)  # read to EOF: the body ends with the connection
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"transfer-encoding" not in head.lower()
    assert body == b"chunked upstream"
    assert '"GET / HTTP/1.0"' in sc.lines()[0]


@socket_test
async def test_a_large_body_after_a_local_reply_is_drained_and_the_connection_stays_usable() -> None:
    istio = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /ok}}]
    route: [{destination: {host: reviews}}]
"""
    async with Upstream() as up, running_sidecar(snapshot_for(up, istio)) as sc, Client(sc.outbound) as client:
        rejected = await client.request("POST", "/nowhere", body=b"z" * (3 << 20), host="reviews:9080")
        accepted = await client.request("GET", "/ok", host="reviews:9080")
    assert (rejected.status, accepted.status) == (404, 200)
    assert f" {3 << 20} 0 " in sc.lines()[0]  # the whole body was read (and dropped)
