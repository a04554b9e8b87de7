"""Istio's "Egress TLS Origination" task in-process, over real sockets and real TLS.

The app sends plain HTTP to its sidecar; a ServiceEntry makes the external host known, and a
DestinationRule has the sidecar open TLS to it (SIMPLE, or MUTUAL with a client certificate). The
external server runs outside the mesh on loopback with a certificate from its own CA (tests/pki.py),
which the DestinationRule's `caCertificates` names, since no public CA signs it.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from dataplane_support import RunningSidecar, Upstream, compose_for, fetch, running_sidecar, socket_test
from factories import mesh_snapshot
from pki import Authority, authority, issue

HOST = "external.example.com"
COMPOSE = compose_for(("sleep-v1", "sleep", "v1"))


@pytest.fixture(scope="module")
def external_ca() -> Authority:
    return authority("external CA")


def server_context(secret: Path, client_ca: Path | None = None) -> ssl.SSLContext:
    """The external server's TLS: its certificate, and with `client_ca` it wants a client certificate."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(secret / "tls.crt", secret / "tls.key")
    if client_ca is not None:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cafile=str(client_ca))
    return ctx


def service_entry(port: int, resolution: str = "STATIC", address: str = "127.0.0.1", target: str = "") -> str:
    """`HOST` with ports 80 (HTTP) and 443 (HTTPS), its one endpoint on loopback: the external
    server's ephemeral port is the endpoint's port for `https` (or for `http-port` with `target`,
    the task's port 80 whose targetPort is the TLS port)."""
    mapped = "http-port" if target else "https"
    return f"""apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: external}}
spec:
  hosts: [{HOST}]
  ports:
  - {{number: 80, name: http-port, protocol: HTTP{target}}}
  - {{number: 443, name: https, protocol: HTTPS}}
  resolution: {resolution}
  endpoints: [{{address: {address}, ports: {{{mapped}: {port}}}}}]
"""


REWRITE_PORT = f"""apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: rewrite-port-for-external}}
spec:
  hosts: [{HOST}]
  http:
  - match: [{{port: 80}}]
    route: [{{destination: {{host: {HOST}, port: {{number: 443}}}}}}]
"""


def originate(port: int, tls: str) -> str:
    return f"""apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: originate-tls}}
spec:
  host: {HOST}
  trafficPolicy:
    portLevelSettings:
    - port: {{number: {port}}}
      tls: {tls}
"""


@asynccontextmanager
async def sidecar_to(istio: str, compose: str = COMPOSE) -> AsyncIterator[RunningSidecar]:
    async with running_sidecar(mesh_snapshot(compose, istio, "sleep-v1", {})) as sidecar:
        yield sidecar


@socket_test
async def test_simple_origination_after_a_port_rewrite(external_ca: Authority, tmp_path: Path) -> None:
    secret = issue(external_ca, tmp_path / "server", HOST, dns=(HOST,))
    async with Upstream(tls=server_context(secret)) as external:
        istio = "---\n".join(
            (
                service_entry(external.port),
                REWRITE_PORT,
                originate(443, f"{{mode: SIMPLE, caCertificates: {secret / 'ca.crt'}}}"),
            )
        )
        async with sidecar_to(istio) as sidecar:
            response = await fetch(sidecar.outbound, "/politics", host=HOST)  # plain HTTP from the app
            assert (response.status, response.body) == (200, b"hello from upstream")
            # the request left over TLS, named the host by SNI, and presented no client certificate
            assert [(h.sni, h.client_cert) for h in external.handshakes] == [(HOST, {})]
            assert external.requests[-1].path == "/politics" and external.requests[-1].headers["host"] == HOST
            (line,) = sidecar.lines()
            assert f" outbound|443||{HOST} " in line and '"GET /politics HTTP/1.1" 200 - ' in line


@socket_test
async def test_simple_origination_to_the_target_port_by_dns(external_ca: Authority, tmp_path: Path) -> None:
    """Today's task: no VirtualService; port 80's targetPort is the TLS port, and the rule for port 80
    originates TLS. DNS resolution of `localhost` stands for the external name's lookup."""
    secret = issue(external_ca, tmp_path / "server", HOST, dns=(HOST,))
    async with Upstream(tls=server_context(secret)) as external:
        entry = service_entry(external.port, resolution="DNS", address="localhost", target=", targetPort: 443")
        istio = entry + "---\n" + originate(80, f"{{mode: SIMPLE, caCertificates: {secret / 'ca.crt'}}}")
        async with sidecar_to(istio) as sidecar:
            response = await fetch(sidecar.outbound, "/", host=HOST)
            assert response.status == 200 and [h.sni for h in external.handshakes] == [HOST]
            assert f" outbound|80||{HOST} " in sidecar.lines()[0]


@socket_test
async def test_mutual_origination_presents_the_client_certificate(external_ca: Authority, tmp_path: Path) -> None:
    secret = issue(external_ca, tmp_path / "server", HOST, dns=(HOST,))
    client = issue(external_ca, tmp_path / "client", "client.example.com", dns=("client.example.com",))
    async with Upstream(tls=server_context(secret, client_ca=secret / "ca.crt")) as external:
        tls = (
            f"{{mode: MUTUAL, clientCertificate: {client / 'tls.crt'}, privateKey: {client / 'tls.key'}, "
            f"caCertificates: {secret / 'ca.crt'}, sni: {HOST}}}"
        )
        istio = "---\n".join((service_entry(external.port), REWRITE_PORT, originate(443, tls)))
        async with sidecar_to(istio) as sidecar:
            assert (await fetch(sidecar.outbound, "/", host=HOST)).status == 200
            (handshake,) = external.handshakes
            assert handshake.client_cert["subject"] == ((("commonName", "client.example.com"),),)


@socket_test
async def test_mutual_origination_with_a_credential_name_at_a_selected_sidecar(
    external_ca: Authority, tmp_path: Path
) -> None:
    """credentialName at a sidecar applies when the DestinationRule selects it by workloadSelector
    (Istio's note in the task); the secret is a directory of x-sandbox.secrets."""
    secret = issue(external_ca, tmp_path / "server", HOST, dns=(HOST,))
    client = issue(external_ca, tmp_path / "client-credential", "client.example.com")
    compose = COMPOSE + f"x-sandbox:\n  secrets:\n    client-credential: {client}\n"
    async with Upstream(tls=server_context(secret, client_ca=secret / "ca.crt")) as external:
        rule = originate(443, "{mode: MUTUAL, credentialName: client-credential}").replace(
            "spec:\n", "spec:\n  workloadSelector: {matchLabels: {app: sleep}}\n"
        )
        istio = "---\n".join((service_entry(external.port), REWRITE_PORT, rule))
        async with sidecar_to(istio, compose) as sidecar:
            assert (await fetch(sidecar.outbound, "/", host=HOST)).status == 200
            assert external.handshakes[0].client_cert["subject"] == ((("commonName", "client.example.com"),),)


@pytest.mark.parametrize(
    "tls",
    [
        "{mode: SIMPLE, caCertificates: OTHER_CA}",  # a CA that did not sign the server
        "{mode: SIMPLE, caCertificates: SERVER_CA, subjectAltNames: [other.example.com]}",  # the wrong SAN
        "{mode: SIMPLE, caCertificates: SERVER_CA, sni: other.example.com}",  # the name is not the certificate's
        "{mode: SIMPLE}",  # the system's trust store: no public CA signed it
    ],
)
@socket_test
async def test_a_server_that_cannot_be_verified_fails_with_envoys_reason(
    tls: str, external_ca: Authority, tmp_path: Path
) -> None:
    secret = issue(external_ca, tmp_path / "server", HOST, dns=(HOST,))
    other = authority("someone else").write(tmp_path / "other-ca.crt")
    tls = tls.replace("OTHER_CA", str(other)).replace("SERVER_CA", str(secret / "ca.crt"))
    async with Upstream(tls=server_context(secret)) as external:
        istio = "---\n".join((service_entry(external.port), REWRITE_PORT, originate(443, tls)))
        async with sidecar_to(istio) as sidecar:
            response = await fetch(sidecar.outbound, "/", host=HOST)
            assert response.status == 503
            reason = b"TLS_error:|CERTIFICATE_VERIFY_FAILED:TLS_error_end"
            assert b"transport failure reason: " + reason in response.body
            # UF, and URX: Istio's default retry policy retried the connect failure twice
            assert sidecar.flags() == ["UF,URX"] and f'"{reason.decode()}"' in sidecar.lines()[0]
            assert len(external.server_names) == 3 and external.requests == []  # three hellos, no request


@socket_test
async def test_a_credential_that_cannot_be_found_fails_the_connection(tmp_path: Path) -> None:
    compose = COMPOSE + f"x-sandbox:\n  secrets:\n    elsewhere: {tmp_path}\n"
    rule = originate(443, "{mode: MUTUAL, credentialName: missing}").replace(
        "spec:\n", "spec:\n  workloadSelector: {matchLabels: {app: sleep}}\n"
    )
    async with Upstream() as external:
        istio = "---\n".join((service_entry(external.port), REWRITE_PORT, rule))
        async with sidecar_to(istio, compose) as sidecar:
            response = await fetch(sidecar.outbound, "/", host=HOST)
            assert response.status == 503 and sidecar.flags() == ["UF,URX"]
            assert b"secret 'missing' is not in x-sandbox.secrets (known: elsewhere)" in response.body
            assert external.connections == 0
