"""Shared factories for tests: Compose files, Istio YAML and the snapshots compiled from them.

One place for what many test modules write: the Bookinfo fixture directory, a Compose file for
(workload, app, version) triples, the reviews VirtualService pinned to a subset, and
compile() run exactly as the control plane runs it, with each workload at a given address.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from sandbox.control.compile import compile
from sandbox.control.compile_clusters import endpoints_from_mapping
from sandbox.mesh.loader import load_text
from sandbox.mesh.state import MeshState
from sandbox.mesh.topology import parse_compose
from sandbox.xds.snapshot import ProxySnapshot

BOOKINFO = Path(__file__).resolve().parent / "fixtures" / "bookinfo"  # Istio's Bookinfo rules + compose.yaml


def compose_for(*workloads: tuple[str, str, str], port: int = 9080) -> str:
    """A Compose file for (workload, app, version) triples, all on one service port."""
    lines = ["services:"]
    for name, app, version in workloads:
        lines += [
            f"  {name}:",
            "    image: x",
            f"    labels: {{app: {app}, version: {version}}}",
            f'    expose: ["{port}"]',
        ]
    return "\n".join(lines) + "\n"


def reviews_to(subset: str, name: str = "reviews") -> str:
    """A VirtualService sending everything for reviews to one subset (destination-rule-all's)."""
    return f"""apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: {name}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination:
        host: reviews
        subset: {subset}
"""


REVIEWS_SUBSETS = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
"""


def reviews_routes(http: str, rules: str = REVIEWS_SUBSETS) -> str:
    """`rules` (the v1/v2 subsets by default), then a reviews VirtualService with this `http:` list
    (YAML items indented by 2)."""
    return f"""{rules}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews}}
spec:
  hosts: [reviews]
  http:
{http}
"""


def reviews_to_v1(**extra: str) -> str:
    """Subsets, and one reviews route to v1 with these fields added (`timeout="1s"`, `fault=...`)."""
    lines = ["  - route: [{destination: {host: reviews, subset: v1}}]"]
    lines += [f"    {key}: {value}" for key, value in extra.items()]
    return reviews_routes("\n".join(lines))


def mesh_state(compose: str, istio: str = "") -> MeshState:
    """The state the control plane would hold for these texts (which must load cleanly)."""
    topology = parse_compose(compose, "compose.yaml")
    assert not [d for d in topology.diagnostics if d.severity == "error"], topology.diagnostics
    loaded = load_text(istio, "istio.yaml") if istio.strip() else None
    if loaded:
        assert not [d for d in loaded.diagnostics if d.severity == "error"], loaded.diagnostics
    return MeshState(loaded.resources if loaded else (), topology)


def mesh_snapshot(
    compose: str,
    istio: str,
    proxy: str,
    addresses: Mapping[str, str],
    app_address: str | None = None,
    mtls: bool = False,
) -> ProxySnapshot:
    """compile() for `proxy`, with workload `name` (replica 0) reachable at addresses[name].

    The addresses are usually plain test servers standing in for the peers' sidecars, so the mesh
    is plaintext (a mesh-wide PeerAuthentication DISABLE) unless `mtls`: Istio's default, auto mTLS."""
    resolver = endpoints_from_mapping({(name, 0): address for name, address in addresses.items()})
    if not mtls:
        istio = f"{istio}\n---\n{PLAINTEXT_MESH}" if istio.strip() else PLAINTEXT_MESH
    return compile(mesh_state(compose, istio), proxy, resolver, app_address=app_address)


PLAINTEXT_MESH = """\
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: plaintext-mesh, namespace: istio-system}
spec: {mtls: {mode: DISABLE}}
"""
