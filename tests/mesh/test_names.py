"""names: how Istio resolves hosts, matches wildcards and names clusters and identities."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sandbox.mesh.names import (
    ClusterKey,
    host_matches,
    hosts_overlap,
    labels_match,
    node_name,
    principal,
    resolve_host,
    service_fqdn,
    spiffe_id,
    split_fqdn,
)

KNOWN = {"default", "shop", "istio-system"}


@pytest.mark.parametrize(
    ("host", "namespace", "expected"),
    [
        ("reviews", "default", "reviews.default.svc.cluster.local"),
        ("reviews", "shop", "reviews.shop.svc.cluster.local"),  # the *rule's* namespace, not the caller's
        ("Reviews ", "shop", "reviews.shop.svc.cluster.local"),
        ("reviews.shop", "default", "reviews.shop.svc.cluster.local"),  # name.ns when ns is known
        ("reviews.unknown", "default", "reviews.unknown"),  # ...and kept as written when not
        ("httpbin.org", "default", "httpbin.org"),
        ("reviews.shop.svc", "default", "reviews.shop.svc.cluster.local"),
        ("reviews.other.svc", "default", "reviews.other.svc.cluster.local"),  # .svc says it is a service
        ("reviews.shop.svc.cluster.local", "default", "reviews.shop.svc.cluster.local"),
        ("*.shop.svc.cluster.local", "default", "*.shop.svc.cluster.local"),
        ("*", "default", "*"),
        ("*.example.com", "default", "*.example.com"),
        ("www.example.com", "default", "www.example.com"),
        ("shop/reviews", "default", "shop/reviews"),  # Sidecar's ns/host form is not a host
        ("", "default", ""),
    ],
)
def test_resolve_host(host: str, namespace: str, expected: str) -> None:
    assert resolve_host(host, namespace, KNOWN) == expected


def test_name_dot_namespace_needs_the_namespace_known() -> None:
    assert resolve_host("reviews.shop", "default") == "reviews.shop"
    assert resolve_host("reviews.shop", "default", {"shop"}) == "reviews.shop.svc.cluster.local"


@pytest.mark.parametrize(
    ("fqdn", "expected"),
    [
        ("reviews.default.svc.cluster.local", ("reviews", "default")),
        ("a.b.c.svc.cluster.local", None),
        ("reviews.default", None),
        ("www.example.com", None),
        ("*.default.svc.cluster.local", ("*", "default")),
    ],
)
def test_split_fqdn(fqdn: str, expected: tuple[str, str] | None) -> None:
    assert split_fqdn(fqdn) == expected


@given(st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True), st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True))
def test_service_fqdn_and_split_are_inverse(name: str, namespace: str) -> None:
    assert split_fqdn(service_fqdn(name, namespace)) == (name, namespace)
    assert resolve_host(name, namespace) == service_fqdn(name, namespace)


@pytest.mark.parametrize(
    ("pattern", "host", "matches"),
    [
        ("*", "anything.example.com", True),
        ("*", "*.example.com", True),
        ("reviews.default.svc.cluster.local", "reviews.default.svc.cluster.local", True),
        ("reviews.default.svc.cluster.local", "REVIEWS.default.svc.cluster.local", True),
        ("reviews.default.svc.cluster.local", "ratings.default.svc.cluster.local", False),
        ("*.example.com", "www.example.com", True),
        ("*.example.com", "a.b.example.com", True),
        ("*.example.com", "example.com", False),  # the wildcard needs a label
        ("*.example.com", "wwwexample.com", False),
        ("*.example.com", "*.a.example.com", True),  # a narrower wildcard is inside
        ("*.a.example.com", "*.example.com", False),  # a wider one is not
        ("*.default.svc.cluster.local", "reviews.default.svc.cluster.local", True),
        ("www.example.com", "*.example.com", False),
    ],
)
def test_host_matches(pattern: str, host: str, matches: bool) -> None:
    assert host_matches(pattern, host) is matches


@pytest.mark.parametrize(
    ("a", "b", "overlap"),
    [
        ("*.example.com", "www.example.com", True),
        ("www.example.com", "*.example.com", True),
        ("*.a.example.com", "*.example.com", True),
        ("*.example.com", "*.example.org", False),
        ("a.example.com", "b.example.com", False),
        ("*", "x", True),
    ],
)
def test_hosts_overlap_is_symmetric(a: str, b: str, overlap: bool) -> None:
    assert hosts_overlap(a, b) is overlap
    assert hosts_overlap(b, a) is overlap


def test_cluster_keys_are_written_as_istio_writes_them() -> None:
    host = "reviews.default.svc.cluster.local"
    assert str(ClusterKey.outbound(host, 9080, "v2")) == "outbound|9080|v2|reviews.default.svc.cluster.local"
    assert str(ClusterKey.outbound(host, 9080)) == "outbound|9080||reviews.default.svc.cluster.local"
    assert str(ClusterKey.inbound(9080)) == "inbound|9080||"
    assert ClusterKey.parse("outbound|9080|v2|reviews.default.svc.cluster.local") == ClusterKey(
        "outbound", 9080, "v2", host
    )


@given(
    st.sampled_from(["outbound", "inbound"]),
    st.integers(min_value=0, max_value=65535),
    st.text(st.characters(blacklist_characters="|"), max_size=10),
    st.text(st.characters(blacklist_characters="|"), max_size=40),
)
def test_cluster_key_build_parse_round_trip(direction: str, port: int, subset: str, host: str) -> None:
    key = ClusterKey(direction, port, subset, host)
    assert ClusterKey.parse(str(key)) == key


@pytest.mark.parametrize(
    "text",
    ["", "outbound|9080|v2", "outbound|x|v2|h", "sideways|9080||h", "outbound|9080|v2|h|extra", "outbound|-1||h"],
)
def test_not_a_cluster_key(text: str) -> None:
    with pytest.raises(ValueError, match="not an Istio cluster name"):
        ClusterKey.parse(text)


def test_identities() -> None:
    assert spiffe_id("default", "bookinfo-reviews") == "spiffe://cluster.local/ns/default/sa/bookinfo-reviews"
    assert spiffe_id("shop", "api", "example.org") == "spiffe://example.org/ns/shop/sa/api"
    assert principal("default", "bookinfo-reviews") == "cluster.local/ns/default/sa/bookinfo-reviews"


@pytest.mark.parametrize(
    ("selector", "labels", "matches"),
    [
        ({"app": "reviews"}, {"app": "reviews", "version": "v1"}, True),
        ({"app": "reviews", "version": "v2"}, {"app": "reviews", "version": "v1"}, False),
        ({"app": "reviews"}, {}, False),
        ({}, {"app": "reviews"}, True),
        ({"version": ""}, {"app": "x"}, False),  # an empty value is still a value
    ],
)
def test_labels_match(selector: dict[str, str], labels: dict[str, str], matches: bool) -> None:
    assert labels_match(selector, labels) is matches


def test_node_names_are_the_endpoint_names_compile_resolves() -> None:
    import dataclasses

    from sandbox.control.compile_clusters import default_endpoints
    from sandbox.mesh.topology import empty_topology

    gateway = empty_topology().workloads[0]
    for replicas in (1, 3):
        workload = dataclasses.replace(gateway, replicas=replicas)
        for replica in range(replicas):
            host = default_endpoints(workload, replica, 8080).rsplit(":", 1)[0]
            assert host == node_name(workload.name, replica, replicas)
