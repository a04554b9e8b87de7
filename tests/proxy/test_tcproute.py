"""tcproute: where an outbound TCP connection (a CONNECT tunnel) goes, from the compiled snapshot.
Pure: snapshots compiled from Compose + Istio YAML as the control plane compiles them."""

from __future__ import annotations

import pytest
from factories import compose_for, mesh_snapshot

from sandbox.proxy.tcproute import TcpRoutes, TcpTarget, parse_authority

COMPOSE = compose_for(("sleep-v1", "sleep", "v1"), ("reviews-v1", "reviews", "v1"))
REGISTRY_ONLY = COMPOSE + "x-sandbox:\n  outboundTrafficPolicy: {mode: REGISTRY_ONLY}\n"
ENTRIES = """apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: external}
spec:
  hosts: [external.example.com]
  resolution: STATIC
  ports: [{number: 443, name: tls, protocol: TLS}]
  endpoints: [{address: 127.0.0.1, ports: {tls: 8443}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api, namespace: other}
spec:
  hosts: [api.example.com]
  exportTo: ["."]
  ports: [{number: 443, name: https, protocol: HTTPS}]
"""


def routes(istio: str = ENTRIES, compose: str = COMPOSE, proxy: str = "sleep-v1") -> TcpRoutes:
    return TcpRoutes(mesh_snapshot(compose, istio, proxy, {"reviews-v1": "127.0.0.1:9999"}))


def test_a_service_entry_host_on_its_port_is_its_cluster() -> None:
    target = routes().target("external.example.com", 443)
    host = "external.example.com"
    assert target == TcpTarget(f"outbound|443||{host}", host, host, 443)
    assert not target.blocked and not target.passthrough


@pytest.mark.parametrize(
    "host",
    ["reviews", "reviews.default", "reviews.default.svc", "reviews.default.svc.cluster.local"],
)
def test_a_mesh_service_answers_to_the_names_istio_gives_it(host: str) -> None:
    target = routes().target(host, 9080)
    assert (target.cluster, target.service) == (
        "outbound|9080||reviews.default.svc.cluster.local",
        "reviews.default.svc.cluster.local",
    )


def test_unknown_hosts_and_ports_pass_through_under_allow_any_and_are_blackholed_under_registry_only() -> None:
    allow_any, registry_only = routes(), routes(compose=REGISTRY_ONLY)
    for host, port in [("elsewhere.example.com", 443), ("external.example.com", 8443), ("127.0.0.1", 8443)]:
        assert allow_any.target(host, port).passthrough
        assert registry_only.target(host, port).blocked
        assert registry_only.target(host, port).address == f"{host}:{port}"
    assert registry_only.target("external.example.com", 443).cluster == "outbound|443||external.example.com"


def test_exported_elsewhere_or_outside_the_sidecar_egress_hosts_is_unknown() -> None:
    # api.example.com is exported to its own namespace only
    assert routes(compose=REGISTRY_ONLY).target("api.example.com", 443).blocked
    sidecar = """---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: default}
spec:
  egress: [{hosts: ["./*.svc.cluster.local"]}]
  outboundTrafficPolicy: {mode: REGISTRY_ONLY}
"""
    scoped = routes(ENTRIES + sidecar)
    assert scoped.target("external.example.com", 443).blocked  # not among the Sidecar's egress hosts
    assert scoped.target("reviews", 9080).cluster.endswith("|reviews.default.svc.cluster.local")


def test_short_names_are_only_for_the_proxys_own_namespace() -> None:
    compose = COMPOSE + "  ratings-v1:\n    image: x\n    labels: {app: ratings, version: v1}\n"
    compose += '    expose: ["9080"]\n    x-sandbox: {namespace: other}\n'
    table = routes(compose=compose)
    assert table.target("ratings.other", 9080).service == "ratings.other.svc.cluster.local"
    assert table.target("ratings", 9080).passthrough


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("example.com:443", ("example.com", 443)),
        ("Example.COM:443", ("example.com", 443)),
        ("example.com.:443", ("example.com", 443)),
        ("127.0.0.1:8443", ("127.0.0.1", 8443)),
        ("[::1]:443", ("::1", 443)),
        ("[2001:DB8::1]:65535", ("2001:db8::1", 65535)),
        ("under_score.example:1", ("under_score.example", 1)),
    ],
)
def test_authorities_that_parse(text: str, expected: tuple[str, int]) -> None:
    assert parse_authority(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "example.com", "example.com:", ":443", "example.com:0", "example.com:65536", "example.com:+1",
     "example.com:٤٤٣", "exa mple.com:443", "exa\x00mple:443", "a..b:443", ".a:443", "-a:443", "[::1]443",
     "[::1:443", "[]:443", "[zz::1]:443", "::1:443", "http://example.com/", "x" * 256 + ":443", "é.com:443"],
)  # fmt: skip
def test_authorities_that_do_not(text: str) -> None:
    assert parse_authority(text) is None
