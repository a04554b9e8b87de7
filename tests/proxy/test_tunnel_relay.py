"""CONNECT tunnels as byte relays: pipelined bytes, half-close, resets, back-pressure, hostile
input, a server that never answers, and time (byte reports, the TCP idle timeout, the maximum
connection duration). Real sockets; the upstream is a TCP echo server outside the mesh."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import time

import pytest
from dataplane_support import Upstream, fetch, running_sidecar, socket_test
from tunnel_support import (
    REGISTRY_ONLY,
    Echo,
    connect,
    connect_timeout,
    drained,
    echo_behind_sidecar,
    fill_accept_queue,
    reset,
    service_entry,
    settled,
    sleep_snapshot,
    tcp_lines,
    tcp_pool,
    tcp_series,
)

# --------------------------------------------------------------------------- the relay


@socket_test
async def test_bytes_pipelined_after_the_connect_head_reach_the_upstream_after_the_200() -> None:
    async with echo_behind_sidecar() as (echo, sc):
        reader, writer, head = await connect(sc, "echo.example.com:7000", extra=b"too early")
        assert head.startswith(b"HTTP/1.1 200 OK")  # the answer comes before any byte of the upstream's
        assert await reader.readexactly(14) == b"echo:too early"
        writer.close()
        await settled(sc)
    assert echo.received == b"too early"


@socket_test
async def test_half_close_passes_the_fin_and_the_answer_still_comes_back() -> None:
    async with echo_behind_sidecar() as (echo, sc):
        reader, writer, _ = await connect(sc, "echo.example.com:7000")
        writer.write(b"last words")
        writer.write_eof()
        assert await drained(reader) == b"echo:last wordsbye"  # the upstream saw our FIN, answered, closed
        writer.close()
        await settled(sc)
        (line,) = tcp_lines(sc)
    assert echo.eof.is_set()
    assert re.search(r'"- - -" 0 - - - "-" 10 18 ', line), line


@socket_test
async def test_a_client_that_closes_mid_tunnel_closes_the_upstream_and_is_logged() -> None:
    async with echo_behind_sidecar() as (echo, sc):
        reader, writer, _ = await connect(sc, "echo.example.com:7000")
        writer.write(b"x" * 1000)
        await reader.readexactly(1005)
        reset(writer)  # mid-tunnel
        async with asyncio.timeout(3):
            await echo.eof.wait()
        await settled(sc)
        (line,) = tcp_lines(sc)
        ((_, closed),) = tcp_series(sc)["istio_tcp_connections_closed_total"]
    assert closed == 1 and re.search(r'"- - -" 0 - - - "-" 1000 1005 ', line), line


@socket_test
async def test_a_slow_client_pauses_the_upstream_instead_of_filling_memory() -> None:
    total = 64 << 20
    progress = {"written": 0}

    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        chunk = b"z" * (1 << 20)
        try:
            while progress["written"] < total:
                writer.write(chunk)
                await writer.drain()
                progress["written"] += len(chunk)
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(flood, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        istio = service_entry("flood.example.com", 7000, port, protocol="TCP")
        async with running_sidecar(sleep_snapshot(istio)) as sc:
            reader, writer, _ = await connect(sc, "flood.example.com:7000")
            await reader.readexactly(1 << 20)
            await asyncio.sleep(0.5)  # the client reads nothing for a while
            stalled = progress["written"]
            await asyncio.sleep(0.3)
            assert progress["written"] == stalled < total  # the server waits on a full pipe
            got = 1 << 20
            async with asyncio.timeout(20):
                while data := await reader.read(1 << 20):
                    got += len(data)
            assert got == total  # nothing lost once the client reads again
            writer.close()
            await settled(sc)
    finally:
        server.close()
        await server.wait_closed()


# --------------------------------------------------------------------------- hostile input and failures


@pytest.mark.parametrize(
    "authority",
    ["garbage", "example.com", "example.com:0", "example.com:99999", "example.com:-1", "exa mple.com:443",
     ":443", "[::1:443", "a..b:443", "http://example.com/", "example.com:443:443", "x" * 300 + ":443"],
)  # fmt: skip
@socket_test
async def test_a_connect_with_a_garbage_authority_gets_400_and_the_sidecar_carries_on(authority: str) -> None:
    async with Upstream() as reviews:
        snapshot = sleep_snapshot("", addresses={"reviews-v1": reviews.address})
        async with running_sidecar(snapshot) as sidecar:
            reader, writer = await asyncio.open_connection("127.0.0.1", sidecar.outbound)
            writer.write(f"CONNECT {authority} HTTP/1.1\r\nhost: x\r\n\r\n".encode())
            response = await drained(reader)
            assert response.startswith(b"HTTP/1.1 400 ") and b"connection: close" in response.lower()
            writer.close()
            assert not sidecar.sidecar.tunnels.active
            assert (await fetch(sidecar.outbound, "/after", host="reviews:9080")).status == 200


@socket_test
async def test_a_server_that_never_answers_costs_the_connect_timeout_then_503_uf() -> None:
    with socket.socket() as silent:  # a full accept queue: the kernel drops further SYNs, so connects hang
        silent.bind(("127.0.0.1", 0))
        silent.listen(0)
        port = silent.getsockname()[1]
        fillers = fill_accept_queue(port)
        try:
            istio = service_entry("silent.example.com", 7000, port, protocol="TCP")
            istio += "---\n" + connect_timeout("silent.example.com", 0.5)
            async with running_sidecar(sleep_snapshot(istio)) as sidecar:
                started = time.monotonic()
                reader, writer, head = await connect(sidecar, "silent.example.com:7000")
                waited = time.monotonic() - started
                assert head.startswith(b"HTTP/1.1 503 ")
                assert (await drained(reader)).endswith(b"reset reason: connection failure")
                writer.close()
                await settled(sidecar)
                (line,) = tcp_lines(sidecar)
        finally:
            for filler in fillers:
                filler.close()
    assert 0.4 < waited < 3.0
    assert '"- - -" 0 UF ' in line and f'"127.0.0.1:{port}" outbound|7000||silent.example.com' in line


@socket_test
async def test_a_connect_pipelined_behind_a_request_waits_for_its_answer() -> None:
    async with Echo() as echo, Upstream() as reviews:
        istio = service_entry("echo.example.com", 7000, echo.port, protocol="TCP")
        snapshot = sleep_snapshot(istio, addresses={"reviews-v1": reviews.address})
        async with running_sidecar(snapshot) as sidecar:
            reader, writer = await asyncio.open_connection("127.0.0.1", sidecar.outbound)
            writer.write(
                b"GET /first HTTP/1.1\r\nhost: reviews:9080\r\n\r\n"
                b"CONNECT echo.example.com:7000 HTTP/1.1\r\nhost: echo.example.com:7000\r\n\r\nping"
            )
            first = await reader.readuntil(b"hello from upstream")
            assert first.startswith(b"HTTP/1.1 200 OK")
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 OK")
            assert await reader.readexactly(9) == b"echo:ping"
            writer.close()
            await settled(sidecar)


@socket_test
async def test_many_hostile_tunnels_leave_nothing_open() -> None:
    async with Echo() as echo:
        istio = service_entry("echo.example.com", 7000, echo.port, protocol="TCP")
        async with running_sidecar(sleep_snapshot(istio, REGISTRY_ONLY)) as sidecar:
            before = len(os.listdir("/proc/self/fd"))

            async def one(i: int) -> None:
                reader, writer = await asyncio.open_connection("127.0.0.1", sidecar.outbound)
                target = ["echo.example.com:7000", "nope.example.com:443", "bad"][i % 3]
                writer.write(f"CONNECT {target} HTTP/1.1\r\n\r\n".encode() + os.urandom(i % 50))
                if i % 2:
                    writer.transport.abort()  # gone before any answer
                    return
                with contextlib.suppress(ConnectionError, TimeoutError):
                    async with asyncio.timeout(2):
                        await reader.read(100)
                writer.transport.abort()

            await asyncio.gather(*(one(i) for i in range(60)))
            await settled(sidecar)
            await asyncio.sleep(0.1)
            assert len(os.listdir("/proc/self/fd")) <= before
            assert not sidecar.sidecar.outbound.connections
            # every tunnel the sidecar saw is logged: the 20 answered ones at least (bad authorities are 400s)
            assert 20 <= len(tcp_lines(sidecar)) <= 40


# --------------------------------------------------------------------------- time: reports, idle timeout, duration


@socket_test
async def test_bytes_are_reported_while_the_tunnel_is_open() -> None:
    async with echo_behind_sidecar() as (_, sc):
        sc.sidecar.tunnels.report_interval = sc.sidecar.tunnels.sweep_interval = 0.1  # Istio: every 5 s
        reader, writer, _ = await connect(sc, "echo.example.com:7000")
        writer.write(b"12345")
        await reader.readexactly(10)
        await asyncio.sleep(0.4)
        metrics = {name: sum(v for _, v in samples) for name, samples in tcp_series(sc).items()}
        assert sc.sidecar.tunnels.active  # still open
        assert metrics["istio_tcp_received_bytes_total"] == 5 and metrics["istio_tcp_sent_bytes_total"] == 10
        assert metrics["istio_tcp_connections_closed_total"] == 0
        writer.close()
        await settled(sc)
        metrics = {name: sum(v for _, v in samples) for name, samples in tcp_series(sc).items()}
    assert metrics["istio_tcp_received_bytes_total"] == 5 and metrics["istio_tcp_connections_closed_total"] == 1


@socket_test
async def test_an_idle_tunnel_closes_after_the_tcp_idle_timeout() -> None:
    async with Echo() as echo:
        istio = service_entry("echo.example.com", 7000, echo.port, protocol="TCP")
        istio += "---\n" + tcp_pool("echo.example.com", "idleTimeout: 0.5s")
        async with running_sidecar(sleep_snapshot(istio)) as sc:
            sc.sidecar.tunnels.sweep_interval = 0.1
            reader, writer, _ = await connect(sc, "echo.example.com:7000")
            for _ in range(4):  # traffic keeps it open past the timeout
                await asyncio.sleep(0.25)
                writer.write(b"a")
                await reader.readexactly(6)
            started = time.monotonic()
            assert await drained(reader) == b""  # then quiet: closed
            assert 0.4 < time.monotonic() - started < 2.0
            writer.close()
            await settled(sc)
            (line,) = tcp_lines(sc)
    assert '"- - -" 0 - - - "-" 4 24 ' in line


@socket_test
async def test_a_tunnel_ends_at_the_max_connection_duration_with_flag_dt() -> None:
    async with Echo() as echo:
        istio = service_entry("echo.example.com", 7000, echo.port, protocol="TCP")
        istio += "---\n" + tcp_pool("echo.example.com", "maxConnectionDuration: 0.5s")
        async with running_sidecar(sleep_snapshot(istio)) as sc:
            sc.sidecar.tunnels.sweep_interval = 0.1
            reader, writer, _ = await connect(sc, "echo.example.com:7000")
            started = time.monotonic()
            with contextlib.suppress(ConnectionError):
                async with asyncio.timeout(3):
                    while not reader.at_eof():  # busy all along
                        writer.write(b"b")
                        await reader.read(100)
                        await asyncio.sleep(0.05)
            assert 0.4 < time.monotonic() - started < 2.0
            writer.close()
            await settled(sc)
            (line,) = tcp_lines(sc)
    assert '"- - -" 0 DT ' in line
