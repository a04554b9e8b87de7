"""The mtls-migration sample's apps: the client answers the status code it got, or 000 when the
connection failed or was reset (as the task's curl prints); httpbin echoes what the call carried."""

from __future__ import annotations

import asyncio
import socket
import struct
from pathlib import Path

import aiohttp
import pytest
from bookinfo_support import async_test, load_app, serving

APPS = Path(__file__).resolve().parents[2] / "samples" / "mtls-migration" / "apps"


@pytest.fixture(autouse=True)
def no_proxy_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


async def resetting_server() -> tuple[asyncio.Server, int]:
    """Accepts, then resets the connection (RST), as a STRICT sidecar does to a plaintext client."""

    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.close()

    server = await asyncio.start_server(reset, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


@async_test
async def test_the_client_prints_the_status_code_or_000() -> None:
    curl = load_app("curl", APPS).make_app()
    httpbin = load_app("httpbin", APPS).make_app()
    server, reset_port = await resetting_server()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]  # nothing listens once the probe is closed
    async with serving(curl) as client, serving(httpbin) as target, aiohttp.ClientSession() as http:

        async def fetch(url: str) -> tuple[int, str]:
            async with http.get(f"{client}/fetch", params={"url": url}) as answer:
                return answer.status, await answer.text()

        assert await fetch(f"{target}/ip") == (200, "200\n")
        assert await fetch(f"{target}/nope") == (200, "404\n")
        assert await fetch(f"http://127.0.0.1:{reset_port}/ip") == (200, "000\n")  # reset at the connection
        assert await fetch(f"http://127.0.0.1:{closed_port}/ip") == (200, "000\n")  # refused
        assert (await fetch("ftp://example.com/"))[0] == 400
    server.close()
    await server.wait_closed()


@async_test
async def test_httpbin_shows_the_headers_a_call_carried() -> None:
    httpbin = load_app("httpbin", APPS).make_app()
    xfcc = 'By=spiffe://cluster.local/ns/foo/sa/httpbin;Hash=ab;Subject="";URI=spiffe://cluster.local/ns/foo/sa/curl'
    async with serving(httpbin) as target, aiohttp.ClientSession() as http:
        async with http.get(f"{target}/headers", headers={"X-Forwarded-Client-Cert": xfcc}) as answer:
            assert (await answer.json())["headers"]["X-Forwarded-Client-Cert"] == xfcc
        async with http.get(f"{target}/ip") as answer:
            assert await answer.json() == {"origin": "127.0.0.1"}
