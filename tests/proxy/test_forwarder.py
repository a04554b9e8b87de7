"""Carrying out Istio's rules over real sockets: one test per feature (test_exchange.py has the
sans-io conversations, with a manual clock, for the timings and every response flag)."""

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
from factories import reviews_routes, reviews_to_v1

pytestmark = pytest.mark.timeout(30)

COMPOSE = compose_for(
    ("productpage-v1", "productpage", "v1"), ("reviews-v1", "reviews", "v1"), ("reviews-v2", "reviews", "v2")
)


def closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def get(port: int, target: str = "/", **kwargs: object) -> tuple[int, dict[str, str], bytes]:
    response = await fetch(port, target, host="reviews:9080", **kwargs)
    return response.status, response.headers, response.body


# --------------------------------------------------------------------------- upstream failures


@socket_test
async def test_connect_failure_is_503_uf_after_istio_default_retries() -> None:
    snapshot = mesh_snapshot(COMPOSE, "", "productpage-v1", {"reviews-v1": f"127.0.0.1:{closed_port()}"})
    async with running_sidecar(snapshot) as sc:
        status, _, body = await get(sc.outbound)
    assert status == 503
    assert body == b"upstream connect error or disconnect/reset before headers. reset reason: connection failure"
    assert sc.flags() == ["UF,URX"]  # Istio retries connect failures twice by default, then gives up


@socket_test
async def test_upstream_reset_before_headers_is_503_uc() -> None:
    async def reset(request: Received) -> None:
        return None

    async with (
        Upstream(reset) as up,
        running_sidecar(mesh_snapshot(COMPOSE, "", "productpage-v1", {"reviews-v1": up.address})) as sc,
    ):
        status, _, body = await get(sc.outbound)
    assert status == 503
    assert body.endswith(b"reset reason: connection termination")
    assert sc.flags() == ["UC"]


@socket_test
async def test_upstream_garbage_is_502_upe() -> None:
    async def garbage(request: Received) -> bytes:
        return b"\x00\x01 this is not HTTP \r\n\r\n"

    async with (
        Upstream(garbage) as up,
        running_sidecar(mesh_snapshot(COMPOSE, "", "productpage-v1", {"reviews-v1": up.address})) as sc,
    ):
        status, _, body = await get(sc.outbound)
        again, _, _ = await get(sc.outbound)  # the sidecar is still serving
    assert status == 502
    assert body.endswith(b"reset reason: protocol error")
    assert sc.flags()[0] == "UPE"
    assert again == 502


@socket_test
async def test_upstream_reset_after_headers_closes_the_client_connection() -> None:
    async def half(request: Received) -> bytes | None:
        return b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly part"

    async with Upstream(half) as up:
        snapshot = mesh_snapshot(COMPOSE, "", "productpage-v1", {"reviews-v1": up.address})
        async with running_sidecar(snapshot) as sc, Client(sc.outbound) as client:
            client.send(b"GET / HTTP/1.1\r\nhost: reviews:9080\r\n\r\n")
            await asyncio.sleep(0.2)
            await up.close()  # the upstream dies mid-body
            with pytest.raises(ConnectionError):
                await client.read_response()
    assert sc.flags() == ["UC"]


# --------------------------------------------------------------------------- timeouts and retries


@socket_test
async def test_route_timeout_is_504_ut() -> None:
    async def slow(request: Received) -> Reply:
        await asyncio.sleep(2)
        return Reply()

    async with Upstream(slow) as up:
        snapshot = mesh_snapshot(COMPOSE, reviews_to_v1(timeout="0.3s"), "productpage-v1", {"reviews-v1": up.address})
        async with running_sidecar(snapshot) as sc:
            status, _, body = await get(sc.outbound)
    assert (status, body) == (504, b"upstream request timeout")
    assert sc.flags() == ["UT"]
    assert up.requests[0].headers["x-envoy-expected-rq-timeout-ms"] == "300"


@socket_test
async def test_retries_on_5xx_carry_the_attempt_count_until_success() -> None:
    async def flaky(request: Received) -> Reply:
        failing = int(request.headers["x-envoy-attempt-count"]) < 3
        return Reply(status=503 if failing else 200, body=b"fail" if failing else b"ok")

    retries = "{attempts: 3, retryOn: 5xx}"
    async with Upstream(flaky) as up:
        snapshot = mesh_snapshot(COMPOSE, reviews_to_v1(retries=retries), "productpage-v1", {"reviews-v1": up.address})
        async with running_sidecar(snapshot) as sc:
            status, _, body = await get(sc.outbound)
    assert (status, body) == (200, b"ok")
    assert [r.headers["x-envoy-attempt-count"] for r in up.requests] == ["1", "2", "3"]
    assert sc.flags() == ["-"]


@socket_test
async def test_exhausted_retries_return_the_last_response_with_urx() -> None:
    async def broken(request: Received) -> Reply:
        return Reply(status=503, body=b"still broken")

    retries = "{attempts: 2, retryOn: 5xx}"
    async with Upstream(broken) as up:
        snapshot = mesh_snapshot(COMPOSE, reviews_to_v1(retries=retries), "productpage-v1", {"reviews-v1": up.address})
        async with running_sidecar(snapshot) as sc:
            status, _, body = await get(sc.outbound)
    assert (status, body) == (503, b"still broken")
    assert len(up.requests) == 3
    assert sc.flags() == ["URX"]


@socket_test
async def test_per_try_timeout_retries_then_answers_504() -> None:
    async def slow(request: Received) -> Reply:
        await asyncio.sleep(1)
        return Reply()

    retries = "{attempts: 1, perTryTimeout: 0.2s, retryOn: gateway-error}"
    async with Upstream(slow) as up:
        snapshot = mesh_snapshot(COMPOSE, reviews_to_v1(retries=retries), "productpage-v1", {"reviews-v1": up.address})
        async with running_sidecar(snapshot) as sc:
            status, _, _ = await get(sc.outbound)
    assert status == 504
    assert len(up.requests) == 2


# --------------------------------------------------------------------------- faults and mirrors


@socket_test
async def test_fault_abort_answers_locally_with_fi() -> None:
    fault = "{abort: {httpStatus: 555, percentage: {value: 100}}}"
    async with Upstream() as up:
        snapshot = mesh_snapshot(COMPOSE, reviews_to_v1(fault=fault), "productpage-v1", {"reviews-v1": up.address})
        async with running_sidecar(snapshot) as sc:
            status, _, body = await get(sc.outbound)
    assert (status, body) == (555, b"fault filter abort")
    assert up.requests == []
    assert sc.flags() == ["FI"]


@socket_test
async def test_an_answer_before_the_body_is_in_still_reads_the_rest_and_keeps_the_connection() -> None:
    """A fault abort after a delay, while a 3 MiB body arrives: the sidecar buffers 1 MiB (the retry
    buffer) and stops reading. Answering must start reading again, or the client waits forever."""
    fault = "{delay: {fixedDelay: 0.2s, percentage: {value: 100}}, abort: {httpStatus: 503, percentage: {value: 100}}}"
    async with Upstream() as up:
        snapshot = mesh_snapshot(COMPOSE, reviews_to_v1(fault=fault), "productpage-v1", {"reviews-v1": up.address})
        async with running_sidecar(snapshot) as sc, Client(sc.outbound) as client:
            answer = await client.request("POST", "/upload", body=b"x" * (3 << 20), host="reviews:9080")
            assert (answer.status, answer.body) == (503, b"fault filter abort")
            async with asyncio.timeout(5):  # the same connection serves the next request
                again = await client.request("GET", "/", host="reviews:9080")
            assert again.status == 503
    assert sc.flags() == ["DI,FI", "DI,FI"]
    assert up.requests == []


@socket_test
async def test_mirror_gets_a_shadow_copy_and_never_slows_the_primary() -> None:
    release = asyncio.Event()

    async def held_mirror(request: Received) -> Reply:
        await release.wait()  # the shadow answers only once the primary's answer is in
        return Reply(status=500)

    mirror = "{host: reviews, subset: v2}"
    async with Upstream() as primary, Upstream(held_mirror) as shadow:
        addresses = {"reviews-v1": primary.address, "reviews-v2": shadow.address}
        snapshot = mesh_snapshot(COMPOSE, reviews_to_v1(mirror=mirror), "productpage-v1", addresses)
        async with running_sidecar(snapshot) as sc:
            status, _, body = await get(sc.outbound, "/m", body=b"payload")
            release.set()
            for _ in range(50):
                if shadow.requests:
                    break
                await asyncio.sleep(0.02)
    assert (status, body) == (200, b"hello from upstream")
    (copy,) = shadow.requests
    assert copy.headers["host"] == "reviews-shadow:9080"
    assert (copy.path, copy.body) == ("/m", b"payload")


# --------------------------------------------------------------------------- cluster policies


@socket_test
async def test_circuit_breaker_overflow_is_503_uo_with_overloaded_header() -> None:
    async def slow(request: Received) -> Reply:
        await asyncio.sleep(0.3)
        return Reply()

    rule = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 1}
      http: {http1MaxPendingRequests: 1}
"""
    async with Upstream(slow) as up:
        snapshot = mesh_snapshot(COMPOSE, rule, "productpage-v1", {"reviews-v1": up.address, "reviews-v2": up.address})
        async with running_sidecar(snapshot) as sc:
            results = await asyncio.gather(*(fetch(sc.outbound, "/", host="reviews:9080") for _ in range(3)))
    statuses = sorted(r.status for r in results)
    overflowed = [r for r in results if r.status == 503]
    assert 200 in statuses and overflowed, statuses
    for response in overflowed:
        assert response.headers["x-envoy-overloaded"] == "true"
        assert response.body.endswith(b"reset reason: overflow")
    assert sc.flags().count("UO") == len(overflowed)
    assert up.connections == 1


@socket_test
async def test_nothing_healthy_is_503_uh() -> None:
    async def failing(request: Received) -> Reply:
        return Reply(status=503)

    rule = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    outlierDetection: {consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 30s, maxEjectionPercent: 100}
"""
    async with Upstream(failing) as bad:
        snapshot = mesh_snapshot(
            COMPOSE, rule, "productpage-v1", {"reviews-v1": bad.address, "reviews-v2": bad.address}
        )
        async with running_sidecar(snapshot) as sc:
            seen = [await get(sc.outbound) for _ in range(4)]
    assert seen[-1][0] == 503 and seen[-1][2] == b"no healthy upstream"
    assert sc.flags()[-1] == "UH"
    assert len(bad.requests) == 2  # one per endpoint, then both were out


@socket_test
async def test_hash_cookie_with_a_ttl_is_set_on_the_response_and_keeps_the_client_on_its_host() -> None:
    async def named(name: str, request: Received) -> Reply:
        return Reply(body=name.encode(), headers=(("set-cookie", "app=1"),))

    rule = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer: {consistentHash: {httpCookie: {name: user, ttl: 60s, path: /}}}
"""
    async with Upstream(lambda r: named("v1", r)) as v1, Upstream(lambda r: named("v2", r)) as v2:
        snapshot = mesh_snapshot(COMPOSE, rule, "productpage-v1", {"reviews-v1": v1.address, "reviews-v2": v2.address})
        async with running_sidecar(snapshot) as sc:
            async with Client(sc.outbound) as client:
                first = await client.request(host="reviews:9080")
            cookies = [v for k, v in first.header_list if k == "set-cookie"]
            # Envoy's router: name="<16 hex of the connection's addresses>"; Max-Age=ttl; Path; HttpOnly,
            # beside the upstream's own Set-Cookie.
            assert cookies[0] == "app=1" and len(cookies) == 2
            name_value, *attributes = cookies[1].split("; ")
            assert attributes == ["Max-Age=60", "Path=/", "HttpOnly"]
            name, _, quoted = name_value.partition("=")
            assert name == "user" and len(quoted) == 18 and quoted.startswith('"') and quoted.endswith('"')
            again = [
                await fetch(sc.outbound, host="reviews:9080", headers={"cookie": f"user={quoted}"}) for _ in range(6)
            ]
    assert {r.body for r in again} == {first.body}  # the cookie keeps the client on its host
    assert all([v for k, v in r.header_list if k == "set-cookie"] == ["app=1"] for r in again)


# --------------------------------------------------------------------------- local replies


@socket_test
async def test_direct_response_and_redirect_are_answered_by_the_sidecar() -> None:
    rules = reviews_routes(
        """  - match: [{uri: {exact: /direct}}]
    directResponse: {status: 418, body: {string: teapot}}
  - match: [{uri: {exact: /old}}]
    redirect: {uri: /new}
  - route: [{destination: {host: reviews}}]"""
    )
    async with Upstream() as up:
        snapshot = mesh_snapshot(COMPOSE, rules, "productpage-v1", {"reviews-v1": up.address, "reviews-v2": up.address})
        async with running_sidecar(snapshot) as sc:
            direct = await get(sc.outbound, "/direct")
            moved = await get(sc.outbound, "/old")
    assert (direct[0], direct[2]) == (418, b"teapot")
    assert moved[0] == 301 and moved[1]["location"] == "http://reviews:9080/new"
    assert up.requests == []
