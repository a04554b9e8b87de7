"""Istio's "Egress TLS Origination" and "Egress Gateways" tasks on the httpbin sample, end to end.

The client is the fortio workload (the task's `sleep`): `/fortio/fetch/<host>/<path>` through the
ingress makes it send plain HTTP to its sidecar. The external server runs outside the mesh
(external_server.py): on loopback for the local runtime, as a Compose service without a sidecar on
the project's network for the compose runtime. It answers with what it saw (TLS, SNI, the client
certificate), which is how the test knows the request left the mesh over TLS. The certificates
come from a CA of the test's own (tests/pki.py); the DestinationRules name its file
(`caCertificates`) or a secret of x-sandbox.secrets (`credentialName`).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from mesh_support import RUNTIMES, Mesh, engine_ready, http_get, poll, running_mesh

from tests.conftest import require
from tests.egress_task import EGRESS, egress_gateway_rules
from tests.pki import authority, issue

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]  # the compose runtime may build its image

HOST = "external.example.com"  # plain HTTP on port 80, TLS on 443
MUTUAL = "mutual.example.com"  # TLS that wants a client certificate
HERE = Path(__file__).resolve().parent
IN_CONTAINER = {"http": 8080, "https": 8443, "mutual": 9443}  # the external server's ports in its container
SECRETS = {"client-credential": "./certs/client-credential", "external-ca": "./certs/ca"}


@dataclass
class External:
    address: str  # the ServiceEntry endpoint's address
    resolution: str
    ports: dict[str, int]
    ca_file: str  # the CA's file as the proxies see it


def make_certificates(directory: Path) -> Path:
    """The external server's certificate (for both hosts), a client certificate and their CA, as
    Kubernetes' TLS secret files; and a CA that signed neither."""
    ca = authority("external CA")
    issue(ca, directory / "server", HOST, dns=(HOST, MUTUAL))
    issue(ca, directory / "client-credential", "client.example.com")
    # the compose runtime's proxies run as uid 1337 (istio-proxy's): the key must be readable by them
    (directory / "client-credential" / "tls.key").chmod(0o644)
    (directory / "ca").mkdir()
    ca.write(directory / "ca" / "ca.crt")
    authority("someone else").write(directory / "ca" / "other-ca.crt")
    return directory


def add_external_service(directory: Path) -> None:
    """The external server as a Compose service with no app/version labels: outside the mesh."""
    compose = directory / "compose.yaml"
    ports = ",".join(str(p) for p in IN_CONTAINER.values())
    command = ["python3", "/app/external_server.py", "/app/certs/server", "--bind", "0.0.0.0", "--ports", ports]
    compose.write_text(
        compose.read_text().rstrip("\n") + "\n\n  external:  # outside the mesh: no app/version labels, no sidecar\n"
        "    image: sandbox:latest\n"
        '    volumes: ["./:/app:ro"]\n'
        f"    command: {json.dumps(command)}\n"
    )


@pytest.fixture(scope="module", params=RUNTIMES)
def egress(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Mesh, External]]:
    runtime = request.param
    if runtime == "compose":
        require(engine_ready(), "no Docker engine with Compose (run ../shared/docker/ensure-engine)")
    workdir = tmp_path_factory.mktemp("e2e")
    name = f"egress-{uuid.uuid4().hex[:8]}"  # the Compose project: unique on a shared engine

    certs = make_certificates(workdir / "certs")

    def prepare(directory: Path) -> None:
        shutil.copytree(certs, directory / "certs")
        if runtime == "compose":
            shutil.copy(HERE / "external_server.py", directory)
            add_external_service(directory)

    server = None
    try:
        if runtime == "local":
            command = [sys.executable, str(HERE / "external_server.py"), str(certs / "server")]
            server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
            assert server.stdout is not None
            external = External("127.0.0.1", "STATIC", json.loads(server.stdout.readline()), "")
        else:  # a container of its own on the project's network, reached by its service name
            external = External("external", "DNS", dict(IN_CONTAINER), "")
        with running_mesh(
            "httpbin", workdir, runtime, name=name, settings={"secrets": SECRETS}, prepare=prepare
        ) as mesh:
            # the file itself: on the compose runtime x-sandbox.secrets are mounted in every proxy at
            # their host paths (the CA is in the secret external-ca's directory)
            external.ca_file = str((mesh.directory / "certs" / "ca" / "ca.crt").resolve())
            yield mesh, external
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)


@pytest.fixture
def task(egress: tuple[Mesh, External]) -> Iterator[tuple[Mesh, External]]:
    mesh, external = egress
    apply(mesh, "service-entries", service_entries(external))
    yield mesh, external
    mesh.reset()


# --------------------------------------------------------------------------- helpers


def apply(mesh: Mesh, name: str, text: str) -> None:
    """Write `text` as networking/<name>.yaml and `sandbox apply -f` it (the task's kubectl apply)."""
    (mesh.directory / "networking" / f"{name}.yaml").write_text(text)
    mesh.apply(f"{name}.yaml")


def fetch(mesh: Mesh, host: str, path: str = "/politics") -> tuple[int, dict[str, Any] | bytes]:
    """What fortio gets for `GET http://<host><path>` (plain HTTP from the app to its sidecar)."""
    status, body = http_get(f"{mesh.ingress}/fortio/fetch/{host}{path}", timeout=20)
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body


def proxy_log(mesh: Mesh, workload: str, *needles: str) -> str:
    """The last line of the workload's access log holding every needle, waiting for it (the log is
    shared by the module's tests: a needle alone may find an earlier test's line)."""

    def found() -> str | None:
        lines = [line for line in mesh.logs(workload, proxy=True).splitlines() if all(n in line for n in needles)]
        return lines[-1] if lines else None

    return poll(found, 15, f"{needles!r} in {workload}'s access log", interval=0.5)


def upstream_requests(mesh: Mesh, workload: str, cluster: str) -> int:
    """The proxy's `cluster.<cluster>.upstream_rq_total` from its admin port (the task greps the
    egress gateway's stats for the external host)."""
    _, body = http_get(f"{mesh.admin(workload)}/stats?filter={re.escape(cluster)}")
    match = re.search(rb"\.upstream_rq_total: (\d+)", body)
    return int(match.group(1)) if match else 0


def service_entries(external: External) -> str:
    ports = external.ports
    return f"""apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: external}}
spec:
  hosts: [{HOST}]
  ports:
  - {{number: 80, name: http-port, protocol: HTTP}}
  - {{number: 443, name: https-port, protocol: HTTPS}}
  resolution: {external.resolution}
  endpoints: [{{address: {external.address}, ports: {{http-port: {ports["http"]}, https-port: {ports["https"]}}}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: mutual}}
spec:
  hosts: [{MUTUAL}]
  ports:
  - {{number: 80, name: http-port, protocol: HTTP}}
  - {{number: 443, name: https-port, protocol: HTTPS}}
  resolution: {external.resolution}
  endpoints: [{{address: {external.address}, ports: {{http-port: {ports["mutual"]}, https-port: {ports["mutual"]}}}}}]
"""


def destination_rule(name: str, host: str, port: int, tls: str, extra: str = "", namespace: str = "default") -> str:
    return f"""apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  host: {host}{extra}
  trafficPolicy:
    loadBalancer: {{simple: ROUND_ROBIN}}
    portLevelSettings:
    - port: {{number: {port}}}
      tls: {tls}
"""


# --------------------------------------------------------------------------- Egress TLS Origination


def test_tls_origination_at_the_sidecar(task: tuple[Mesh, External]) -> None:
    mesh, external = task
    # without origination the request leaves as it came: plain HTTP, the path readable on the wire
    status, seen = fetch(mesh, HOST)
    assert status == 200 and seen == {"tls": False, "sni": "", "client": "", "path": "/politics", "host": HOST}
    # port 80 goes to 443, where the sidecar opens TLS (with the CA that signed the server)
    rewrite = f"""apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: rewrite-port-for-external}}
spec:
  hosts: [{HOST}]
  http:
  - match: [{{port: 80}}]
    route: [{{destination: {{host: {HOST}, port: {{number: 443}}}}}}]
"""
    apply(
        mesh,
        "originate",
        rewrite
        + "---\n"
        + destination_rule("originate-tls", HOST, 443, f"{{mode: SIMPLE, caCertificates: {external.ca_file}}}"),
    )
    status, seen = fetch(mesh, HOST)
    assert status == 200 and seen == {"tls": True, "sni": HOST, "client": "", "path": "/politics", "host": HOST}
    assert proxy_log(mesh, "fortio", '"GET /politics HTTP/1.1" 200', f" outbound|443||{HOST} ")
    # a CA that did not sign the server: 503, and the sidecar says why (Envoy's words)
    other = external.ca_file.replace("ca.crt", "other-ca.crt")
    apply(
        mesh,
        "originate",
        rewrite + "---\n" + destination_rule("originate-tls", HOST, 443, f"{{mode: SIMPLE, caCertificates: {other}}}"),
    )
    status, body = fetch(mesh, HOST)
    assert status == 503 and b"CERTIFICATE_VERIFY_FAILED" in body  # type: ignore[operator]
    assert proxy_log(mesh, "fortio", '" 503 UF,URX ', '"TLS_error:|CERTIFICATE_VERIFY_FAILED:TLS_error_end"')


def test_mutual_tls_origination_at_the_sidecar(task: tuple[Mesh, External]) -> None:
    """The task's credentialName form: the DestinationRule selects the client by workloadSelector."""
    mesh, _ = task
    status, _ = fetch(mesh, MUTUAL, "/")
    assert status in (502, 503)  # plain HTTP to a TLS port that wants a client certificate
    selector = "\n  workloadSelector: {matchLabels: {app: fortio}}"
    tls = f"{{mode: MUTUAL, credentialName: client-credential, sni: {MUTUAL}}}"
    apply(mesh, "originate-mtls", destination_rule("originate-mtls", MUTUAL, 80, tls, selector))
    status, seen = fetch(mesh, MUTUAL, "/")
    assert status == 200 and seen == {
        "tls": True,
        "sni": MUTUAL,
        "client": "client.example.com",
        "path": "/",
        "host": MUTUAL,
    }


# --------------------------------------------------------------------------- Egress Gateways


def test_http_through_the_egress_gateway(task: tuple[Mesh, External]) -> None:
    mesh, _ = task
    before = upstream_requests(mesh, "istio-egressgateway", f"outbound|80||{HOST}")
    apply(mesh, "egress-gateway", egress_gateway_rules(HOST))
    status, seen = fetch(mesh, HOST)
    assert status == 200 and seen["tls"] is False and seen["path"] == "/politics"  # type: ignore[index]
    # the sidecar sent it to the gateway, the gateway to the external server (the task's log check)
    assert proxy_log(mesh, "fortio", '"GET /politics HTTP/1.1" 200', f'"{HOST}"', f" outbound|80|cnn|{EGRESS} ")
    assert proxy_log(mesh, "istio-egressgateway", '"GET /politics HTTP/1.1" 200', f'"{HOST}"', f" outbound|80||{HOST} ")
    assert upstream_requests(mesh, "istio-egressgateway", f"outbound|80||{HOST}") == before + 1


def test_tls_origination_at_the_egress_gateway(task: tuple[Mesh, External]) -> None:
    mesh, external = task
    originate = destination_rule(
        "originate-tls-for-external", HOST, 443, f"{{mode: SIMPLE, caCertificates: {external.ca_file}}}"
    )
    apply(mesh, "egress-gateway", egress_gateway_rules(HOST, external_port=443) + "---\n" + originate)
    status, seen = fetch(mesh, HOST)
    assert status == 200 and seen == {"tls": True, "sni": HOST, "client": "", "path": "/politics", "host": HOST}
    assert proxy_log(mesh, "istio-egressgateway", '"GET /politics HTTP/1.1" 200', f" outbound|443||{HOST} ")


def test_mutual_tls_between_the_sidecar_and_the_egress_gateway(task: tuple[Mesh, External]) -> None:
    mesh, external = task
    mutual = "{mode: ISTIO_MUTUAL}"
    originate = destination_rule(
        "originate-tls-for-external", HOST, 443, f"{{mode: SIMPLE, caCertificates: {external.ca_file}}}"
    )
    apply(
        mesh,
        "egress-gateway",
        egress_gateway_rules(
            HOST, gateway_tls=mutual, subset_tls=f"{{mode: ISTIO_MUTUAL, sni: {HOST}}}", external_port=443
        )
        + "---\n"
        + originate,
    )
    status, seen = fetch(mesh, HOST)
    assert status == 200 and seen["tls"] is True and seen["sni"] == HOST  # type: ignore[index]
    assert proxy_log(mesh, "istio-egressgateway", '"GET /politics HTTP/1.1" 200', f" outbound|443||{HOST} ")
    # the gateway's server wants mesh mTLS: a sidecar sending plaintext to it gets no answer
    apply(
        mesh, "egress-gateway", egress_gateway_rules(HOST, gateway_tls=mutual, external_port=443) + "---\n" + originate
    )
    status, _ = fetch(mesh, HOST)
    assert status == 503


def test_mutual_tls_origination_at_the_egress_gateway(task: tuple[Mesh, External]) -> None:
    """The gateway's DestinationRule in istio-system names the client certificate by credentialName."""
    mesh, _ = task
    tls = f"{{mode: MUTUAL, credentialName: client-credential, sni: {MUTUAL}}}"
    originate = destination_rule("originate-mtls-for-mutual", MUTUAL, 443, tls, namespace="istio-system")
    apply(mesh, "egress-gateway", egress_gateway_rules(MUTUAL, external_port=443) + "---\n" + originate)
    status, seen = fetch(mesh, MUTUAL, "/")
    assert status == 200 and seen == {
        "tls": True,
        "sni": MUTUAL,
        "client": "client.example.com",
        "path": "/",
        "host": MUTUAL,
    }
    assert proxy_log(mesh, "istio-egressgateway", f'"{MUTUAL}"', f" outbound|443||{MUTUAL} ")
