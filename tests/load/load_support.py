"""A loopback HTTP/1.1 upstream for the load client: scripted answers, counted connections and
in-flight calls, served from its own thread so a blocking caller (the CLI) can drive it."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field


@dataclass
class Reply:
    status: int = 200
    body: bytes = b"ok"
    delay: float = 0.0
    close: bool = False  # Connection: close after this answer
    framing: str = "length"  # length, chunked or close (no length: the body ends with the connection)
    hang: bool = False  # never answer


@dataclass
class Upstream:
    script: Callable[[int, bytes], Reply] = lambda n, head: Reply()  # call number, request head -> reply
    port: int = 0
    connections: int = 0
    calls: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    heads: list[bytes] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                number = self.calls
                self.calls += 1
                self.heads.append(head)
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
                try:
                    reply = self.script(number, head)
                    if reply.hang:
                        await asyncio.sleep(3600)
                    if reply.delay:
                        await asyncio.sleep(reply.delay)
                finally:
                    self.in_flight -= 1
                writer.write(_answer(reply))
                await writer.drain()
                if reply.close or reply.framing == "close":
                    return
        finally:
            writer.close()


def _answer(reply: Reply) -> bytes:
    lines = [f"HTTP/1.1 {reply.status} X"]
    if reply.framing == "length":
        lines.append(f"content-length: {len(reply.body)}")
        body = reply.body
    elif reply.framing == "chunked":
        lines.append("transfer-encoding: chunked")
        body = f"{len(reply.body):x}\r\n".encode() + reply.body + b"\r\n0\r\n\r\n"
    else:
        body = reply.body
    if reply.close or reply.framing == "close":
        lines.append("connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@contextlib.contextmanager
def upstream(script: Callable[[int, bytes], Reply] | None = None) -> Iterator[Upstream]:
    """An Upstream on 127.0.0.1 in a background thread; stopped (connections closed) on exit."""
    up = Upstream(script) if script else Upstream()
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    stop: asyncio.Event | None = None

    async def main() -> None:
        nonlocal stop
        stop = asyncio.Event()
        server = await asyncio.start_server(up.handle, "127.0.0.1", 0)
        up.port = server.sockets[0].getsockname()[1]
        ready.set()
        await stop.wait()
        server.close()
        for task in asyncio.all_tasks():
            if task is not asyncio.current_task():
                task.cancel()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield up
    finally:
        assert stop is not None
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()
