"""Kiali's service wizards (console/wizards.py, wizard_state.py): the objects each wizard makes,
with Kiali's names, labels and defaults (WizardActions.ts buildIstioConfig), valid for the
project's analyzer; the form's starting state read back from what a wizard made."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox.console import wizards
from sandbox.console.wizard_state import initial_rules, initial_weights, routing_keys, wizard_view
from sandbox.console.wizards import ServiceContext, WizardError, build, default_weights, http_matches
from sandbox.mesh.analysis import analyze
from sandbox.mesh.loader import load_text
from sandbox.mesh.state import MeshState
from sandbox.mesh.topology import parse_compose
from sandbox.mesh.yamlsrc import dump_yaml
from tests.factories import compose_for

FQDN = "reviews.default.svc.cluster.local"
WORKLOADS = (
    ("reviews-v1", {"app": "reviews", "version": "v1"}),
    ("reviews-v2", {"app": "reviews", "version": "v2"}),
    ("reviews-v3", {"app": "reviews", "version": "v3"}),
)
REVIEWS = ServiceContext("reviews", "default", FQDN, WORKLOADS, gateways=("default/bookinfo-gateway",))


def weights(*values: int, mirrored: int | None = None) -> list[dict[str, Any]]:
    return [
        {"name": name, "weight": v, "mirrored": i == mirrored}
        for i, ((name, _), v) in enumerate(zip(WORKLOADS, values, strict=True))
    ]


def by_kind(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["kind"]: o for o in objects}


def test_traffic_shifting_is_kialis_destination_rule_and_virtual_service() -> None:
    objects = build(REVIEWS, "traffic_shifting", {"workloads": weights(0, 0, 100)})
    assert [o["kind"] for o in objects] == ["DestinationRule", "VirtualService"]  # subsets first: they are routed to
    dr, vs = by_kind(objects)["DestinationRule"], by_kind(objects)["VirtualService"]
    assert dr == {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"namespace": "default", "name": "reviews", "labels": {"kiali_wizard": "traffic_shifting"}},
        "spec": {
            "host": FQDN,
            "subsets": [{"name": v, "labels": {"version": v}} for v in ("v1", "v2", "v3")],
        },
    }
    assert vs["metadata"]["labels"] == {"kiali_wizard": "traffic_shifting"}
    assert vs["spec"] == {
        "hosts": [FQDN],
        "http": [
            {
                "route": [
                    {"destination": {"host": FQDN, "subset": "v1"}, "weight": 0},
                    {"destination": {"host": FQDN, "subset": "v2"}, "weight": 0},
                    {"destination": {"host": FQDN, "subset": "v3"}, "weight": 100},
                ]
            }
        ],
    }


def test_default_weights_split_evenly_with_the_remainder_last() -> None:
    assert [w["weight"] for w in default_weights(["a", "b", "c"])] == [33, 33, 34]
    assert [w["weight"] for w in default_weights(["a", "b"])] == [50, 50]
    assert default_weights([]) == []


def test_a_mirrored_workload_becomes_mirror_and_mirror_percentage() -> None:
    vs = by_kind(build(REVIEWS, "traffic_shifting", {"workloads": weights(100, 40, 0, mirrored=1)}))["VirtualService"]
    route = vs["spec"]["http"][0]
    assert [d["destination"]["subset"] for d in route["route"]] == ["v1", "v3"]
    assert route["mirror"] == {"host": FQDN, "subset": "v2"} and route["mirrorPercentage"] == {"value": 40}


@pytest.mark.parametrize(
    ("state", "message"),
    [
        ({"workloads": weights(50, 40, 0)}, "the sum of all non-mirrored weights must be 100 %"),
        ({"workloads": [{"name": "ratings-v1", "weight": 100}]}, "'ratings-v1' is not a workload of reviews"),
        ({"workloads": weights(101, 0, 0)}, "must be a whole number from 0 to 100"),
    ],
)
def test_weights_that_cannot_route_are_refused(state: dict[str, Any], message: str) -> None:
    with pytest.raises(WizardError, match=message):
        build(REVIEWS, "traffic_shifting", state)


def test_fault_injection_puts_delay_and_abort_on_the_route() -> None:
    fault = {"delay": {"percentage": {"value": 50}, "fixedDelay": "2s"}, "abort": None}
    vs = by_kind(build(REVIEWS, "fault_injection", {"workloads": weights(100, 0, 0), "fault": fault}))["VirtualService"]
    route = vs["spec"]["http"][0]
    assert route["fault"] == {"delay": {"percentage": {"value": 50}, "fixedDelay": "2s"}}
    assert vs["metadata"]["labels"] == {"kiali_wizard": "fault_injection"}
    assert wizards.DEFAULT_FAULT == {
        "delay": {"percentage": {"value": 100}, "fixedDelay": "5s"},
        "abort": {"percentage": {"value": 100}, "httpStatus": 503},
    }  # Kiali's defaults (ServiceWizard.tsx)


def test_request_timeouts_with_kialis_retry_defaults() -> None:
    state = {"workloads": weights(34, 33, 33), "timeout": "2s", "retries": wizards.DEFAULT_RETRIES}
    route = by_kind(build(REVIEWS, "request_timeouts", state))["VirtualService"]["spec"]["http"][0]
    assert route["timeout"] == "2s"
    assert route["retries"] == {
        "attempts": 3,
        "perTryTimeout": "2s",
        "retryOn": "gateway-error,connect-failure,refused-stream",
    }


def test_request_routing_groups_headers_and_keeps_rule_order() -> None:
    rules = [
        {"matches": ["headers [end-user] exact jason", "headers [x-canary] prefix yes", "uri prefix /api"],
         "workloads": weights(0, 100, 0)},
        {"matches": [], "workloads": weights(100, 0, 0)},
    ]  # fmt: skip
    http = by_kind(build(REVIEWS, "request_routing", {"rules": rules}))["VirtualService"]["spec"]["http"]
    assert http[0]["match"] == [
        {"headers": {"end-user": {"exact": "jason"}, "x-canary": {"prefix": "yes"}}},
        {"uri": {"prefix": "/api"}},
    ]  # Kiali's buildHTTPMatchRequest: headers in one match, each other field its own
    assert [d["destination"]["subset"] for d in http[0]["route"] if d["weight"]] == ["v2"]
    assert "match" not in http[1]  # the catch-all, last


@pytest.mark.parametrize("bad", ["headers exact jason", "uri sometimes /x", "port exact 80", "uri exact"])
def test_a_match_kiali_cannot_read_is_named(bad: str) -> None:
    with pytest.raises(WizardError, match="match"):
        http_matches([bad])


def test_advanced_options_tls_load_balancer_circuit_breaker_gateway_and_peer_authentication() -> None:
    state = {
        "workloads": weights(34, 33, 33),
        "vsHosts": ["reviews.default.svc.cluster.local", "reviews.example.com"],
        "trafficPolicy": {
            "tls": {"mode": "ISTIO_MUTUAL"},
            "loadBalancer": {"consistentHash": {"httpHeaderName": "x-user"}},
            "connectionPool": wizards.DEFAULT_CONNECTION_POOL,
            "outlierDetection": wizards.DEFAULT_OUTLIER_DETECTION,
            "peerAuthentication": {"mode": "STRICT"},
        },
        "gateway": {
            "addGateway": True,
            "newGateway": True,
            "port": 80,
            "gwHosts": "reviews.example.com",
            "addMesh": True,
        },
    }
    objects = build(REVIEWS, "traffic_shifting", state)
    assert [o["kind"] for o in objects] == ["Gateway", "DestinationRule", "VirtualService", "PeerAuthentication"]
    gw, dr, vs, pa = objects
    assert gw["metadata"]["name"] == "reviews-gateway"
    assert gw["spec"] == {
        "selector": {"istio": "ingressgateway"},
        "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["reviews.example.com"]}],
    }
    assert vs["spec"]["gateways"] == ["default/reviews-gateway", "mesh"]
    assert vs["spec"]["hosts"] == ["reviews.default.svc.cluster.local", "reviews.example.com"]
    assert dr["spec"]["trafficPolicy"] == {
        "tls": {"mode": "ISTIO_MUTUAL"},
        "loadBalancer": {"consistentHash": {"httpHeaderName": "x-user"}},
        "connectionPool": {"tcp": {"maxConnections": 1}, "http": {"http1MaxPendingRequests": 1}},
        "outlierDetection": {"consecutiveErrors": 1},
    }
    assert dr["metadata"]["annotations"] == {"kiali_wizard_related": "PeerAuthentication/reviews"}
    assert pa["spec"] == {"selector": {"matchLabels": {"app": "reviews"}}, "mtls": {"mode": "STRICT"}}


def test_the_new_gateways_name_avoids_one_in_force() -> None:
    taken = ServiceContext("reviews", "default", FQDN, WORKLOADS, gateways=("default/reviews-gateway",))
    assert wizards.gateway_name(taken) == "default/reviews-gateway-1"


def test_every_wizards_objects_pass_the_analyzer() -> None:
    """What the wizards make is valid Istio for the project's own analyzer: no error, no warning."""
    topology = parse_compose(compose_for(*((n, "reviews", labels["version"]) for n, labels in WORKLOADS)), "c.yaml")
    states: dict[str, dict[str, Any]] = {
        "traffic_shifting": {"workloads": weights(10, 20, 70)},
        "tcp_traffic_shifting": {"workloads": weights(10, 20, 70)},
        "fault_injection": {"workloads": weights(100, 0, 0), "fault": wizards.DEFAULT_FAULT},
        "request_timeouts": {"workloads": weights(100, 0, 0), "timeout": "2s", "retries": wizards.DEFAULT_RETRIES},
        "request_routing": {
            "rules": [{"matches": ["headers [end-user] exact jason"], "workloads": weights(0, 100, 0)}]
        },
    }
    for wizard, state in states.items():
        text = "---\n".join(dump_yaml(o) for o in build(REVIEWS, wizard, state))
        loaded = load_text(text, f"{wizard}.yaml")
        found = [*loaded.diagnostics, *analyze(MeshState(tuple(loaded.resources), topology))]
        assert [d.format() for d in found if d.severity != "info"] == [], wizard


def existing(wizard: str, state: dict[str, Any]) -> ServiceContext:
    objects = by_kind(build(REVIEWS, wizard, state))
    return ServiceContext(
        "reviews", "default", FQDN, WORKLOADS, (objects["VirtualService"],), (objects["DestinationRule"],)
    )


def test_a_wizard_opens_on_what_it_made_and_only_that() -> None:
    made = existing("traffic_shifting", {"workloads": weights(20, 30, 50)})
    assert made.update_label == "traffic_shifting"
    assert made.enabled("traffic_shifting") and not made.enabled("fault_injection")
    assert REVIEWS.enabled("fault_injection")  # nothing routes reviews yet: every wizard opens
    by_hand = ServiceContext("reviews", "default", FQDN, WORKLOADS, ({"metadata": {"name": "reviews"}, "spec": {}},))
    assert not any(by_hand.enabled(t) for t in wizards.TITLES)  # Kiali: edit it as YAML instead


def test_the_form_starts_from_the_routing_a_wizard_made() -> None:
    made = existing("traffic_shifting", {"workloads": weights(20, 30, 50)})
    assert [(w["name"], w["weight"]) for w in initial_weights(made)] == [
        ("reviews-v1", 20), ("reviews-v2", 30), ("reviews-v3", 50),
    ]  # fmt: skip
    rules = [{"matches": ["headers [end-user] exact jason"], "workloads": weights(0, 100, 0)}]
    routed = existing("request_routing", {"rules": rules})
    assert initial_rules(routed)[0]["matches"] == ["headers [end-user] exact jason"]
    faulty = existing(
        "fault_injection", {"workloads": weights(100, 0, 0), "fault": {"abort": wizards.DEFAULT_FAULT["abort"]}}
    )
    view = wizard_view(faulty, "MTLS_ENABLED")
    assert view["state"]["fault"] == {"delay": None, "abort": {"percentage": {"value": 100}, "httpStatus": 503}}
    assert view["state"]["trafficPolicy"]["tls"]["mode"] == "ISTIO_MUTUAL"  # Kiali's default when mTLS is on
    assert view["updateLabel"] == "fault_injection"


def test_delete_traffic_routing_removes_the_route_before_its_subsets() -> None:
    made = existing("traffic_shifting", {"workloads": weights(20, 30, 50)})
    assert routing_keys(made) == [("VirtualService", "default", "reviews"), ("DestinationRule", "default", "reviews")]
