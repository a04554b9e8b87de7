"""TlsStream: TLS over a plain uvloop transport, as the sidecar's TLS connections run it, against
real sockets and OpenSSL on the other end (the stdlib's blocking TLS client, or another TlsStream)."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import threading
import time
from typing import Any, cast

import pytest
from dataplane_support import socket_test

from sandbox.control.ca import MeshCA
from sandbox.proxy.accept import Acceptor
from sandbox.proxy.filterchain import Accepted, FilterChain
from sandbox.proxy.tls import mesh_context
from sandbox.proxy.tlsstream import TlsStream


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> MeshCA:
    return MeshCA.load_or_create(tmp_path_factory.mktemp("ca"))


class App:
    """A protocol above the stream: records what it heard; echoes when asked to."""

    def __init__(self, echo: bool = True) -> None:
        self.echo = echo
        self.transport: Any = None
        self.received = bytearray()
        self.events: list[str] = []
        self.lost: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.events.append("made")

    def data_received(self, data: bytes) -> None:
        self.received += data
        if self.echo:
            self.transport.write(data)

    def eof_received(self) -> bool | None:
        self.events.append("eof")
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.events.append("lost")
        if not self.lost.done():
            self.lost.set_result(exc)

    def pause_writing(self) -> None:
        self.events.append("pause")

    def resume_writing(self) -> None:
        self.events.append("resume")


async def serve(context: ssl.SSLContext) -> tuple[asyncio.Server, list[App], list[asyncio.Future[None]]]:
    loop = asyncio.get_running_loop()
    apps: list[App] = []
    handshakes: list[asyncio.Future[None]] = []

    def made() -> App:
        apps.append(App())
        return apps[-1]

    def stream() -> asyncio.Protocol:
        ready: asyncio.Future[None] = loop.create_future()
        ready.add_done_callback(lambda f: f.exception())  # (retrieved: a failure is what some tests expect)
        handshakes.append(ready)
        return cast(asyncio.Protocol, TlsStream(context, True, None, made, ready))

    server = await loop.create_server(stream, "127.0.0.1", 0)
    return server, apps, handshakes


def port(server: asyncio.Server) -> int:
    return int(server.sockets[0].getsockname()[1])


@socket_test
async def test_a_megabyte_each_way_between_two_streams_with_mutual_tls(ca: MeshCA) -> None:
    server, apps, _ = await serve(mesh_context(ca.issue("default", "reviews"), server_side=True))
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()
    client = App(echo=False)
    context = mesh_context(ca.issue("default", "productpage"), server_side=False)
    stream = TlsStream(context, False, None, lambda: client, ready)
    await loop.create_connection(lambda: cast(asyncio.Protocol, stream), "127.0.0.1", port(server))
    await ready
    body = bytes(range(256)) * 4096  # 1 MiB: many records, and the socket buffers fill
    client.transport.write(body)
    for _ in range(500):
        if len(client.received) >= len(body):
            break
        await asyncio.sleep(0.01)
    assert bytes(client.received) == body and bytes(apps[0].received) == body
    peer = stream.get_extra_info("ssl_object").getpeercert()
    assert ("URI", "spiffe://cluster.local/ns/default/sa/reviews") in peer["subjectAltName"]
    assert stream.get_extra_info("peername")[0] == "127.0.0.1"  # the socket's own, from below
    client.transport.close()  # close_notify: the server's app hears EOF, then the close
    assert await asyncio.wait_for(apps[0].lost, 5) is None
    assert apps[0].events[0] == "made" and apps[0].events[-2:] == ["eof", "lost"]
    assert await asyncio.wait_for(client.lost, 5) is None
    server.close()


def blocking_client(address: int, context: ssl.SSLContext, send: bytes, out: dict[str, Any]) -> None:
    try:
        with socket.create_connection(("127.0.0.1", address), timeout=5) as raw, context.wrap_socket(raw) as tls:
            tls.sendall(send)  # right behind the handshake's Finished
            out["answer"] = tls.recv(65536)
            tls.unwrap()  # our close_notify; then the server's
            out["closed"] = True
    except (OSError, ValueError) as exc:
        out["error"] = exc


@socket_test
async def test_the_first_request_behind_the_handshake_is_read_and_answered(ca: MeshCA) -> None:
    server, apps, _ = await serve(mesh_context(ca.issue("default", "reviews"), server_side=True))
    out: dict[str, Any] = {}
    context = mesh_context(ca.issue("default", "productpage"), server_side=False)
    thread = threading.Thread(target=blocking_client, args=(port(server), context, b"GET / HTTP/1.1\r\n\r\n", out))
    thread.start()
    while thread.is_alive():
        await asyncio.sleep(0.01)
    assert out.get("answer") == b"GET / HTTP/1.1\r\n\r\n" and out.get("closed"), out
    assert await asyncio.wait_for(apps[0].lost, 5) is None
    server.close()


@socket_test
async def test_a_client_of_another_mesh_fails_the_handshake_and_no_app_is_made(
    ca: MeshCA, tmp_path_factory: pytest.TempPathFactory
) -> None:
    server, apps, handshakes = await serve(mesh_context(ca.issue("default", "reviews"), server_side=True))
    other = MeshCA.load_or_create(tmp_path_factory.mktemp("other"))
    out: dict[str, Any] = {}
    context = mesh_context(other.issue("default", "productpage"), server_side=False)
    thread = threading.Thread(target=blocking_client, args=(port(server), context, b"hello", out))
    thread.start()
    while thread.is_alive():
        await asyncio.sleep(0.01)
    assert isinstance(out.get("error"), ssl.SSLError), out
    with pytest.raises(ssl.SSLError):
        await asyncio.wait_for(handshakes[0], 5)
    assert apps == []
    server.close()


def garbage_client(address: int, context: ssl.SSLContext, out: dict[str, Any]) -> None:
    with socket.create_connection(("127.0.0.1", address), timeout=5) as raw, context.wrap_socket(raw) as tls:
        tls.sendall(b"hi")
        out["answer"] = tls.recv(2)
        # Under the TLS layer: a record header claiming 32 bytes of application data, then noise
        os.write(tls.fileno(), b"\x17\x03\x03\x00\x20" + bytes(32))
        try:
            out["after"] = tls.recv(1)
        except OSError as exc:
            out["after"] = exc


@socket_test
async def test_bytes_that_are_not_tls_records_end_the_connection_and_tell_the_app(ca: MeshCA) -> None:
    server, apps, _ = await serve(mesh_context(ca.issue("default", "reviews"), server_side=True))
    out: dict[str, Any] = {}
    context = mesh_context(ca.issue("default", "productpage"), server_side=False)
    thread = threading.Thread(target=garbage_client, args=(port(server), context, out))
    thread.start()
    while thread.is_alive():
        await asyncio.sleep(0.01)
    # The server's stream aborted the connection and says why: not a clean close, so a body that
    # ends with the connection is not taken as whole
    assert isinstance(await asyncio.wait_for(apps[0].lost, 5), ssl.SSLError)
    assert apps[0].events[-1] == "lost" and apps[0].received == b"hi" and out["answer"] == b"hi"
    assert out["after"] == b"" or isinstance(out["after"], OSError)  # no answer: the connection is gone
    server.close()


@socket_test
async def test_a_peer_that_hangs_up_mid_handshake_fails_it(ca: MeshCA) -> None:
    server, apps, handshakes = await serve(mesh_context(ca.issue("default", "reviews"), server_side=True))
    with socket.create_connection(("127.0.0.1", port(server))) as raw:
        raw.sendall(b"\x16\x03\x01\x00\x05")  # the start of a ClientHello, then nothing more
        await asyncio.sleep(0.05)
    with pytest.raises((ConnectionError, ssl.SSLError)):
        await asyncio.wait_for(handshakes[0], 5)
    assert apps == []
    server.close()


class NoChains:
    def select(self, tls: bool, sni: str, port: int) -> FilterChain | None:
        return None


def late_client(address: int, context: ssl.SSLContext, out: dict[str, Any]) -> None:
    try:
        with socket.create_connection(("127.0.0.1", address), timeout=5) as raw:
            time.sleep(0.3)  # the listener closes meanwhile
            with context.wrap_socket(raw) as tls:
                tls.sendall(b"GET / HTTP/1.1\r\n\r\n")
                out["answer"] = tls.recv(100)
    except OSError as exc:
        out["error"] = exc
    out["took"] = time.monotonic() - out["start"]


@socket_test
async def test_a_listener_closing_mid_handshake_closes_that_connection(ca: MeshCA) -> None:
    loop = asyncio.get_running_loop()
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    listening.listen()
    out: dict[str, Any] = {"start": time.monotonic()}
    context = mesh_context(ca.issue("default", "productpage"), server_side=False)
    thread = threading.Thread(target=late_client, args=(listening.getsockname()[1], context, out))
    thread.start()
    sock, _ = await loop.sock_accept(listening)
    apps: list[App] = []

    def made(accepted: Accepted) -> asyncio.Protocol:
        apps.append(App())
        return cast(asyncio.Protocol, apps[-1])

    acceptor = Acceptor(loop, NoChains(), made, timeout=3.0)
    chain = FilterChain(mesh_context(ca.issue("default", "reviews"), server_side=True), mutual=True)
    task = loop.create_task(acceptor._connect(sock, Accepted(chain, "", None), chain.context))
    acceptor.handshakes.add(task)
    await asyncio.sleep(0.05)
    acceptor.close()  # as a snapshot that removes a gateway port does
    while thread.is_alive():
        await asyncio.sleep(0.02)
    listening.close()
    assert task.cancelled() and apps == []
    assert "answer" not in out and out["took"] < 2, out  # told at once, not left to its own timeout
