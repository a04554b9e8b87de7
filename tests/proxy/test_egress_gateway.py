"""Istio's "Egress Gateways" tasks in-process: a sidecar and the built-in istio-egressgateway, both
compiled from the same Compose + Istio YAML, over real sockets (and real TLS where the task has it).

A VirtualService bound to `mesh` and to the egress gateway's Gateway sends the sidecar's request to
the gateway (subset `cnn` of istio-egressgateway.istio-system.svc.cluster.local) and the gateway's
to the external server, which runs outside the mesh on loopback.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from dataplane_support import RunningSidecar, Upstream, compose_for, fetch, running_sidecar, socket_test
from egress_task import EGRESS, egress_gateway_rules
from factories import mesh_snapshot
from pki import Authority, authority, issue
from prometheus_client.parser import text_string_to_metric_families
from test_egress import HOST, server_context, service_entry

from sandbox.control.ca import MeshCA

COMPOSE = compose_for(("sleep-v1", "sleep", "v1"))
GATEWAY_ID = "spiffe://cluster.local/ns/istio-system/sa/istio-egressgateway-service-account"


def egress_rules(gateway_tls: str = "", subset_tls: str = "", external_port: int = 80) -> str:
    return egress_gateway_rules(HOST, gateway_tls=gateway_tls, subset_tls=subset_tls, external_port=external_port)


def originate_at_gateway(tls: str, namespace: str = "default") -> str:
    return f"""apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: originate-tls-for-external, namespace: {namespace}}}
spec:
  host: {HOST}
  trafficPolicy:
    loadBalancer: {{simple: ROUND_ROBIN}}
    portLevelSettings:
    - port: {{number: 443}}
      tls: {tls}
"""


@pytest.fixture(scope="module")
def mesh_ca(tmp_path_factory: pytest.TempPathFactory) -> MeshCA:
    return MeshCA.load_or_create(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def external_ca() -> Authority:
    return authority("external CA")


@asynccontextmanager
async def through_gateway(
    istio: str, ca: MeshCA, compose: str = COMPOSE
) -> AsyncIterator[tuple[RunningSidecar, RunningSidecar]]:
    """(sleep's sidecar, the egress gateway), the sidecar's endpoint for the gateway's port 80 being
    the gateway's listener for its Gateway port 80."""
    gateway_snapshot = mesh_snapshot(compose, istio, "istio-egressgateway", {})
    gateway_cert = ca.issue("istio-system", "istio-egressgateway-service-account")
    async with running_sidecar(gateway_snapshot, gateway_cert, port_map=((80, 0), (443, 0))) as gateway:
        listener = {"istio-egressgateway:80": f"127.0.0.1:{gateway.sidecar.ports['gateway.80']}"}
        snapshot = mesh_snapshot(compose, istio, "sleep-v1", listener)
        async with running_sidecar(snapshot, ca.issue("default", "sleep")) as sidecar:
            yield sidecar, gateway


def one_line(proxy: RunningSidecar) -> str:
    (line,) = proxy.lines()
    return line


def requests_total(proxy: RunningSidecar) -> list[dict[str, str]]:
    """The labels of each istio_requests_total series the proxy exports."""
    text = proxy.sidecar.telemetry.prometheus_text()
    families = text_string_to_metric_families(text)
    return [s.labels for f in families for s in f.samples if s.name == "istio_requests_total"]


@socket_test
async def test_http_through_the_egress_gateway(mesh_ca: MeshCA) -> None:
    async with Upstream() as external:
        istio = service_entry(external.port).replace("{https:", "{http-port:") + "---\n" + egress_rules()
        async with through_gateway(istio, mesh_ca) as (sidecar, gateway):
            response = await fetch(sidecar.outbound, "/politics", host=HOST)
            assert (response.status, response.body) == (200, b"hello from upstream")
            assert f" outbound|80|cnn|{EGRESS} " in one_line(sidecar)  # the sidecar sent it to the gateway
            line = one_line(gateway)  # and the gateway to the external server, in plaintext
            assert '"GET /politics HTTP/1.1" 200 - ' in line and f" outbound|80||{HOST} " in line
            assert f'"{HOST}" "{external.address}" ' in line
            assert external.requests[-1].headers["host"] == HOST and external.handshakes == []


@socket_test
async def test_tls_origination_at_the_egress_gateway(mesh_ca: MeshCA, external_ca: Authority, tmp_path: Path) -> None:
    secret = issue(external_ca, tmp_path / "server", HOST, dns=(HOST,))
    async with Upstream(tls=server_context(secret)) as external:
        istio = "---\n".join(
            (
                service_entry(external.port),
                egress_rules(external_port=443),
                originate_at_gateway(f"{{mode: SIMPLE, caCertificates: {secret / 'ca.crt'}}}"),
            )
        )
        async with through_gateway(istio, mesh_ca) as (sidecar, gateway):
            assert (await fetch(sidecar.outbound, "/politics", host=HOST)).status == 200
            assert f" outbound|443||{HOST} " in one_line(gateway)
            assert [h.sni for h in external.handshakes] == [HOST]  # TLS from the gateway, by its name


@socket_test
async def test_mutual_tls_from_the_sidecar_to_the_gateway(
    mesh_ca: MeshCA, external_ca: Authority, tmp_path: Path
) -> None:
    """The task's variant with `tls: {mode: ISTIO_MUTUAL}` on the Gateway server and on the
    subset: the sidecar reaches the gateway over mutual TLS with SNI `HOST`, the gateway knows the
    caller's SPIFFE ID, then originates TLS to the external server."""
    secret = issue(external_ca, tmp_path / "server", HOST, dns=(HOST,))
    async with Upstream(tls=server_context(secret)) as external:
        rules = egress_rules("{mode: ISTIO_MUTUAL}", f"{{mode: ISTIO_MUTUAL, sni: {HOST}}}", external_port=443)
        istio = "---\n".join(
            (
                service_entry(external.port),
                rules,
                originate_at_gateway(f"{{mode: SIMPLE, caCertificates: {secret / 'ca.crt'}}}"),
            )
        )
        async with through_gateway(istio, mesh_ca) as (sidecar, gateway):
            assert (await fetch(sidecar.outbound, "/politics", host=HOST)).status == 200
            assert f" outbound|443||{HOST} " in one_line(gateway)
            (sent,) = requests_total(sidecar)  # the sidecar's hop went to the gateway's certificate
            assert (sent["destination_workload"], sent["destination_principal"]) == ("istio-egressgateway", GATEWAY_ID)
            (forwarded,) = requests_total(gateway)
            assert (forwarded["source_workload"], forwarded["destination_service"]) == ("istio-egressgateway", HOST)
            assert len(external.handshakes) == 1
        # a plaintext request cannot reach that server: the gateway wants mesh TLS on it
        async with through_gateway(
            istio.replace(f"{{mode: ISTIO_MUTUAL, sni: {HOST}}}", "{mode: DISABLE}"), mesh_ca
        ) as (
            sidecar,
            _,
        ):
            assert (await fetch(sidecar.outbound, "/politics", host=HOST)).status == 503


@socket_test
async def test_mutual_origination_with_a_credential_at_the_gateway(
    mesh_ca: MeshCA, external_ca: Authority, tmp_path: Path
) -> None:
    """The gateway's DestinationRule (in istio-system, as the task applies it) names the client
    certificate by credentialName; the control plane resolves it to the secret's files."""
    secret = issue(external_ca, tmp_path / "server", HOST, dns=(HOST,))
    client = issue(external_ca, tmp_path / "client-credential", "client.example.com")
    compose = COMPOSE + f"x-sandbox:\n  secrets:\n    client-credential: {client}\n"
    async with Upstream(tls=server_context(secret, client_ca=secret / "ca.crt")) as external:
        tls = f"{{mode: MUTUAL, credentialName: client-credential, sni: {HOST}}}"
        istio = "---\n".join(
            (service_entry(external.port), egress_rules(external_port=443), originate_at_gateway(tls, "istio-system"))
        )
        async with through_gateway(istio, mesh_ca, compose) as (sidecar, gateway):
            assert (await fetch(sidecar.outbound, "/", host=HOST)).status == 200
            assert external.handshakes[0].client_cert["subject"] == ((("commonName", "client.example.com"),),)
            policy = gateway.sidecar.snapshot.clusters_by_name[f"outbound|443||{HOST}"].traffic_policy.tls
            assert (policy.credential_name, policy.private_key) == ("client-credential", str(client / "tls.key"))
            assert "PRIVATE KEY" not in gateway.sidecar.snapshot.to_json()  # paths, never key material


@socket_test
async def test_without_a_gateway_resource_the_egress_gateway_listens_on_nothing(mesh_ca: MeshCA) -> None:
    async with Upstream() as external:
        istio = service_entry(external.port) + "---\n" + egress_rules().split("---\n", 1)[1]  # no Gateway
        gateway_snapshot = mesh_snapshot(COMPOSE, istio, "istio-egressgateway", {})
        assert gateway_snapshot.route_configs == ()
        async with running_sidecar(gateway_snapshot, port_map=((80, 0), (443, 0))) as gateway:
            assert not any(name.startswith("gateway.") for name in gateway.sidecar.ports)
