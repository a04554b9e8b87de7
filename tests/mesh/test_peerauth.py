"""PeerAuthentication precedence, as Istio resolves it: mesh, namespace, workload, port."""

from __future__ import annotations

import pytest

from sandbox.mesh.loader import load_text
from sandbox.mesh.peerauth import inbound_mode, peer_mode
from sandbox.mesh.resources.security import MTLSMode
from sandbox.mesh.state import MeshState
from sandbox.mesh.topology import parse_compose

HTTPBIN = {"app": "httpbin", "version": "v1"}


def pa(name: str, namespace: str, body: str) -> str:
    return (
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\n"
        f"metadata: {{name: {name}, namespace: {namespace}}}\nspec: {body}\n---\n"
    )


MESH_STRICT = pa("default", "istio-system", "{mtls: {mode: STRICT}}")
FOO_PERMISSIVE = pa("default", "foo", "{mtls: {mode: PERMISSIVE}}")
FOO_UNSET = pa("default", "foo", "{mtls: {mode: UNSET}}")
WORKLOAD_DISABLE = pa("httpbin", "foo", "{selector: {matchLabels: {app: httpbin}}, mtls: {mode: DISABLE}}")
PORT_PERMISSIVE = pa(
    "httpbin", "foo", "{selector: {matchLabels: {app: httpbin}}, portLevelMtls: {'8000': {mode: PERMISSIVE}}}"
)


def mode(text: str, namespace: str = "foo", port: int | None = 8000) -> tuple[MTLSMode, str]:
    loaded = load_text(text, "pa.yaml")
    assert not loaded.errors, loaded.errors
    found = peer_mode(MeshState(loaded.resources), namespace, HTTPBIN, port)
    return found.mode, found.level


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", (MTLSMode.PERMISSIVE, "default")),
        (MESH_STRICT, (MTLSMode.STRICT, "mesh")),
        (MESH_STRICT + FOO_PERMISSIVE, (MTLSMode.PERMISSIVE, "namespace")),
        (MESH_STRICT + FOO_UNSET, (MTLSMode.STRICT, "mesh")),  # UNSET inherits
        (MESH_STRICT + WORKLOAD_DISABLE, (MTLSMode.DISABLE, "workload")),
        (MESH_STRICT + PORT_PERMISSIVE, (MTLSMode.PERMISSIVE, "port")),
    ],
)
def test_the_most_specific_set_level_wins(text: str, expected: tuple[MTLSMode, str]) -> None:
    assert mode(text) == expected


def test_port_level_settings_apply_to_their_port_only() -> None:
    assert mode(MESH_STRICT + PORT_PERMISSIVE, port=9000) == (MTLSMode.STRICT, "mesh")


def test_another_namespaces_policy_does_not_apply() -> None:
    assert mode(pa("default", "bar", "{mtls: {mode: STRICT}}")) == (MTLSMode.PERMISSIVE, "default")


def test_the_inbound_mode_is_the_port_a_sidecar_listens_for() -> None:
    topology = parse_compose(
        """
services:
  httpbin: {image: x, labels: {app: httpbin, version: v1}, x-sandbox: {port: 8000, namespace: foo}}
  legacy: {image: x, labels: {app: sleep, version: v1}, x-sandbox: {port: 80, namespace: foo, inject: false}}
  worker: {image: x, labels: {app: worker, version: v1}, x-sandbox: {namespace: foo}}
""",
        "compose.yaml",
    )
    state = MeshState(load_text(MESH_STRICT + PORT_PERMISSIVE, "pa.yaml").resources, topology)
    found = {w.name: inbound_mode(state, w) for w in topology.workloads}
    httpbin = found.pop("httpbin")
    assert httpbin is not None and (httpbin.mode, httpbin.source) == (
        MTLSMode.PERMISSIVE,
        "PeerAuthentication/foo/httpbin",
    )
    # no sidecar, no inbound port, or a gateway: nothing is enforced there
    assert found == {"legacy": None, "worker": None, "istio-ingressgateway": None, "istio-egressgateway": None}
