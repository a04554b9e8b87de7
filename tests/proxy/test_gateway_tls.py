"""TLS termination at the ingress gateway (Istio's "Secure Gateways" task), over real sockets.

The gateway's Gateway servers name their certificate by `credentialName`, found under the Compose
file's `x-sandbox.secrets` (mesh/secrets.py). Clients are Python's ssl, as `curl --cacert` is.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from dataplane_support import RunningSidecar, Upstream, fetch, running_sidecar, socket_test
from factories import compose_for, mesh_snapshot
from pki import Authority, authority, issue

import sandbox.proxy.sidecar as sidecar_module

HOST = "bookinfo.example.com"


def gateway(mode: str, credential: str = "bookinfo-credential", hosts: str = HOST, redirect: bool = True) -> str:
    http = (
        f"""
  - port: {{number: 80, name: http, protocol: HTTP}}
    tls: {{httpsRedirect: true}}
    hosts: ["{hosts}"]"""
        if redirect
        else ""
    )
    return f"""apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: secure}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 443, name: https, protocol: HTTPS}}
    tls: {{mode: {mode}, credentialName: {credential}}}
    hosts: ["{hosts}"]{http}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews}}
spec:
  hosts: ["{hosts}"]
  gateways: [secure]
  http:
  - route: [{{destination: {{host: reviews, port: {{number: 9080}}}}}}]
"""


def compose(secrets: dict[str, Path]) -> str:
    entries = "".join(f"    {name}: {path}\n" for name, path in secrets.items())
    return compose_for(("reviews-v1", "reviews", "v1")) + f"x-sandbox:\n  secrets:\n{entries}"


@pytest.fixture(scope="module")
def server_ca() -> Authority:
    return authority("example.com CA")


@asynccontextmanager
async def ingress(istio: str, secrets: dict[str, Path]) -> AsyncIterator[tuple[RunningSidecar, Upstream]]:
    async with Upstream() as app:
        snapshot = mesh_snapshot(compose(secrets), istio, "istio-ingressgateway", {"reviews-v1": app.address})
        async with running_sidecar(snapshot, port_map=((80, 0), (443, 0))) as gw:
            yield gw, app


async def https_get(port: int, ca: Path, sni: str | None = HOST, client: Path | None = None) -> tuple[int, bytes]:
    """GET / over TLS as `curl --cacert ca [--cert client]` would; (status, raw response)."""
    ctx = ssl.create_default_context(cafile=str(ca))
    if client is not None:
        ctx.load_cert_chain(client / "tls.crt", client / "tls.key")
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=ctx, server_hostname=sni, ssl_handshake_timeout=5
    )
    try:
        writer.write(f"GET /r HTTP/1.1\r\nhost: {sni or HOST}\r\nconnection: close\r\n\r\n".encode())
        raw = await reader.read()
    finally:
        writer.close()
    if not raw:
        raise ConnectionError("closed without a response")
    return int(raw.split(b" ", 2)[1]), raw


@socket_test
async def test_simple_tls_serves_https_and_redirects_http(server_ca: Authority, tmp_path: Path) -> None:
    secret = issue(server_ca, tmp_path / "bookinfo", HOST, dns=(HOST,))
    async with ingress(gateway("SIMPLE"), {"bookinfo-credential": secret}) as (gw, app):
        status, _ = await https_get(gw.sidecar.ports["gateway.443"], secret / "ca.crt")
        assert status == 200 and app.requests[-1].path == "/r"
        assert app.requests[-1].headers["x-forwarded-proto"] == "https"
        redirect = await fetch(gw.sidecar.ports["gateway.80"], "/r?x=1", host=HOST)
        assert (redirect.status, redirect.headers["location"]) == (301, f"https://{HOST}/r?x=1")
        # A client that does not trust the gateway's CA fails its handshake, as curl without --cacert.
        with pytest.raises(ssl.SSLCertVerificationError):
            await https_get(gw.sidecar.ports["gateway.443"], _other_ca(tmp_path))
        # Plaintext, or a name no server answers: no filter chain, the connection ends at once.
        with pytest.raises(ConnectionError):
            await fetch(gw.sidecar.ports["gateway.443"], "/r", host=HOST)
        with pytest.raises((ConnectionError, ssl.SSLError)):
            await https_get(gw.sidecar.ports["gateway.443"], secret / "ca.crt", sni="other.example.com")


def _other_ca(tmp_path: Path) -> Path:
    return authority("someone else").write(tmp_path / "other-ca.crt")


@socket_test
async def test_mutual_tls_wants_a_client_certificate_from_the_ca(server_ca: Authority, tmp_path: Path) -> None:
    secret = issue(server_ca, tmp_path / "bookinfo", HOST, dns=(HOST,))  # its ca.crt verifies clients too
    client = issue(server_ca, tmp_path / "client", "client.example.com", dns=("client.example.com",))
    stranger = issue(authority("stranger"), tmp_path / "stranger", "stranger")
    async with ingress(gateway("MUTUAL"), {"bookinfo-credential": secret}) as (gw, app):
        port = gw.sidecar.ports["gateway.443"]
        status, _ = await https_get(port, secret / "ca.crt", client=client)
        assert status == 200
        xfcc = app.requests[-1].headers["x-forwarded-client-cert"]  # SANITIZE_SET: the gateway's client
        assert re.fullmatch(r'Hash=[0-9a-f]{64};Subject="CN=client.example.com";DNS=client.example.com', xfcc), xfcc
        for without in (None, stranger):
            with pytest.raises((ssl.SSLError, ConnectionError)):
                await https_get(port, secret / "ca.crt", client=without)
        assert len(app.requests) == 1


@socket_test
async def test_each_host_on_one_port_gets_its_own_certificate_by_sni(server_ca: Authority, tmp_path: Path) -> None:
    a = issue(server_ca, tmp_path / "a", "a.example.com", dns=("a.example.com",))
    b = issue(server_ca, tmp_path / "b", "b.example.com", dns=("b.example.com",))
    istio = (
        gateway("SIMPLE", "cred-a", "a.example.com", redirect=False)
        .replace(
            '    hosts: ["a.example.com"]\n---',
            '    hosts: ["a.example.com"]\n'
            "  - port: {number: 443, name: https-b, protocol: HTTPS}\n"
            "    tls: {mode: SIMPLE, credentialName: cred-b}\n"
            '    hosts: ["b.example.com"]\n---',
        )
        .replace('hosts: ["a.example.com"]\n  gateways', 'hosts: ["a.example.com", "b.example.com"]\n  gateways')
    )
    async with ingress(istio, {"cred-a": a, "cred-b": b}) as (gw, _app):
        port = gw.sidecar.ports["gateway.443"]
        for name in ("a.example.com", "b.example.com"):  # the CA checks that each name got its own certificate
            status, _ = await https_get(port, a / "ca.crt", sni=name)
            assert status == 200, name


@socket_test
async def test_a_credential_that_cannot_be_found_is_reported_and_refuses_handshakes(tmp_path: Path) -> None:
    async with ingress(gateway("SIMPLE", "missing"), {"bookinfo-credential": tmp_path}) as (gw, _app):
        assert any("secret 'missing' is not in x-sandbox.secrets" in p for p in gw.sidecar.tls_problems)
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await https_get(gw.sidecar.ports["gateway.443"], _other_ca(tmp_path))


async def _eventually(check: Callable[[], Awaitable[bool]], seconds: float = 10.0) -> bool:
    deadline = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.1)
    return False


@socket_test
async def test_a_certificate_renewed_on_disk_is_served_without_a_push(
    server_ca: Authority, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sidecar_module, "FILE_POLL", 0.2)
    secret = issue(server_ca, tmp_path / "bookinfo", HOST, dns=(HOST,))
    old_ca = server_ca.write(tmp_path / "old-ca.crt")
    async with ingress(gateway("SIMPLE"), {"bookinfo-credential": secret}) as (gw, _app):
        port = gw.sidecar.ports["gateway.443"]
        assert (await https_get(port, old_ca))[0] == 200
        renewed_by = authority("renewed CA")
        issue(renewed_by, secret, HOST, dns=(HOST,))  # written over the files in place, as cert-manager renews

        async def serves_the_new_one() -> bool:
            try:
                return (await https_get(port, secret / "ca.crt"))[0] == 200
            except (ssl.SSLError, ConnectionError):
                return False

        assert await _eventually(serves_the_new_one)
        with pytest.raises(ssl.SSLCertVerificationError):  # the old certificate is gone for new clients
            await https_get(port, old_ca)
        assert gw.sidecar.tls_problems == []


@socket_test
async def test_a_certificate_half_copied_in_leaves_the_last_good_one_serving(
    server_ca: Authority, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sidecar_module, "FILE_POLL", 0.2)
    secret = issue(server_ca, tmp_path / "bookinfo", HOST, dns=(HOST,))
    async with ingress(gateway("SIMPLE"), {"bookinfo-credential": secret}) as (gw, _app):
        port = gw.sidecar.ports["gateway.443"]
        (secret / "tls.crt").write_bytes(b"-----BEGIN CERTIFICATE-----\nMIIB")  # cut short mid-copy

        async def reported() -> bool:
            return any("keeps the certificate it had" in p for p in gw.sidecar.tls_problems)

        assert await _eventually(reported), gw.sidecar.tls_problems
        assert (await https_get(port, secret / "ca.crt"))[0] == 200
        issue(server_ca, secret, HOST, dns=(HOST,))  # the copy completes

        async def recovered() -> bool:
            return gw.sidecar.tls_problems == []

        assert await _eventually(recovered), gw.sidecar.tls_problems
        assert (await https_get(port, secret / "ca.crt"))[0] == 200
