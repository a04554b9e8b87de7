"""Helpers for the CONNECT tunnel tests: ServiceEntries and DestinationRules as YAML, a TCP echo
server outside the mesh, a raw CONNECT client, and what the sidecar reports (istio_tcp_* samples,
its TCP access log lines)."""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from dataplane_support import RunningSidecar, compose_for, running_sidecar
from factories import mesh_snapshot
from prometheus_client.parser import text_string_to_metric_families

from sandbox.xds.snapshot import ProxySnapshot

COMPOSE = compose_for(("sleep-v1", "sleep", "v1"), ("reviews-v1", "reviews", "v1"))
REGISTRY_ONLY = COMPOSE + "x-sandbox:\n  outboundTrafficPolicy: {mode: REGISTRY_ONLY}\n"


def service_entry(host: str, port: int, target: int, resolution: str = "STATIC", protocol: str = "TLS") -> str:
    endpoints = f"  endpoints: [{{address: 127.0.0.1, ports: {{tls: {target}}}}}]\n" if resolution == "STATIC" else ""
    return f"""apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {host.split(".")[0]}}}
spec:
  hosts: [{host}]
  location: MESH_EXTERNAL
  resolution: {resolution}
  ports: [{{number: {port}, name: tls, protocol: {protocol}}}]
{endpoints}"""


def connect_timeout(host: str, seconds: float) -> str:
    return f"""apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: {host.split(".")[0]}-timeouts}}
spec:
  host: {host}
  trafficPolicy: {{connectionPool: {{tcp: {{connectTimeout: {seconds}s}}}}}}
"""


def sleep_snapshot(istio: str, compose: str = COMPOSE, addresses: dict[str, str] | None = None) -> ProxySnapshot:
    return mesh_snapshot(compose, istio, "sleep-v1", addresses or {})


def tcp_pool(host: str, settings: str) -> str:
    return f"""apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: {host.split(".")[0]}-pool}}
spec:
  host: {host}
  trafficPolicy: {{connectionPool: {{tcp: {{{settings}}}}}}}
"""


class Echo:
    """A plain TCP server on 127.0.0.1: answers each chunk with `echo:<chunk>`, and its client's FIN
    with `bye` (then closes)."""

    def __init__(self) -> None:
        self.received = b""
        self.eof = asyncio.Event()
        self.connections = 0
        self.writers: list[asyncio.StreamWriter] = []
        self.port = 0
        self.server: asyncio.Server | None = None

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        try:
            while data := await reader.read(65536):
                self.received += data
                writer.write(b"echo:" + data)
            self.eof.set()
            writer.write(b"bye")
            await writer.drain()
        except ConnectionError:
            self.eof.set()
        finally:
            writer.close()

    async def __aenter__(self) -> Echo:
        self.server = await asyncio.start_server(self.serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.transport.abort()
        await self.server.wait_closed()


@asynccontextmanager
async def echo_behind_sidecar(compose: str = COMPOSE) -> AsyncIterator[tuple[Echo, RunningSidecar]]:
    """An Echo server as echo.example.com:7000 (a ServiceEntry, STATIC), and sleep-v1's sidecar."""
    async with Echo() as echo:
        istio = service_entry("echo.example.com", 7000, echo.port, protocol="TCP")
        async with running_sidecar(sleep_snapshot(istio, compose)) as sidecar:
            yield echo, sidecar


async def connect(
    sidecar: RunningSidecar, authority: str, extra: bytes = b""
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    """A raw CONNECT to the sidecar's outbound port: (reader, writer, the response head)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", sidecar.outbound)
    writer.write(f"CONNECT {authority} HTTP/1.1\r\nhost: {authority}\r\nuser-agent: test\r\n\r\n".encode() + extra)
    head = await reader.readuntil(b"\r\n\r\n")
    return reader, writer, head


async def drained(reader: asyncio.StreamReader, seconds: float = 3.0) -> bytes:
    """Everything until the connection closes (bounded)."""
    async with asyncio.timeout(seconds):
        return await reader.read()


async def settled(sidecar: RunningSidecar, seconds: float = 3.0) -> None:
    """Until the sidecar holds no tunnel (open or still flushing)."""
    tunnels = sidecar.sidecar.tunnels
    deadline = time.monotonic() + seconds
    while tunnels.active or any(not relay.closed for _, relay in tunnels.draining):
        assert time.monotonic() < deadline, "a tunnel is still open"
        await asyncio.sleep(0.02)


def tcp_series(sidecar: RunningSidecar) -> dict[str, list[tuple[dict[str, str], float]]]:
    """istio_tcp_* samples by metric name, from the sidecar's Prometheus text."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(sidecar.sidecar.telemetry.prometheus_text()):
        for sample in family.samples:
            if sample.name.startswith("istio_tcp_"):
                out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


def tcp_lines(sidecar: RunningSidecar) -> list[str]:
    return [line for line in sidecar.lines() if '"- - -"' in line]


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (SO_LINGER 0), not a FIN."""
    writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def fill_accept_queue(port: int) -> list[socket.socket]:
    """Connections that fill a listen(0) socket's queue until one hangs (skip where none does)."""
    fillers = []
    for _ in range(8):
        filler = socket.socket()
        filler.settimeout(0.3)
        fillers.append(filler)
        try:
            filler.connect(("127.0.0.1", port))
        except TimeoutError:
            return fillers
    for filler in fillers:
        filler.close()
    pytest.skip("this kernel completes every connect to a full accept queue: nothing hangs")
