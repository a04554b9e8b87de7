"""Bad input at the edges: Envoy's answers, connections closed, no crash, no leaked descriptors."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time

import pytest
from dataplane_support import (
    Client,
    Received,
    Upstream,
    compose_for,
    fetch,
    mesh_snapshot,
    running_sidecar,
    socket_test,
)

pytestmark = pytest.mark.timeout(60)

COMPOSE = compose_for(("productpage-v1", "productpage", "v1"), ("reviews-v1", "reviews", "v1"))


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def settle_fds(target: int, timeout: float = 3.0) -> int:
    """The descriptor count once it is back at `target` (or whatever it is after `timeout`)."""
    deadline = time.monotonic() + timeout
    count = open_fds()
    while count > target and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        count = open_fds()
    return count


@pytest.mark.parametrize(
    "raw",
    [
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/9.9\r\nhost: reviews:9080\r\n\r\n",
        b"GET / HTTP/1.1\r\nbad header line\r\n\r\n",
        b"GET / HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n",  # smuggling
        b"GET / HTTP/1.1\r\nhost: a\r\ncontent-length: nope\r\n\r\n",
        b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
        b"GET http://[::1/ HTTP/1.1\r\n\r\n",
        # HTTP/1 hardening, each rejected as Envoy does and never forwarded
        b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\nabcd",  # differing lengths
        b"GET / HTTP/1.1\r\nhost: a\r\nx-folded: one\r\n two\r\n\r\n",  # obs-fold
        b"GET / HTTP/1.1\nhost: reviews:9080\n\n",  # bare LF line endings
        b"GET / HTTP/1.1\r\nhost: a\r\nx@bad: 1\r\n\r\n",  # not a token: invalid header name
        b"GET / HTTP/1.1\r\nhost: a\r\nx-bad\x00name: 1\r\n\r\n",
        b"GET / HTTP/1.1\r\nhost: a\r\n : empty name\r\n\r\n",
        b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: gzip, chunked, chunked\r\n\r\n0\r\n\r\n",
    ],
)
@socket_test
async def test_malformed_request_gets_400_and_a_closed_connection(raw: bytes) -> None:
    async with (
        Upstream() as up,
        running_sidecar(mesh_snapshot(COMPOSE, "", "productpage-v1", {"reviews-v1": up.address})) as sc,
    ):
        async with Client(sc.outbound) as client:
            client.send(raw)
            response = await client.read_response()
            assert response.status == 400
            assert response.headers["connection"] == "close"
            assert await client.closed()
        assert (await fetch(sc.outbound, "/", host="reviews:9080")).status == 200  # still serving
    assert up.requests[-1].path == "/"


@socket_test
async def test_headers_over_60_kib_get_431_and_a_closed_connection() -> None:
    async with (
        Upstream() as up,
        running_sidecar(mesh_snapshot(COMPOSE, "", "productpage-v1", {"reviews-v1": up.address})) as sc,
    ):
        async with Client(sc.outbound) as client:
            big = "x" * 1000
            headers = "".join(f"x-filler-{i}: {big}\r\n" for i in range(62))
            client.send(f"GET / HTTP/1.1\r\nhost: reviews:9080\r\n{headers}\r\n".encode())
            response = await client.read_response()
            assert response.status == 431
            assert await client.closed()
        async with Client(sc.outbound) as client:  # one endless header value is cut off too
            client.send(b"GET / HTTP/1.1\r\nhost: reviews:9080\r\nx-endless: " + b"y" * (80 * 1024))
            response = await client.read_response()
            assert response.status == 431
        async with Client(sc.outbound) as client:  # just under the limit is fine
            response = await client.request(headers={f"x-filler-{i}": big for i in range(50)}, host="reviews:9080")
            assert response.status == 200
    assert not any("x-endless" in r.headers for r in up.requests)


@socket_test
async def test_slow_client_is_cut_off_by_the_header_timeout() -> None:
    snapshot = mesh_snapshot(COMPOSE, "", "productpage-v1", {"reviews-v1": "127.0.0.1:9"})
    async with running_sidecar(snapshot, header_timeout=0.3) as sc, Client(sc.outbound) as client:
        started = time.monotonic()
        client.send(b"GET / HTTP/1.1\r\nhost: reviews:9080\r\nx-slow: ")  # ... and never finishes
        response = await client.read_response()
        elapsed = time.monotonic() - started
        assert response.status == 408
        assert await client.closed()
    assert 0.25 <= elapsed < 2.0


@socket_test
async def test_idle_keep_alive_connection_is_closed_after_the_idle_timeout() -> None:
    async with (
        Upstream() as up,
        running_sidecar(
            mesh_snapshot(COMPOSE, "", "productpage-v1", {"reviews-v1": up.address}),
            idle_timeout=0.3,
            header_timeout=0.3,
        ) as sc,
        Client(sc.outbound) as client,
    ):
        assert (await client.request(host="reviews:9080")).status == 200
        assert await client.closed(timeout=2.0)


@socket_test
async def test_upstream_garbage_is_502_and_costs_no_descriptors() -> None:
    async def garbage(request: Received) -> bytes:
        return b"HTTP/1.1 2OO NOPE\r\n\r\n"

    async with (
        Upstream(garbage) as up,
        running_sidecar(mesh_snapshot(COMPOSE, "", "productpage-v1", {"reviews-v1": up.address})) as sc,
    ):
        await fetch(sc.outbound, "/", host="reviews:9080")
        baseline = open_fds()
        for _ in range(20):
            response = await fetch(sc.outbound, "/", host="reviews:9080")
            assert response.status == 502
        assert await settle_fds(baseline) <= baseline
    assert sc.flags()[-1] == "UPE"


@socket_test
async def test_fuzzed_bytes_never_crash_the_listener_or_leak_descriptors() -> None:
    rng = random.Random(1234)
    seeds = [
        b"GET / HTTP/1.1\r\nhost: reviews:9080\r\n\r\n",
        b"POST /x HTTP/1.1\r\nhost: reviews:9080\r\ntransfer-encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n",
        b"GET http://reviews:9080/a HTTP/1.1\r\n\r\n",
    ]
    async with (
        Upstream() as up,
        running_sidecar(
            mesh_snapshot(COMPOSE, "", "productpage-v1", {"reviews-v1": up.address}), header_timeout=0.5
        ) as sc,
    ):
        assert (await fetch(sc.outbound, "/", host="reviews:9080")).status == 200
        await asyncio.sleep(0.1)
        baseline = open_fds()
        for i in range(300):
            if i % 3 == 0:
                data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
            else:  # mutate a valid request: flip, insert and cut bytes
                data = bytearray(rng.choice(seeds))
                for _ in range(rng.randrange(1, 6)):
                    pos = rng.randrange(len(data))
                    choice = rng.randrange(3)
                    if choice == 0:
                        data[pos] = rng.randrange(256)
                    elif choice == 1:
                        data.insert(pos, rng.randrange(256))
                    else:
                        del data[pos:]
                        data += b"\r\n\r\n"
                data = bytes(data)
            reader, writer = await asyncio.open_connection("127.0.0.1", sc.outbound)
            writer.write(data)
            with contextlib.suppress(TimeoutError, ConnectionError):
                await asyncio.wait_for(reader.read(65536), 0.05)
            writer.close()
        assert (await fetch(sc.outbound, "/", host="reviews:9080")).status == 200  # still serving
        assert await settle_fds(baseline) <= baseline
        assert len(sc.sidecar.outbound.connections) == 0
