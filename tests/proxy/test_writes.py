"""Writes wait for the end of the loop's pass (writes.py): one socket write per connection per pass."""

from __future__ import annotations

import asyncio
from typing import Any

from dataplane_support import socket_test

from sandbox.proxy.writes import Outbox, WriteBatch


class RecordingTransport:
    """The part of asyncio.Transport an outbox uses: each write() is one socket write."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)


def outbox(batch: WriteBatch) -> tuple[Outbox, RecordingTransport]:
    transport = RecordingTransport()
    box = Outbox(batch)
    box.transport = transport  # type: ignore[assignment]
    return box, transport


@socket_test
async def test_writes_of_one_pass_go_out_after_it_one_per_connection() -> None:
    batch = WriteBatch(asyncio.get_running_loop())
    a, to_a = outbox(batch)
    b, to_b = outbox(batch)
    a.write(b"HTTP/1.1 200 OK\r\n\r\n")
    b.write(b"GET / HTTP/1.1\r\n\r\n")
    a.write(b"body")
    assert to_a.writes == [] and to_b.writes == []  # nothing during the pass
    await asyncio.sleep(0)
    assert to_a.writes == [b"HTTP/1.1 200 OK\r\n\r\nbody"]  # one write for the pass
    assert to_b.writes == [b"GET / HTTP/1.1\r\n\r\n"]
    a.write(b"next")
    await asyncio.sleep(0)
    assert to_a.writes[-1] == b"next"  # the next pass queues afresh


@socket_test
async def test_close_sends_what_is_queued_first_unless_told_to_drop_it() -> None:
    batch = WriteBatch(asyncio.get_running_loop())
    reply, to_client = outbox(batch)
    request, to_upstream = outbox(batch)
    reply.write(b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\n\r\n")
    request.write(b"POST / HTTP/1.1\r\ncontent-length: 10\r\n\r\nhalf")
    reply.close(flush=True)  # a downstream close: the answer goes before the FIN
    request.close(flush=False)  # an aborted upstream request: never half of it
    assert to_client.writes == [b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\n\r\n"]
    reply.write(b"late")
    request.write(b"late")
    await asyncio.sleep(0)
    assert to_client.writes == [b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\n\r\n"]
    assert to_upstream.writes == []


@socket_test
async def test_a_write_made_while_the_batch_flushes_goes_out_in_the_next_pass() -> None:
    batch = WriteBatch(asyncio.get_running_loop())
    late, to_late = outbox(batch)

    class WritesOnFlush(RecordingTransport):
        def write(self, data: bytes) -> None:
            super().write(data)
            late.write(b"written by a callback of the flush")

    first = Outbox(batch)
    transport: Any = WritesOnFlush()
    first.transport = transport
    first.write(b"x")
    await asyncio.sleep(0)
    assert transport.writes == [b"x"]
    await asyncio.sleep(0)
    assert to_late.writes == [b"written by a callback of the flush"]


@socket_test
async def test_a_transport_closed_under_us_costs_only_its_own_writes() -> None:
    batch = WriteBatch(asyncio.get_running_loop())

    class Closed(RecordingTransport):
        def write(self, data: bytes) -> None:
            raise RuntimeError("unable to perform operation on <TCPTransport closed=True>; the handler is closed")

    gone = Outbox(batch)
    closed: Any = Closed()
    gone.transport = closed
    alive, to_alive = outbox(batch)
    gone.write(b"to a closed socket")
    alive.write(b"to an open one")
    await asyncio.sleep(0)
    assert to_alive.writes == [b"to an open one"]
    assert gone.closed


@socket_test
async def test_an_unexpected_write_error_is_reported_and_strands_no_other_connection() -> None:
    loop = asyncio.get_running_loop()
    reported: list[BaseException] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context["exception"]))
    batch = WriteBatch(loop)

    class Broken(RecordingTransport):
        def write(self, data: bytes) -> None:
            raise ValueError("a bug in a transport")

    broken = Outbox(batch)
    transport: Any = Broken()
    broken.transport = transport
    first, to_first = outbox(batch)
    first.write(b"before")  # queued ahead of the broken one
    broken.write(b"x")
    last, to_last = outbox(batch)
    last.write(b"after")
    await asyncio.sleep(0)
    assert (to_first.writes, to_last.writes) == ([b"before"], [b"after"])
    assert [type(e) for e in reported] == [ValueError]
    last.write(b"next pass")
    await asyncio.sleep(0)
    assert to_last.writes == [b"after", b"next pass"]


class PausableTransport(RecordingTransport):
    """Records reads paused and resumed too, and answers what a connection asks of its transport."""

    def __init__(self) -> None:
        super().__init__()
        self.reading = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 15001)}.get(name, default)

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


@socket_test
async def test_a_client_that_stopped_reading_holds_back_the_next_upstream_response() -> None:
    """The client's socket buffer filled while nothing was being answered: the next exchange's upstream
    must not read (and pile its response up in the sidecar) until the client drains it."""
    from dataplane_support import compose_for, mesh_snapshot

    from sandbox.proxy.server import DownstreamConnection
    from sandbox.proxy.sidecar import ProxyOptions, Sidecar
    from sandbox.proxy.upstream import Http1Connection

    compose = compose_for(("productpage-v1", "productpage", "v1"), ("reviews-v1", "reviews", "v1"))
    snapshot = mesh_snapshot(compose, "", "productpage-v1", {"reviews-v1": "127.0.0.1:9"})
    options = ProxyOptions(outbound_port=None, inbound_port=None, admin_port=None, stats_port=None, ready_port=None)
    sidecar = Sidecar(snapshot, options)
    state = sidecar.clusters.get("outbound|9080||reviews.default.svc.cluster.local")
    assert state is not None
    pool = sidecar.upstreams.pool(state, state.hosts.hosts[0])
    upstream = Http1Connection(pool, sidecar.writes)
    to_upstream: Any = PausableTransport()
    upstream.connection_made(to_upstream)
    state.breaker.try_connection()
    pool.open += 1
    pool.idle.append(upstream)  # a warm connection, as after earlier requests

    client = DownstreamConnection(sidecar.outbound)
    to_client: Any = PausableTransport()
    client.connection_made(to_client)
    client.pause_writing()  # the transport's buffer is over its high-water mark
    client.data_received(b"GET / HTTP/1.1\r\nhost: reviews:9080\r\n\r\n")
    assert upstream.sink is not None and not to_upstream.reading
    client.resume_writing()
    assert to_upstream.reading
