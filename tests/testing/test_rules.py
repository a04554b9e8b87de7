"""The Istio rules behind mesh.fault and mesh.route (pure: manifests in, manifests out), checked
against Istio's schema by loading what they build."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox.mesh.loader import load_text
from sandbox.mesh.yamlsrc import dump_yaml
from sandbox.testing.rules import (
    RuleError,
    fault,
    free_name,
    gateway_hosts,
    mesh_virtual_services,
    subsets_rule,
    with_fault,
    with_route,
)

REVIEWS: dict[str, Any] = {
    "apiVersion": "networking.istio.io/v1",
    "kind": "VirtualService",
    "metadata": {"name": "reviews", "namespace": "default"},
    "spec": {
        "hosts": ["reviews"],
        "http": [
            {
                "match": [{"headers": {"end-user": {"exact": "jason"}}}],
                "route": [{"destination": {"host": "reviews", "subset": "v2"}}],
            },
            {"route": [{"destination": {"host": "reviews", "subset": "v1"}}], "timeout": "3s"},
        ],
    },
}


def valid(manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest loads without a diagnostic, as `sandbox apply` would read it."""
    loaded = load_text(dump_yaml(manifest), "built.yaml")
    assert loaded.diagnostics == (), [d.format() for d in loaded.diagnostics]
    assert len(loaded.resources) == 1
    return manifest


def test_the_fault_block_is_istios() -> None:
    assert fault(delay="2s") == {"delay": {"fixedDelay": "2s", "percentage": {"value": 100.0}}}
    assert fault(delay=0.5, abort=503, percent=10) == {
        "delay": {"fixedDelay": "0.5s", "percentage": {"value": 10.0}},
        "abort": {"httpStatus": 503, "percentage": {"value": 10.0}},
    }


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "say which fault"),
        ({"delay": "soon"}, "delay:"),
        ({"abort": 42}, "HTTP status"),
        ({"abort": 503, "percent": 120}, "between 0 and 100"),
    ],
)
def test_a_fault_that_cannot_be_is_refused_with_the_reason(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(RuleError, match=message):
        fault(**kwargs)


def test_a_plain_fault_goes_on_every_route_and_keeps_the_routing() -> None:
    built = valid(with_fault(REVIEWS, "reviews", "default", fault(abort=503)))
    routes = built["spec"]["http"]
    assert [r["fault"]["abort"]["httpStatus"] for r in routes] == [503, 503]
    assert [r["route"] for r in routes] == [r["route"] for r in REVIEWS["spec"]["http"]]
    assert routes[0]["match"] == REVIEWS["spec"]["http"][0]["match"] and routes[1]["timeout"] == "3s"
    assert "fault" not in REVIEWS["spec"]["http"][0]  # the input is not changed


def test_with_match_and_subset_a_faulted_route_goes_first_as_istios_samples_do() -> None:
    jason = {"headers": {"end-user": {"exact": "jason"}}}
    built = valid(with_fault(None, "ratings", "default", fault(delay="7s"), subset="v1", match=jason, name="ratings"))
    first, rest = built["spec"]["http"][0], built["spec"]["http"][1:]
    assert first == {
        "match": [jason],
        "fault": {"delay": {"fixedDelay": "7s", "percentage": {"value": 100.0}}},
        "route": [{"destination": {"host": "ratings", "subset": "v1"}}],
    }
    assert rest == [{"route": [{"destination": {"host": "ratings"}}]}]  # everyone else as before


def test_a_route_keeps_matches_and_timeouts_and_splits_by_weight() -> None:
    built = valid(with_route(REVIEWS, "reviews", "default", {"v1": 80, "v3": 20}))
    for route in built["spec"]["http"]:
        assert route["route"] == [
            {"destination": {"host": "reviews", "subset": "v1"}, "weight": 80},
            {"destination": {"host": "reviews", "subset": "v3"}, "weight": 20},
        ]
    assert built["spec"]["http"][0]["match"] and built["spec"]["http"][1]["timeout"] == "3s"
    with pytest.raises(RuleError, match="add up to 100"):
        with_route(None, "reviews", "default", {"v1": 80, "v2": 30})


def test_the_subsets_rule_names_each_version() -> None:
    built = valid(subsets_rule("reviews", "default", ["v1", "v2"]))
    assert built["spec"]["subsets"] == [
        {"name": "v1", "labels": {"version": "v1"}},
        {"name": "v2", "labels": {"version": "v2"}},
    ]


def row(manifest: dict[str, Any]) -> dict[str, Any]:
    return {"manifest": manifest, "namespace": manifest["metadata"].get("namespace", "default")}


def test_which_virtual_service_sidecars_use() -> None:
    gateway_bound = {**REVIEWS, "metadata": {"name": "edge"}, "spec": {**REVIEWS["spec"], "gateways": ["gw"]}}
    fqdn = {**REVIEWS, "metadata": {"name": "full"}, "spec": {"hosts": ["reviews.default.svc.cluster.local"]}}
    wildcard = {**REVIEWS, "metadata": {"name": "all"}, "spec": {"hosts": ["*.default.svc.cluster.local"]}}
    other_ns = {**REVIEWS, "metadata": {"name": "there", "namespace": "prod"}}
    rows = [row(m) for m in (wildcard, gateway_bound, fqdn, other_ns)]
    found = mesh_virtual_services(rows, "reviews", "default")
    assert [m["metadata"]["name"] for m in found] == ["full", "all"]  # exact first; gateway-only not at all


def test_gateway_hosts_of_a_service() -> None:
    edge = {
        "metadata": {"name": "bookinfo"},
        "spec": {
            "hosts": ["*"],
            "gateways": ["bookinfo-gateway"],
            "http": [{"route": [{"destination": {"host": "productpage", "port": {"number": 9080}}}]}],
        },
    }
    named = {**edge, "spec": {**edge["spec"], "hosts": ["shop.example.com"]}}
    assert gateway_hosts([row(edge)], "productpage", "default") == ["*"]
    assert gateway_hosts([row(named)], "productpage", "default") == ["shop.example.com"]
    assert gateway_hosts([row(edge)], "reviews", "default") is None
    assert gateway_hosts([row(REVIEWS)], "reviews", "default") is None  # a mesh route is no way in


def test_free_name() -> None:
    assert free_name("reviews", {"ratings"}) == "reviews"
    assert free_name("reviews", {"reviews", "reviews-2"}) == "reviews-3"
