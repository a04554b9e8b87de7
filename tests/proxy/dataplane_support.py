"""Sockets for data-path tests: scripted upstream servers, a raw HTTP/1.1 client, sidecars in-process.

Everything listens on 127.0.0.1 ephemeral ports. Snapshots are compiled from Compose + Istio YAML
exactly as the control plane does, with each workload's address pointing at an in-process upstream.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

import httptools
from factories import compose_for, mesh_snapshot

from sandbox.proxy.accesslog import AccessLog
from sandbox.proxy.sidecar import ProxyOptions, Sidecar
from sandbox.proxy.telemetry import Telemetry
from sandbox.xds.certificate import WorkloadCertificate
from sandbox.xds.snapshot import ProxySnapshot

__all__ = ["compose_for", "mesh_snapshot"]  # the factories, where data-path tests have always found them

# --------------------------------------------------------------------------- running tests


def socket_test(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test on uvloop (the loop the sidecar uses), bounded to 25 s."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> None:
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(asyncio.wait_for(fn(*args, **kwargs), 25))

    return run


# --------------------------------------------------------------------------- upstream servers


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes = b""


@dataclass
class Reply:
    status: int = 200
    body: bytes = b"ok"
    headers: tuple[tuple[str, str], ...] = ()
    chunked: bool = False


# A handler returns a Reply, raw bytes to write as they are (garbage), or None to drop the connection.
Handler = Callable[[Received], Awaitable["Reply | bytes | None"]]


async def ok(request: Received) -> Reply:
    return Reply(body=b"hello from upstream")


def serialize(reply: Reply, head_only: bool = False) -> bytes:
    lines = [f"HTTP/1.1 {reply.status} X\r\n"]
    lines += [f"{k}: {v}\r\n" for k, v in reply.headers]
    if reply.chunked:
        lines.append("transfer-encoding: chunked\r\n\r\n")
        head = "".join(lines).encode()
        if head_only:
            return head
        body = b"".join(b"%x\r\n%b\r\n" % (len(p), p) for p in (reply.body[:3], reply.body[3:]) if p)
        return head + body + b"0\r\n\r\n"
    lines.append(f"content-length: {len(reply.body)}\r\n\r\n")
    return "".join(lines).encode() + (b"" if head_only else reply.body)


class _ServerConn(asyncio.Protocol):
    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.queue: asyncio.Queue[Received | None] = asyncio.Queue()
        self.current: Received | None = None
        self.url = b""
        self.task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's are not asyncio.Transport subclasses
        tls = transport.get_extra_info("ssl_object")
        if tls is not None:
            sni = self.upstream.server_names[-1] if self.upstream.server_names else ""
            self.upstream.handshakes.append(Handshake(sni, tls.getpeercert() or {}))
        self.upstream.connections += 1
        self.upstream.open.add(self)
        self.task = asyncio.get_running_loop().create_task(self._serve())

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.upstream.open.discard(self)
        self.queue.put_nowait(None)

    def on_message_begin(self) -> None:
        self.url = b""
        self.current = Received("", "", {})

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self.current is not None
        self.current.headers[name.decode().lower()] = value.decode()

    def on_headers_complete(self) -> None:
        assert self.current is not None
        self.current.method = self.parser.get_method().decode()
        self.current.path = self.url.decode()

    def on_body(self, body: bytes) -> None:
        assert self.current is not None
        self.current.body += body

    def on_message_complete(self) -> None:
        assert self.current is not None
        self.upstream.requests.append(self.current)
        self.queue.put_nowait(self.current)

    async def _serve(self) -> None:
        while True:
            request = await self.queue.get()
            if request is None or self.transport is None or self.transport.is_closing():
                return
            result = await self.upstream.handler(request)
            if self.transport.is_closing():
                return  # the client (the sidecar) went away while the handler ran
            if result is None:
                self.transport.abort()
                return
            if isinstance(result, Reply):
                self.transport.write(serialize(result, head_only=request.method == "HEAD"))
            else:
                self.transport.write(result)
                if b"\r\nconnection: close\r\n" in result.partition(b"\r\n\r\n")[0].lower() + b"\r\n":
                    self.transport.close()  # a close-delimited response ends with the connection


@dataclass
class Handshake:
    """A TLS connection an Upstream accepted: the SNI the client sent and its certificate ({} if none)."""

    sni: str
    client_cert: dict[str, Any]


class Upstream:
    """An HTTP/1.1 server on 127.0.0.1 whose answers a test scripts with `handler`; over TLS with
    `tls` (a server context), as a server outside the mesh would be."""

    def __init__(self, handler: Handler = ok, tls: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.tls = tls
        self.handshakes: list[Handshake] = []
        self.server_names: list[str] = []  # the SNI of each ClientHello
        if tls is not None:
            tls.sni_callback = self._hello
        self.requests: list[Received] = []
        self.connections = 0
        self.open: set[_ServerConn] = set()
        self.server: asyncio.Server | None = None
        self.port = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _hello(self, _tls: ssl.SSLObject, server_name: str | None, _ctx: ssl.SSLContext) -> None:
        self.server_names.append(server_name or "")

    async def __aenter__(self) -> Upstream:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: _ServerConn(self), "127.0.0.1", 0, ssl=self.tls)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            for conn in list(self.open):
                if conn.transport is not None:
                    conn.transport.abort()
                if conn.task is not None:
                    conn.task.cancel()
            await self.server.wait_closed()
            self.server = None


# --------------------------------------------------------------------------- client


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    header_list: list[tuple[str, str]] = field(default_factory=list)


class Client:
    """A raw HTTP/1.1 client connection: exact bytes out, parsed responses in."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> Client:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

    def send(self, data: bytes) -> None:
        assert self.writer is not None
        self.writer.write(data)

    async def request(
        self,
        method: str = "GET",
        target: str = "/",
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
        host: str = "test",
    ) -> Response:
        hdrs = {"host": host, **(headers or {})}
        if body and "transfer-encoding" not in hdrs:
            hdrs["content-length"] = str(len(body))
        head = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
        self.send(head.encode() + body)
        return await self.read_response(head_only=method == "HEAD")

    async def read_response(self, head_only: bool = False) -> Response:
        """One response; ConnectionError if the connection closes before it is complete."""
        assert self.reader is not None
        result: dict[str, object] = {"headers": [], "body": b"", "done": False}

        class Callbacks:
            def on_header(self, name: bytes, value: bytes) -> None:
                result["headers"].append((name.decode().lower(), value.decode()))  # type: ignore[attr-defined]

            def on_headers_complete(self) -> None:
                result["head"] = True

            def on_body(self, body: bytes) -> None:
                result["body"] += body  # type: ignore[operator]

            def on_message_complete(self) -> None:
                result["done"] = True

        parser = httptools.HttpResponseParser(Callbacks())
        while not result["done"]:
            data = await self.reader.read(65536)
            if not data:
                if result.get("head") and not head_only:
                    raise ConnectionError("connection closed mid-response")
                if not result.get("head"):
                    raise ConnectionError("connection closed before a response")
                break
            parser.feed_data(data)
            if head_only and result.get("head"):
                break
        header_list = result["headers"]
        assert isinstance(header_list, list)
        body = result["body"]
        assert isinstance(body, bytes)
        return Response(parser.get_status_code(), dict(header_list), body, header_list)

    async def closed(self, timeout: float = 2.0) -> bool:
        """True when the server closes the connection (EOF) within `timeout` (data before EOF is skipped)."""
        assert self.reader is not None
        try:
            async with asyncio.timeout(timeout):
                while True:
                    data = await self.reader.read(65536)
                    if not data:
                        return True
        except TimeoutError:
            return False
        except ConnectionError:
            return True


async def fetch(port: int, target: str = "/", **kwargs: object) -> Response:
    async with Client(port) as client:
        return await client.request(target=target, **kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- snapshots and sidecars


@dataclass
class RunningSidecar:
    sidecar: Sidecar
    log: list[str]

    @property
    def outbound(self) -> int:
        return self.sidecar.ports["outbound"]

    @property
    def inbound(self) -> int:
        return self.sidecar.ports["inbound"]

    def lines(self) -> list[str]:
        """Access log lines so far (flushes the buffer)."""
        access_log = self.sidecar.telemetry.access_log
        assert access_log is not None
        access_log.flush()
        return [line for chunk in self.log for line in chunk.splitlines()]

    def flags(self) -> list[str]:
        """RESPONSE_FLAGS of each access log line (the field after the status code)."""
        return [line.split('" ', 1)[1].split()[1] for line in self.lines()]


@contextlib.asynccontextmanager
async def running_sidecar(
    snapshot: ProxySnapshot, certificate: WorkloadCertificate | None = None, **options: object
) -> AsyncIterator[RunningSidecar]:
    """A started sidecar; `certificate`: its workload certificate (mTLS), as the agent gives it."""
    log: list[str] = []
    settings: dict[str, object] = {
        "outbound_port": 0,
        "inbound_port": 0,
        "admin_port": None,
        "stats_port": None,
        "ready_port": None,
        "seed": 7,
        **options,
    }
    opts = ProxyOptions(**settings)  # type: ignore[arg-type]
    telemetry = Telemetry(snapshot.identity, access_log=AccessLog(log.append, flush_interval=3600))
    sidecar = Sidecar(snapshot, opts, telemetry=telemetry)
    if certificate is not None:
        sidecar.set_certificate(certificate)
    await sidecar.start()
    try:
        yield RunningSidecar(sidecar, log)
    finally:
        await sidecar.stop()
