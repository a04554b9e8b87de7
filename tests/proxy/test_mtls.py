"""Mutual TLS between two in-process sidecars over real sockets and real TLS.

productpage-v1's sidecar calls reviews-v1's inbound listener, which forwards to a test app. The
certificates come from the mesh CA as the control plane issues them (docs/reference/istio-semantics.md §2).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import random
import re
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from dataplane_support import Client, RunningSidecar, Upstream, compose_for, fetch, running_sidecar, socket_test
from factories import mesh_snapshot
from prometheus_client.parser import text_string_to_metric_families
from test_clienthello import client_hello

from sandbox.control.ca import MeshCA
from sandbox.xds.certificate import WorkloadCertificate

COMPOSE = compose_for(("productpage-v1", "productpage", "v1"), ("reviews-v1", "reviews", "v1"))
PRODUCTPAGE_ID = "spiffe://cluster.local/ns/default/sa/productpage"
REVIEWS_ID = "spiffe://cluster.local/ns/default/sa/reviews"


def peer_auth(mode: str, namespace: str = "default") -> str:
    return f"""apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: default, namespace: {namespace}}}
spec: {{mtls: {{mode: {mode}}}}}
"""


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> MeshCA:
    return MeshCA.load_or_create(tmp_path_factory.mktemp("ca"))


def cert(ca: MeshCA, service_account: str) -> WorkloadCertificate:
    return ca.issue("default", service_account)


@asynccontextmanager
async def mesh_hop(
    ca: MeshCA,
    istio: str = "",
    server_cert: WorkloadCertificate | None = None,
    **server_options: object,
) -> AsyncIterator[tuple[RunningSidecar, RunningSidecar, Upstream]]:
    """(client sidecar, server sidecar, the server's app) under auto mTLS and `istio`."""
    async with Upstream() as app:
        server_snapshot = mesh_snapshot(COMPOSE, istio, "reviews-v1", {}, app_address=app.address, mtls=True)
        async with running_sidecar(server_snapshot, server_cert or cert(ca, "reviews"), **server_options) as server:
            address = {"reviews-v1": f"127.0.0.1:{server.inbound}"}
            client_snapshot = mesh_snapshot(COMPOSE, istio, "productpage-v1", address, mtls=True)
            async with running_sidecar(client_snapshot, cert(ca, "productpage")) as client:
                yield client, server, app


def series(sidecar: RunningSidecar, reporter: str) -> list[dict[str, str]]:
    return [
        s.labels
        for family in text_string_to_metric_families(sidecar.sidecar.telemetry.prometheus_text())
        for s in family.samples
        if s.name == "istio_requests_total" and s.labels["reporter"] == reporter
    ]


def labels(sidecar: RunningSidecar, reporter: str) -> dict[str, str]:
    (found,) = series(sidecar, reporter)
    return found


@socket_test
async def test_sidecars_speak_mutual_tls_and_the_app_sees_the_callers_identity(ca: MeshCA) -> None:
    async with mesh_hop(ca) as (client, server, app):
        # The app's own X-Forwarded-Client-Cert is dropped at its sidecar: only the mTLS hop's element arrives.
        forged = {"x-forwarded-client-cert": "By=x;URI=spiffe://cluster.local/ns/default/sa/admin"}
        response = await fetch(client.outbound, "/r", host="reviews:9080", headers=forged)
        assert response.status == 200
        xfcc = app.requests[0].headers["x-forwarded-client-cert"]
        assert re.fullmatch(f'By={REVIEWS_ID};Hash=[0-9a-f]{{64}};Subject="";URI={PRODUCTPAGE_ID}', xfcc), xfcc
        destination, source = labels(server, "destination"), labels(client, "source")
    assert destination["connection_security_policy"] == "mutual_tls"
    assert (destination["source_principal"], destination["destination_principal"]) == (PRODUCTPAGE_ID, REVIEWS_ID)
    assert (destination["source_workload"], destination["source_app"]) == ("productpage-v1", "productpage")
    assert source["connection_security_policy"] == "unknown"  # Istio: the client side does not say
    assert (source["source_principal"], source["destination_principal"]) == (PRODUCTPAGE_ID, REVIEWS_ID)


@socket_test
async def test_in_plaintext_the_server_believes_no_header_about_the_caller(ca: MeshCA) -> None:
    async with mesh_hop(ca, peer_auth("DISABLE", "istio-system")) as (client, server, app):
        forged = {"x-forwarded-client-cert": "URI=spiffe://cluster.local/ns/default/sa/admin"}
        assert (await fetch(client.outbound, "/r", host="reviews:9080", headers=forged)).status == 200
        assert "x-forwarded-client-cert" not in app.requests[0].headers
        destination = labels(server, "destination")
    assert destination["connection_security_policy"] == "none"
    # The peer metadata header arrived, but nothing vouches for it in plaintext.
    assert (destination["source_workload"], destination["source_principal"]) == ("unknown", "unknown")
    assert destination["destination_principal"] == "unknown"


@socket_test
async def test_strict_resets_a_plaintext_client_and_permissive_serves_it(ca: MeshCA) -> None:
    async with mesh_hop(ca, peer_auth("STRICT")) as (client, server, _app):
        assert (await fetch(client.outbound, "/r", host="reviews:9080")).status == 200  # sidecars: mTLS
        with pytest.raises(ConnectionResetError):  # curl: "Recv failure: Connection reset by peer" (exit 56)
            await fetch(server.inbound, "/direct", host="reviews:9080")
    async with mesh_hop(ca, peer_auth("PERMISSIVE")) as (client, server, _app):
        assert (await fetch(server.inbound, "/direct", host="reviews:9080")).status == 200
        assert (await fetch(client.outbound, "/r", host="reviews:9080")).status == 200
        policies = {(x["connection_security_policy"], x["source_workload"]) for x in series(server, "destination")}
        assert policies == {("none", "unknown"), ("mutual_tls", "productpage-v1")}


@socket_test
async def test_a_tls_client_without_a_mesh_certificate_gets_no_answer(ca: MeshCA, tmp_path: Path) -> None:
    async with mesh_hop(ca) as (_client, server, app):
        ctx = ssl.create_default_context(cadata=ca.root_pem)
        ctx.check_hostname = False
        with pytest.raises((ssl.SSLError, ConnectionError)):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.inbound, ssl=ctx)
            writer.write(b"GET / HTTP/1.1\r\nhost: reviews\r\n\r\n")
            if not await reader.read(1024):
                raise ConnectionError("closed without an answer")
        # Nor does a certificate from another root pass.
        other = MeshCA.load_or_create(tmp_path / "other-ca").issue("default", "productpage")
        snapshot = mesh_snapshot(
            COMPOSE, "", "productpage-v1", {"reviews-v1": f"127.0.0.1:{server.inbound}"}, mtls=True
        )
        async with running_sidecar(snapshot, other) as rogue:
            response = await fetch(rogue.outbound, "/r", host="reviews:9080")
            assert (response.status, rogue.flags()) == (503, ["UF,URX"])  # retried twice, as Istio's default
            assert "TLS_error" in rogue.lines()[0]  # UPSTREAM_TRANSPORT_FAILURE_REASON
        assert app.requests == []


@socket_test
async def test_a_server_with_the_wrong_identity_is_refused_by_its_san(ca: MeshCA) -> None:
    # The server's certificate is from the mesh root, but names a service account reviews does not run as.
    async with mesh_hop(ca, server_cert=cert(ca, "impostor")) as (client, _server, app):
        response = await fetch(client.outbound, "/r", host="reviews:9080")
        assert response.status == 503
        assert b"transport failure reason: TLS_error:|CERTIFICATE_VERIFY_FAILED:TLS_error_end" in response.body
        assert client.flags() == ["UF,URX"]
        assert app.requests == []


@socket_test
async def test_a_rotated_certificate_serves_new_connections_and_open_ones_keep_going(ca: MeshCA) -> None:
    async with mesh_hop(ca) as (client, server, app), Client(client.outbound) as conn:
        assert (await conn.request(target="/1", host="reviews:9080")).status == 200
        first = app.requests[-1].headers["x-forwarded-client-cert"]
        server.sidecar.set_certificate(cert(ca, "reviews"))
        client.sidecar.set_certificate(cert(ca, "productpage"))
        assert (await conn.request(target="/2", host="reviews:9080")).status == 200  # pooled: old certs
        assert app.requests[-1].headers["x-forwarded-client-cert"] == first
        client.sidecar.upstreams.close()  # new connections from here
        assert (await conn.request(target="/3", host="reviews:9080")).status == 200
        assert app.requests[-1].headers["x-forwarded-client-cert"] != first  # the new client cert's hash


@socket_test
async def test_switching_to_strict_drains_plaintext_connections(ca: MeshCA) -> None:
    async with mesh_hop(ca, peer_auth("PERMISSIVE")) as (_client, server, app):
        async with Client(server.inbound) as plain:
            assert (await plain.request(target="/a", host="reviews:9080")).status == 200
            strict = mesh_snapshot(COMPOSE, peer_auth("STRICT"), "reviews-v1", {}, app_address=app.address, mtls=True)
            server.sidecar.update(strict)
            assert await plain.closed()  # idle and now refused: Envoy drains a changed filter chain
        with pytest.raises(ConnectionResetError):
            await fetch(server.inbound, "/b", host="reviews:9080")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@socket_test
async def test_random_and_truncated_client_hellos_neither_crash_nor_hang_nor_leak(ca: MeshCA) -> None:
    rng = random.Random(7)
    hello = client_hello()
    async with mesh_hop(ca, header_timeout=0.3) as (client, server, app):
        before = open_fds()
        payloads = [hello[: rng.randrange(1, len(hello))] for _ in range(40)]
        payloads += [bytes([0x16, 0x03, 0x01]) + rng.randbytes(rng.randrange(0, 300)) for _ in range(40)]
        payloads += [rng.randbytes(rng.randrange(1, 200)) for _ in range(40)]
        payloads += [hello + rng.randbytes(200) for _ in range(10)]  # a whole hello, then garbage for the handshake

        async def send(data: bytes) -> None:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.inbound)
            writer.write(data)
            try:
                async with asyncio.timeout(3):
                    while await reader.read(65536):
                        pass
            except ConnectionError:
                pass
            finally:
                writer.close()

        await asyncio.gather(*(send(p) for p in payloads))  # each ends (the server closes it), none hangs
        await asyncio.sleep(0.1)
        inbound = server.sidecar.inbound
        assert inbound.acceptor is not None and not inbound.acceptor.pending
        assert not inbound.connections
        assert open_fds() <= before
        assert (await fetch(client.outbound, "/still", host="reviews:9080")).status == 200
        assert dataclasses.astuple(app.requests[-1])[1] == "/still"
