"""Istio's "Mutual TLS Migration" task on samples/mtls-migration, on both runtimes.

httpbin runs in foo and bar; the client `curl` runs in foo and bar beside a sidecar and in legacy
without one. Each client calls from inside its workload (its /fetch API, reached through the
ingress gateway), through its sidecar in foo and bar, straight to httpbin's inbound `address`
(from `sandbox status -o json`) in legacy, and answers the status code, or 000 when the
connection failed, as the task's curl prints. The task's PeerAuthentications go in with
`sandbox apply -f` + `sandbox wait --synced` and out with `sandbox delete`, as a user would.
"""

from __future__ import annotations

import os
import secrets
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from mesh_support import RUNTIMES, Mesh, engine_ready, http_get, poll, running_mesh
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import require

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]  # the compose runtime may build its image

FOO_STRICT = "security/peer-authentication-foo-strict.yaml"
MESH_STRICT = "security/peer-authentication-mesh-strict.yaml"
HTTPBIN_FOO_DISABLE = "security/peer-authentication-httpbin-foo-disable.yaml"
HTTPBIN_BAR_PORT_PERMISSIVE = "security/peer-authentication-httpbin-bar-port-permissive.yaml"
CLIENTS, SERVERS = ("foo", "bar", "legacy"), ("foo", "bar")


@pytest.fixture(scope="module", params=RUNTIMES)
def migration(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    if request.param == "compose":
        require(engine_ready(), "no Docker engine with Compose (run ../shared/docker/ensure-engine)")
    name = f"mtls-migration-{os.getpid()}-{secrets.token_hex(2)}"  # the Compose project: unique on a shared engine
    with running_mesh("mtls-migration", tmp_path_factory.mktemp("e2e"), request.param, name=name) as mesh:
        yield mesh


@pytest.fixture
def mesh(migration: Mesh) -> Iterator[Mesh]:
    yield migration
    migration.reset()


def fetch(mesh: Mesh, client: str, url: str) -> str:
    """What `kubectl exec curl -n <client> -- curl -s -o /dev/null -w "%{http_code}" <url>` prints."""
    status, body = http_get(f"{mesh.ingress}/{client}/fetch?url={urllib.parse.quote(url, safe='')}", timeout=30)
    assert status == 200, (client, url, status, body)
    return body.decode().strip()


def addresses(mesh: Mesh) -> dict[str, str]:
    return {w["name"]: w["address"] for w in mesh.status()["workloads"]}


def url(client: str, server: str, where: dict[str, str], path: str = "/ip") -> str:
    """A sidecar client names the service; the legacy client, outside the mesh, uses httpbin's address."""
    return f"http://{where[f'httpbin-{server}']}{path}" if client == "legacy" else f"http://httpbin.{server}:8000{path}"


def calls(mesh: Mesh, where: dict[str, str]) -> dict[str, str]:
    """Every client to every httpbin, as the task's loop prints it (the six calls at once)."""
    pairs = [(client, server) for client in CLIENTS for server in SERVERS]
    with ThreadPoolExecutor(len(pairs)) as pool:
        codes = pool.map(lambda pair: fetch(mesh, pair[0], url(pair[0], pair[1], where)), pairs)
        return {f"curl.{client} to httpbin.{server}": code for (client, server), code in zip(pairs, codes, strict=True)}


def expect(**failing: str) -> dict[str, str]:
    """All 200 but the `legacy_to_foo=...`-style exceptions."""
    answers = {f"curl.{c} to httpbin.{s}": "200" for c in CLIENTS for s in SERVERS}
    for key, code in failing.items():
        client, server = key.split("_to_")
        answers[f"curl.{client} to httpbin.{server}"] = code
    return answers


def mtls_column(mesh: Mesh) -> dict[str, str]:
    """`sandbox proxy-status`: the MTLS column per workload."""
    rows = [line.split() for line in mesh.sandbox("proxy-status", "-f", str(mesh.compose)).stdout.splitlines()[1:]]
    return {row[1]: row[3] for row in rows}


def test_the_migration_task_step_by_step(mesh: Mesh) -> None:
    where = addresses(mesh)
    assert calls(mesh, where) == expect()  # PERMISSIVE everywhere: plaintext and mTLS both accepted

    mesh.apply(FOO_STRICT)  # lock down foo
    assert calls(mesh, where) == expect(legacy_to_foo="000")  # reset at the connection
    assert mtls_column(mesh) == {
        "httpbin-foo": "STRICT",
        "curl-foo": "STRICT",
        "httpbin-bar": "PERMISSIVE",
        "curl-bar": "PERMISSIVE",
        "istio-ingressgateway": "-",
        "istio-egressgateway": "-",
    }

    mesh.apply(MESH_STRICT)  # lock down the whole mesh
    assert calls(mesh, where) == expect(legacy_to_foo="000", legacy_to_bar="000")

    mesh.apply(HTTPBIN_FOO_DISABLE)  # a workload policy overrides them: plaintext only for httpbin.foo
    assert calls(mesh, where) == expect(legacy_to_bar="000")  # and the sidecars speak plaintext to it

    mesh.apply(HTTPBIN_BAR_PORT_PERMISSIVE)  # port 8000 of httpbin.bar takes both again
    assert calls(mesh, where) == expect()
    assert mtls_column(mesh) == {
        "httpbin-foo": "DISABLE",
        "curl-foo": "STRICT",
        "httpbin-bar": "PERMISSIVE",
        "curl-bar": "STRICT",  # the mesh's
        "istio-ingressgateway": "-",
        "istio-egressgateway": "-",
    }

    mesh.reset()  # the task's cleanup: `kubectl delete peerauthentication ...`
    assert calls(mesh, where) == expect()


def requests_seen(mesh: Mesh, workload: str) -> Counter[tuple[str, str, str]]:
    """istio_requests_total as the server's sidecar reports it (reporter="destination"), by
    (source_workload, source_principal, connection_security_policy), from its admin port."""
    status, body = http_get(f"{mesh.admin(workload)}/stats/prometheus")
    assert status == 200, body
    seen: Counter[tuple[str, str, str]] = Counter()
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "istio_requests_total" and labels["reporter"] == "destination":
                key = (labels["source_workload"], labels["source_principal"], labels["connection_security_policy"])
                seen[key] += int(sample.value)
    return seen


def test_the_servers_metrics_say_who_called_and_how(mesh: Mesh) -> None:
    where = addresses(mesh)
    before = requests_seen(mesh, "httpbin-foo")
    assert [fetch(mesh, "foo", url("foo", "foo", where)) for _ in range(3)] == ["200"] * 3
    assert [fetch(mesh, "legacy", url("legacy", "foo", where)) for _ in range(2)] == ["200"] * 2
    # over mTLS the caller is the certificate's identity; plaintext from outside the mesh is nobody Istio knows
    wanted = Counter(
        {("curl-foo", "spiffe://cluster.local/ns/foo/sa/curl", "mutual_tls"): 3, ("unknown", "unknown", "none"): 2}
    )
    poll(lambda: requests_seen(mesh, "httpbin-foo") - before == wanted, 10, f"httpbin-foo's sidecar counting {wanted}")


def test_the_operator_view(mesh: Mesh) -> None:
    status = {w["name"]: w for w in mesh.status()["workloads"]}
    assert status["curl-legacy"]["sync"] == "NONE" and status["httpbin-foo"]["sync"] == "SYNCED"
    assert all(w["address"] for w in status.values()), status

    secrets_table = mesh.sandbox("proxy-config", "secrets", "httpbin-foo", "-f", str(mesh.compose)).stdout
    assert "spiffe://cluster.local/ns/foo/sa/httpbin" in secrets_table and "PRIVATE" not in secrets_table
    root = x509.load_pem_x509_certificate(Path(mesh.directory, ".sandbox/state/root-cert.pem").read_bytes())
    fingerprint = root.fingerprint(hashes.SHA256()).hex(":").upper()
    assert f"ROOTCA SHA-256 fingerprint: {fingerprint}" in secrets_table  # the mesh's own root
