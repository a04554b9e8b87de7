"""HTTPS from an app through its sidecar's outbound listener as HTTPS_PROXY: CONNECT tunnels over
real sockets, real TLS end to end to a server outside the mesh, under the mesh's egress rules.

The external server runs on 127.0.0.1 with a certificate for external.example.com from a test CA
(tests/pki.py); a ServiceEntry with resolution STATIC points that host at it, so the client's TLS
(SNI, certificate check) is the real thing while the sidecar only relays bytes.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from dataplane_support import Upstream, running_sidecar, socket_test
from factories import mesh_snapshot
from pki import authority, issue
from tunnel_support import (
    COMPOSE,
    REGISTRY_ONLY,
    Echo,
    connect,
    connect_timeout,
    drained,
    echo_behind_sidecar,
    service_entry,
    settled,
    sleep_snapshot,
    tcp_lines,
    tcp_series,
)

from sandbox.control.ca import MeshCA

PAGE = b"<h1>external, over TLS</h1>"


# --------------------------------------------------------------------------- servers outside the mesh


@pytest.fixture(scope="module")
def server_tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, Path]:
    """(the server's context for external.example.com, the CA file a client trusts)."""
    directory = tmp_path_factory.mktemp("external")
    ca = authority("external test CA")
    issue(ca, directory, "external.example.com", dns=("external.example.com",))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(directory / "tls.crt", directory / "tls.key")
    return context, directory / "ca.crt"


@asynccontextmanager
async def https_server(context: ssl.SSLContext) -> AsyncIterator[list[str]]:
    """An HTTPS server on 127.0.0.1 answering every request with PAGE; yields [its port as text,
    then each request line it served]."""
    seen: list[str] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            seen.append(head.split(b"\r\n", 1)[0].decode())
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%b" % (len(PAGE), PAGE))
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=context)
    seen.append(str(server.sockets[0].getsockname()[1]))
    try:
        yield seen
    finally:
        server.close()
        await server.wait_closed()


# --------------------------------------------------------------------------- end to end with real TLS


@socket_test
async def test_an_https_client_with_https_proxy_gets_the_page_with_real_tls(
    server_tls: tuple[ssl.SSLContext, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    context, ca_file = server_tls
    async with https_server(context) as seen:
        istio = service_entry("external.example.com", 443, int(seen[0]))
        async with running_sidecar(sleep_snapshot(istio)) as sidecar:
            # As an app in proxy mode: urllib reads HTTPS_PROXY from the environment
            for name in ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "NO_PROXY"):
                monkeypatch.delenv(name, raising=False)
            monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{sidecar.outbound}")
            client_context = ssl.create_default_context(cafile=str(ca_file))
            opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=client_context))

            def get() -> tuple[int, bytes]:
                with opener.open("https://external.example.com/page", timeout=10) as response:
                    return response.status, response.read()

            assert await asyncio.to_thread(get) == (200, PAGE)
            await settled(sidecar)
            (line,) = tcp_lines(sidecar)
            metrics = tcp_series(sidecar)
    assert seen[1:] == ["GET /page HTTP/1.1"]
    # Envoy's TCP proxy line in Istio's format: bytes both ways, the endpoint, the cluster, the SNI
    fields = re.match(
        r'\[\S+\] "- - -" 0 - - - "-" (\d+) (\d+) (\d+) - "-" "-" "-" "external.example.com:443" '
        r'"127.0.0.1:(\d+)" outbound\|443\|\|external.example.com 127.0.0.1:\d+ 127.0.0.1:\d+ 127.0.0.1:\d+ '
        r"external.example.com -$",
        line,
    )
    assert fields is not None, line
    received, sent, _, port = (int(v) for v in fields.groups())
    assert port == int(seen[0]) and received > 200 and sent > len(PAGE)  # handshakes and the page, encrypted
    (opened,) = metrics["istio_tcp_connections_opened_total"]
    (closed,) = metrics["istio_tcp_connections_closed_total"]
    assert opened[1] == closed[1] == 1
    labels = closed[0]
    assert labels["request_protocol"] == "tcp" and labels["reporter"] == "source"
    assert (labels["source_workload"], labels["source_app"]) == ("sleep-v1", "sleep")
    assert labels["destination_service"] == "external.example.com"
    assert labels["destination_workload"] == "127.0.0.1"  # a ServiceEntry endpoint: its address
    assert "response_code" not in labels and labels["response_flags"] == "-"
    by_name = {name: sum(v for _, v in samples) for name, samples in metrics.items()}
    assert by_name["istio_tcp_received_bytes_total"] == received
    assert by_name["istio_tcp_sent_bytes_total"] == sent


@socket_test
async def test_a_raw_connect_gets_200_then_tls_to_the_server(server_tls: tuple[ssl.SSLContext, Path]) -> None:
    context, ca_file = server_tls
    client_context = ssl.create_default_context(cafile=str(ca_file))
    async with https_server(context) as seen:
        istio = service_entry("external.example.com", 443, int(seen[0]))
        async with running_sidecar(sleep_snapshot(istio)) as sc:
            reader, writer, head = await connect(sc, "external.example.com:443")
            assert head.startswith(b"HTTP/1.1 200 OK\r\n")
            assert b"content-length" not in head.lower() and b"transfer-encoding" not in head.lower()
            await writer.start_tls(client_context, server_hostname="external.example.com")
            writer.write(b"GET /raw HTTP/1.1\r\nhost: external.example.com\r\n\r\n")
            assert (await drained(reader)).endswith(PAGE)
            writer.close()
            await settled(sc)
    assert seen[1:] == ["GET /raw HTTP/1.1"]


# --------------------------------------------------------------------------- egress control


@socket_test
async def test_registry_only_refuses_an_unknown_host_with_502_and_logs_the_blackhole() -> None:
    async with Echo() as echo, running_sidecar(sleep_snapshot("", REGISTRY_ONLY)) as sidecar:
        reader, writer, head = await connect(sidecar, f"127.0.0.1:{echo.port}", extra=b"early bytes")
        assert head.startswith(b"HTTP/1.1 502 ")
        assert await drained(reader) == b""  # then closed
        writer.close()
        await settled(sidecar)
        (line,) = tcp_lines(sidecar)
        metrics = tcp_series(sidecar)
    assert echo.connections == 0 and echo.received == b""
    # (the 11 early bytes came with the head, and were dropped)
    expected = rf'"- - -" 0 UH - - "-" 11 0 \d+ - "-" "-" "-" "127.0.0.1:{echo.port}" "-" BlackHoleCluster '
    assert re.search(expected, line), line
    assert sum(v for _, v in metrics["istio_tcp_connections_opened_total"]) == 0  # nothing was ever connected
    ((labels, value),) = metrics["istio_tcp_connections_closed_total"]
    assert value == 1 and labels["destination_service_name"] == "BlackHoleCluster"
    assert labels["response_flags"] == "UH"


@socket_test
async def test_registry_only_tunnels_a_service_entry_host_and_allow_any_passes_an_unknown_one() -> None:
    async with echo_behind_sidecar(REGISTRY_ONLY) as (echo, sidecar):
        reader, writer, head = await connect(sidecar, "echo.example.com:7000")
        assert head.startswith(b"HTTP/1.1 200 OK")
        writer.write(b"hi")
        assert await reader.readexactly(7) == b"echo:hi"
        writer.close()
        _, writer, head = await connect(sidecar, "other.example.com:7000")  # the same port, another host
        assert head.startswith(b"HTTP/1.1 502 ")
        writer.close()
        async with running_sidecar(sleep_snapshot("")) as sidecar:  # ALLOW_ANY: PassthroughCluster
            reader, writer, head = await connect(sidecar, f"127.0.0.1:{echo.port}")
            assert head.startswith(b"HTTP/1.1 200 OK")
            writer.write(b"there")
            assert await reader.readexactly(10) == b"echo:there"
            writer.close()
            await settled(sidecar)
            (line,) = tcp_lines(sidecar)
            ((labels, _),) = tcp_series(sidecar)["istio_tcp_connections_opened_total"]
    assert f'"127.0.0.1:{echo.port}" PassthroughCluster ' in line
    assert (labels["destination_service_name"], labels["destination_service"]) == ("PassthroughCluster", "127.0.0.1")


@socket_test
async def test_a_mesh_service_is_reached_by_its_short_name_through_the_tunnel() -> None:
    async with Upstream() as reviews:
        snapshot = sleep_snapshot("", addresses={"reviews-v1": reviews.address})
        async with running_sidecar(snapshot) as sidecar:
            reader, writer, head = await connect(sidecar, "reviews:9080")
            assert head.startswith(b"HTTP/1.1 200 OK")
            writer.write(b"GET /inside HTTP/1.1\r\nhost: reviews\r\n\r\n")
            async with asyncio.timeout(3):
                assert (await reader.readuntil(b"hello from upstream")).startswith(b"HTTP/1.1 200 ")
            writer.close()
            await settled(sidecar)
            ((labels, _),) = tcp_series(sidecar)["istio_tcp_connections_closed_total"]
    assert reviews.requests[0].path == "/inside"
    assert labels["destination_service"] == "reviews.default.svc.cluster.local"
    assert (labels["destination_workload"], labels["destination_version"]) == ("reviews-v1", "v1")


@socket_test
async def test_a_tunnel_to_a_mesh_service_is_mutual_tls_as_auto_mtls_says(tmp_path: Path) -> None:
    ca = MeshCA.load_or_create(tmp_path)
    async with Upstream() as app:
        server_snapshot = mesh_snapshot(COMPOSE, "", "reviews-v1", {}, app_address=app.address, mtls=True)
        async with running_sidecar(server_snapshot, ca.issue("default", "reviews")) as server:
            address = {"reviews-v1": f"127.0.0.1:{server.inbound}"}
            client_snapshot = mesh_snapshot(COMPOSE, "", "sleep-v1", address, mtls=True)
            async with running_sidecar(client_snapshot, ca.issue("default", "sleep")) as client:
                reader, writer, head = await connect(client, "reviews:9080")
                assert head.startswith(b"HTTP/1.1 200 OK")
                writer.write(b"GET /over-mtls HTTP/1.1\r\nhost: reviews:9080\r\n\r\n")
                async with asyncio.timeout(3):
                    assert (await reader.readuntil(b"hello from upstream")).startswith(b"HTTP/1.1 200 ")
                writer.close()
                await settled(client)
                ((labels, _),) = tcp_series(client)["istio_tcp_connections_closed_total"]
    # the server's sidecar terminated mutual TLS: the app sees the tunnel's client identity
    assert "URI=spiffe://cluster.local/ns/default/sa/sleep" in app.requests[0].headers["x-forwarded-client-cert"]
    assert labels["source_principal"] == "spiffe://cluster.local/ns/default/sa/sleep"
    assert labels["destination_principal"] == "spiffe://cluster.local/ns/default/sa/reviews"


@socket_test
async def test_resolution_none_connects_to_the_requested_address() -> None:
    host = "external.sandbox-test.invalid"  # never resolves: the failure names where it went
    istio = service_entry(host, 443, 0, resolution="NONE") + "---\n" + connect_timeout(host, 2)
    async with running_sidecar(sleep_snapshot(istio)) as sidecar:
        reader, writer, head = await connect(sidecar, f"{host}:443")
        assert head.startswith(b"HTTP/1.1 503 ")
        assert (await drained(reader)).endswith(b"reset reason: connection failure")
        writer.close()
        await settled(sidecar)
        (line,) = tcp_lines(sidecar)
    assert f'"{host}:443" outbound|443||{host} ' in line and '"- - -" 0 UF ' in line
