"""compile() for egress: the built-in istio-egressgateway as a service sidecars route to and as a
router Gateways select, and DestinationRule TLS origination with `credentialName` resolved to files.

Istio's rules: the egress gateway's Service maps port 80 to 8080 and 443 to 8443 (demo profile);
gateways carry no `tlsMode: istio` label, so auto mTLS sends them plaintext; `credentialName` in a
DestinationRule applies at gateways, and at sidecars only when the rule has a workloadSelector.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from egress_task import EGRESS, egress_gateway_rules
from factories import compose_for, mesh_state
from pki import authority, issue

from sandbox.control.compile import compile as compile_snapshot
from sandbox.control.compile_clusters import endpoints_from_mapping
from sandbox.control.plane import node_endpoints, parse_endpoints
from sandbox.mesh.analysis import analyze
from sandbox.xds.snapshot import Cluster, ProxySnapshot, TLSSettings

COMPOSE = compose_for(("sleep-v1", "sleep", "v1"))
HOST = "edition.cnn.com"

SERVICE_ENTRY = f"""apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: cnn}}
spec:
  hosts: [{HOST}]
  ports:
  - {{number: 80, name: http-port, protocol: HTTP}}
  - {{number: 443, name: https, protocol: HTTPS}}
  resolution: DNS
"""
# Istio's "Egress Gateways" task, as written there
TASK = f"{SERVICE_ENTRY}---\n" + egress_gateway_rules(HOST)


def cluster(snapshot: ProxySnapshot, name: str) -> Cluster:
    found = snapshot.cluster(name)
    assert found is not None, name
    return found


def route_clusters(snapshot: ProxySnapshot, port: int, vhost: str) -> list[str]:
    config = snapshot.route_config(port)
    assert config is not None
    (host,) = [vh for vh in config.virtual_hosts if vh.name == vhost]
    return [wc.cluster for route in host.routes for wc in route.clusters]


def test_sidecars_see_the_egress_gateway_service_at_its_target_ports() -> None:
    snapshot = compile_snapshot(mesh_state(COMPOSE), "sleep-v1")
    for port, target in ((80, 8080), (443, 8443)):
        found = cluster(snapshot, f"outbound|{port}||{EGRESS}")
        assert [e.address for e in found.endpoints] == [f"istio-egressgateway:{target}"]
        assert found.traffic_policy.tls == TLSSettings(
            mode="DISABLE", auto=True, subject_alt_names=found.traffic_policy.tls.subject_alt_names
        )
        assert not found.endpoints[0].mtls  # a gateway has no tlsMode=istio label: auto mTLS is plaintext
    assert route_clusters(snapshot, 80, f"{EGRESS}:80") == [f"outbound|80||{EGRESS}"]
    assert snapshot.route_config(443) is None  # the gateway's https port is not HTTP for a sidecar


def test_each_runtime_addresses_the_gateway_listener_of_each_service_port() -> None:
    state = mesh_state(COMPOSE, TASK)
    # compose: the gateway container's targetPort; sidecars by their inbound port
    snapshot = compile_snapshot(state, "sleep-v1", node_endpoints(15006))
    assert [e.address for e in cluster(snapshot, f"outbound|80|cnn|{EGRESS}").endpoints] == ["istio-egressgateway:8080"]
    # local: the endpoints file names the listener of each port (`<workload>:<port>`)
    mapping = parse_endpoints(
        '{"istio-egressgateway": ["127.0.0.1:20000"], "istio-egressgateway:80": ["127.0.0.1:20001"],'
        ' "istio-egressgateway:443": ["127.0.0.1:20002"]}'
    )
    snapshot = compile_snapshot(state, "sleep-v1", endpoints_from_mapping(mapping))
    assert [e.address for e in cluster(snapshot, f"outbound|80|cnn|{EGRESS}").endpoints] == ["127.0.0.1:20001"]
    assert [e.address for e in cluster(snapshot, f"outbound|443||{EGRESS}").endpoints] == ["127.0.0.1:20002"]


def test_the_task_routes_the_sidecar_to_the_gateway_and_the_gateway_out() -> None:
    state = mesh_state(COMPOSE, TASK)
    sidecar = compile_snapshot(state, "sleep-v1")
    assert route_clusters(sidecar, 80, f"{HOST}:80") == [f"outbound|80|cnn|{EGRESS}"]
    gateway = compile_snapshot(state, "istio-egressgateway")
    assert gateway.identity.kind == "router" and gateway.inbound == ()
    assert [(rc.name, [vh.name for vh in rc.virtual_hosts]) for rc in gateway.route_configs] == [
        ("http.80", [f"{HOST}:80"])
    ]
    assert route_clusters(gateway, 80, f"{HOST}:80") == [f"outbound|80||{HOST}"]
    # the ingress gateway is not selected by it
    assert compile_snapshot(state, "istio-ingressgateway").route_configs == ()


def test_the_task_analyzes_without_findings_about_the_egress_gateway() -> None:
    found = [(d.code, d.path) for d in analyze(mesh_state(COMPOSE, TASK)) if d.severity != "info"]
    # its host is in the registry (no KIA0202), its selector finds a workload (no KIA0302); Kiali
    # does warn that the task's subset has no labels
    assert found == [("KIA0209", "spec/subsets[0]")]


def originate(tls: str, selector: str = "", namespace: str = "default") -> str:
    return f"""apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: originate, namespace: {namespace}}}
spec:
  host: {HOST}{selector}
  trafficPolicy:
    portLevelSettings:
    - port: {{number: 443}}
      tls: {tls}
"""


@pytest.fixture
def secrets(tmp_path: Path) -> Path:
    ca = authority("external CA")
    issue(ca, tmp_path / "client-credential", "client")
    only_ca = tmp_path / "ca-only"
    only_ca.mkdir()
    ca.write(only_ca / "ca.crt")
    return tmp_path


def tls_at(proxy: str, secrets: Path, rule: str) -> TLSSettings:
    cert, key = secrets / "client-credential" / "tls.crt", secrets / "client-credential" / "tls.key"
    compose = COMPOSE + (
        "x-sandbox:\n  secrets:\n"
        f"    client-credential: {secrets / 'client-credential'}\n"
        f"    ca-only: {secrets / 'ca-only'}\n"
        f"    split: {{cert: {cert}, key: {key}}}\n"
        f"    split-cacert: {secrets / 'ca-only'}\n"
        f"    lonely: {{cert: {cert}, key: {key}}}\n"
    )
    snapshot = compile_snapshot(mesh_state(compose, SERVICE_ENTRY + "---\n" + rule), proxy)
    assert "PRIVATE KEY" not in snapshot.to_json()  # files, never key material
    return cluster(snapshot, f"outbound|443||{HOST}").traffic_policy.tls


def test_a_credential_name_at_the_gateway_becomes_the_secrets_files(secrets: Path) -> None:
    client = secrets / "client-credential"
    tls = tls_at("istio-egressgateway", secrets, originate("{mode: MUTUAL, credentialName: client-credential}"))
    assert (tls.client_certificate, tls.private_key, tls.ca_certificates, tls.problem) == (
        str(client / "tls.crt"),
        str(client / "tls.key"),
        str(client / "ca.crt"),
        "",
    )
    # SIMPLE needs only the CA; a secret without one takes `<name>-cacert`'s, as Istio's SDS does
    simple = tls_at("istio-egressgateway", secrets, originate("{mode: SIMPLE, credentialName: ca-only}"))
    assert (simple.client_certificate, simple.ca_certificates) == (None, str(secrets / "ca-only" / "ca.crt"))
    split = tls_at("istio-egressgateway", secrets, originate("{mode: MUTUAL, credentialName: split}"))
    assert (split.private_key, split.ca_certificates) == (str(client / "tls.key"), str(secrets / "ca-only" / "ca.crt"))


def test_a_credential_name_at_a_sidecar_needs_a_workload_selector(secrets: Path) -> None:
    files = "clientCertificate: /etc/certs/c.pem, privateKey: /etc/certs/k.pem"
    plain = tls_at("sleep-v1", secrets, originate(f"{{mode: MUTUAL, credentialName: client-credential, {files}}}"))
    assert (plain.client_certificate, plain.private_key) == ("/etc/certs/c.pem", "/etc/certs/k.pem")
    selector = "\n  workloadSelector: {matchLabels: {app: sleep}}"
    rule = originate("{mode: MUTUAL, credentialName: client-credential}", selector)
    selected = tls_at("sleep-v1", secrets, rule)
    assert selected.private_key == str(secrets / "client-credential" / "tls.key")


@pytest.mark.parametrize(
    ("tls", "problem"),
    [
        ("{mode: MUTUAL, credentialName: nowhere}", "secret 'nowhere' is not in x-sandbox.secrets (known: "),
        ("{mode: MUTUAL, credentialName: ca-only}", "secret 'ca-only' has no certificate and key"),
        ("{mode: SIMPLE, credentialName: lonely}", "secret 'lonely' has no ca.crt (nor a secret 'lonely-cacert')"),
    ],
)
def test_a_credential_that_cannot_be_used_says_why(secrets: Path, tls: str, problem: str) -> None:
    found = tls_at("istio-egressgateway", secrets, originate(tls, namespace="istio-system"))
    assert found.problem.startswith(problem), found.problem
