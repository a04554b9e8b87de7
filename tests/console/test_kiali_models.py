"""The console's pure view models: Kiali's graph building, health algorithm, log merging and
PromQL shapes, on hand-written Prometheus answers."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from sandbox.console import graph, health, logs, metrics
from sandbox.console.graph_appenders import decorate, decorations_from
from sandbox.console.graph_model import Node
from sandbox.console.graph_queries import namespace_queries

ISTIO_SYSTEM = "istio-system"


def series(
    src: str, dst: str, code: str = "200", flags: str = "-", reporter: str = "destination", **extra: str
) -> dict[str, str]:
    """Labels of one istio_requests_total series, as our sidecars report them."""
    sns = ISTIO_SYSTEM if src == "istio-ingressgateway" else "default"
    sapp, sver = src.rsplit("-", 1) if src != "istio-ingressgateway" else (src, "latest")
    dapp, dver = dst.rsplit("-", 1)
    return {
        "reporter": reporter,
        "source_cluster": "Kubernetes", "source_workload_namespace": sns, "source_workload": src,
        "source_canonical_service": sapp, "source_canonical_revision": sver,
        "destination_cluster": "Kubernetes", "destination_service_namespace": "default",
        "destination_service": f"{dapp}.default.svc.cluster.local", "destination_service_name": dapp,
        "destination_workload_namespace": "default", "destination_workload": dst,
        "destination_canonical_service": dapp, "destination_canonical_revision": dver,
        "request_protocol": "http", "response_code": code, "grpc_response_status": "", "response_flags": flags,
        "connection_security_policy": "mutual_tls" if reporter == "destination" else "unknown",
        **extra,
    }  # fmt: skip


TRAFFIC = [
    (series("istio-ingressgateway", "productpage-v1"), 2.0),
    (series("productpage-v1", "reviews-v1"), 1.5),
    (series("productpage-v1", "reviews-v2", code="503", flags="UF"), 0.5),
    (series("productpage-v1", "reviews-v1", reporter="source"), 1.5),  # the same requests, other reporter
]


def built(graph_type: str = "versionedApp", inject: bool = False, **kwargs: Any) -> dict[str, Any]:
    traffic = graph.build(graph_type, ["default"], TRAFFIC, [], ([], []), inject, **kwargs)
    return graph.to_json(traffic, 1_700_000_000, 60)


def by_name(data: dict[str, Any]) -> tuple[dict[str, Any], dict[tuple[str, str], Any]]:
    nodes = {n["data"]["id"]: n["data"] for n in data["elements"]["nodes"]}

    def name(d: dict[str, Any]) -> str:
        return d.get("service") if d["nodeType"] == "service" else (d.get("workload") or d.get("app"))

    edges = {
        (name(nodes[e["data"]["source"]]), name(nodes[e["data"]["target"]])): e["data"]
        for e in data["elements"]["edges"]
    }
    return {name(n): n for n in nodes.values()}, edges


def test_kiali_node_ids_and_edges_with_both_reporters_counted_once() -> None:
    data = built()
    nodes, edges = by_name(data)
    assert data["graphType"] == "versionedApp" and data["duration"] == 60 and data["timestamp"] == 1_700_000_000
    assert nodes["reviews-v1"]["id"] == hashlib.sha256(b"vapp_Kubernetes_default_reviews-v1").hexdigest()
    edge = edges[("productpage-v1", "reviews-v1")]
    assert edge["id"] == hashlib.sha256(f"{edge['source']}.{edge['target']}.http".encode()).hexdigest()
    assert edge["traffic"]["rates"] == {"http": "1.50", "httpPercentReq": "75.0"}  # not 3.00: one count per request
    assert edge["isMTLS"] == "100"
    failing = edges[("productpage-v1", "reviews-v2")]
    assert failing["traffic"]["rates"] == {
        "http": "0.50",
        "http5xx": "0.50",
        "httpPercentErr": "100.0",
        "httpPercentReq": "25.0",
    }
    assert failing["traffic"]["responses"] == {
        "503": {"flags": {"UF": "100.0"}, "hosts": {"reviews.default.svc.cluster.local": "100.0"}}
    }
    assert failing["healthStatus"] == "Failure" and edge["healthStatus"] == "Healthy"
    assert nodes["productpage-v1"]["traffic"] == [{"protocol": "http", "rates": {"httpIn": "2.00", "httpOut": "2.00"}}]
    assert nodes["productpage-v1"]["healthStatus"] == "Failure"  # 25% of its outbound requests fail
    assert nodes["istio-ingressgateway"]["isRoot"] and nodes["istio-ingressgateway"]["isOutside"]
    assert "isRoot" not in nodes["productpage-v1"]


def test_service_nodes_badges_and_the_service_graph() -> None:
    manifests = [
        {"kind": "VirtualService", "metadata": {"name": "reviews", "namespace": "default"},
         "spec": {"hosts": ["reviews"], "http": [{"fault": {"abort": {"httpStatus": 500}}, "route": [
             {"destination": {"host": "reviews", "subset": "v1"}, "weight": 50},
             {"destination": {"host": "reviews", "subset": "v2"}, "weight": 50}]}]}},
        {"kind": "DestinationRule", "metadata": {"name": "reviews", "namespace": "default"},
         "spec": {"host": "reviews.default.svc.cluster.local",
                  "trafficPolicy": {"connectionPool": {"tcp": {"maxConnections": 1}}}}},
        {"kind": "Gateway", "metadata": {"name": "gw", "namespace": "default"},
         "spec": {"selector": {"istio": "ingressgateway"}, "servers": [{"hosts": ["bookinfo.example.com"]}]}},
        {"kind": "Gateway", "metadata": {"name": "egress", "namespace": "default"},
         "spec": {"selector": {"istio": "egressgateway"}, "servers": [{"hosts": ["edition.cnn.com"]}]}},
    ]  # fmt: skip
    workloads = [
        (ISTIO_SYSTEM, "istio-ingressgateway", {"istio": "ingressgateway"}),
        (ISTIO_SYSTEM, "istio-egressgateway", {"istio": "egressgateway"}),
    ]
    decorations = decorations_from(manifests, workloads)
    nodes, edges = by_name(built(inject=True, decorations=decorations))
    reviews = nodes["reviews"]
    assert reviews["nodeType"] == "service"
    assert reviews["hasVS"] == {"hostnames": ["reviews.default.svc.cluster.local"]}
    assert (
        reviews["hasCB"]
        and reviews["hasFaultInjection"]
        and reviews["hasTrafficShifting"]
        and reviews["hasRequestRouting"]
    )
    assert nodes["istio-ingressgateway"]["isGateway"] == {"ingressInfo": {"hostnames": ["bookinfo.example.com"]}}
    egress = Node("egress", "workload", "Kubernetes", ISTIO_SYSTEM, workload="istio-egressgateway")
    decorate([egress], decorations)
    assert egress.flags["isGateway"] == {"egressInfo": {"hostnames": ["edition.cnn.com"]}}  # Kiali's egress label
    assert set(edges) == {
        ("istio-ingressgateway", "productpage"), ("productpage", "productpage-v1"), ("productpage-v1", "reviews"),
        ("reviews", "reviews-v1"), ("reviews", "reviews-v2"),
    }  # fmt: skip
    assert edges[("reviews", "reviews-v1")]["traffic"]["rates"]["httpPercentReq"] == "75.0"
    service_nodes, service_edges = by_name(built("service"))
    assert set(service_edges) == {("istio-ingressgateway", "productpage"), ("productpage", "reviews")}
    assert service_edges[("productpage", "reviews")]["traffic"]["rates"]["http"] == "2.00"
    assert set(service_nodes) == {"istio-ingressgateway", "productpage", "reviews"}


def test_app_graph_folds_versions_and_response_times_prefer_the_destination_reporter() -> None:
    labels = dict(series("productpage-v1", "reviews-v1"))
    destination = [(labels, 120.0)]
    source = [({**labels, "reporter": "source"}, 300.0), (series("productpage-v1", "reviews-v2"), 40.0)]
    traffic = graph.build("app", ["default"], TRAFFIC, [], (destination, source))
    nodes, edges = by_name(graph.to_json(traffic, 0, 60))
    assert set(nodes) == {"istio-ingressgateway", "productpage", "reviews"}
    edge = edges[("productpage", "reviews")]
    assert edge["traffic"]["rates"]["http"] == "2.00"
    assert edge["responseTime"] == "120"  # v1's destination-reported p95; v2's folded in only where larger


@pytest.mark.parametrize(
    ("codes", "status"),
    [
        ({}, health.NA),
        ({"200": 10.0}, health.HEALTHY),
        ({"200": 999.0, "500": 1.0}, health.DEGRADED),  # any 5xx: degraded
        ({"200": 9.0, "503": 1.0}, health.FAILURE),  # 10% 5xx: failure
        ({"200": 95.0, "404": 5.0}, health.HEALTHY),  # 4xx tolerated below 10%
        ({"200": 85.0, "404": 15.0}, health.DEGRADED),
        ({"200": 80.0, "404": 20.0}, health.FAILURE),
        ({"200": 99.0, "-": 1.0}, health.DEGRADED),  # no response at all
    ],
)
def test_kialis_default_tolerances(codes: dict[str, float], status: str) -> None:
    assert health.request_status({"inbound": {"http": codes}}) == status


def test_workload_status_as_kiali_counts_replicas() -> None:
    assert health.WorkloadStatus("w", 2, 2, 2, 2).status() == health.HEALTHY
    assert health.WorkloadStatus("w", 2, 2, 1, 1).status() == health.DEGRADED
    assert health.WorkloadStatus("w", 2, 2, 0, 0).status() == health.FAILURE
    assert health.WorkloadStatus("w", 1, 1, 1, 0).status() == health.DEGRADED  # a sidecar not in sync
    assert health.WorkloadStatus("w", 1, 1, 1, -1).status() == health.HEALTHY  # no sidecar to sync
    assert health.WorkloadStatus("w", 0, 0, 0, 0).status() == health.NOT_READY
    app = health.app_health({"inbound": {"http": {"200": 1.0}}}, [health.WorkloadStatus("w", 1, 1, 0, 0)])
    assert app["status"] == {"status": health.FAILURE}


def test_logs_merge_app_and_proxy_lines_by_time() -> None:
    proxy = [
        '[2026-01-01T10:00:01.000Z] "GET /a HTTP/1.1" 200 - - - "-" 0 1 0 0',
        '[2026-01-01T10:00:03.000Z] "GET /b HTTP/1.1" 503 UF - - "-" 0 1 0 0',
    ]
    app = ["started", "2026-01-01 10:00:02,500 ERROR upstream failed", "  Traceback line without a time"]
    view = logs.merged([("reviews-v1", app), (logs.PROXY_CONTAINER, proxy)], tail=10)
    assert [(e["container"], e["message"][:30]) for e in view["entries"]] == [
        ("reviews-v1", "started"),  # no time at all: before everything
        ("istio-proxy", '[2026-01-01T10:00:01.000Z] "GE'),
        ("reviews-v1", "2026-01-01 10:00:02,500 ERROR "),
        ("reviews-v1", "  Traceback line without a tim"),  # keeps the time of the line above
        ("istio-proxy", '[2026-01-01T10:00:03.000Z] "GE'),
    ]
    assert view["entries"][2]["severity"] == "ERROR" and not view["linesTruncated"]
    filtered = logs.merged([("reviews-v1", app), (logs.PROXY_CONTAINER, proxy)], tail=1, contains="get")
    assert [e["message"][:28] for e in filtered["entries"]] == ['[2026-01-01T10:00:03.000Z] "']
    assert filtered["linesTruncated"]


def test_promql_as_kiali_writes_it() -> None:
    plan = namespace_queries("bookinfo", 60).queries
    assert [kind for kind, _ in plan] == ["http", "http", "http", "tcp", "tcp", "tcp", "rt", "rt"]
    assert plan[1][1].startswith(
        'sum(rate(istio_requests_total{reporter="destination",destination_workload_namespace="bookinfo"}[60s])) by '
        "(source_cluster,source_workload_namespace,source_workload,"
    )
    assert plan[1][1].endswith(",connection_security_policy) > 0")
    assert plan[6][1].startswith("histogram_quantile(0.95, sum(rate(istio_request_duration_milliseconds_bucket{")
    # outbound: only what no destination reporter saw (another namespace, or a workload without a sidecar)
    assert plan[2][1].startswith(
        'sum(rate(istio_requests_total{reporter="source",source_workload_namespace="bookinfo",'
        'destination_workload_namespace!="bookinfo"}[60s])) by ('
    )
    legacy = namespace_queries("bookinfo", 60, uninjected=["legacy-v1"]).queries[2][1]
    assert 'or rate(istio_requests_total{reporter="source",source_workload_namespace="bookinfo",' in legacy
    assert 'destination_workload_namespace="bookinfo",destination_workload=~"legacy\\\\-v1"}[60s]))' in legacy
    rates = metrics.request_rates(
        [({"destination_canonical_service": "reviews", "request_protocol": "http", "response_code": "0"}, 1.0)],
        [({"source_canonical_service": "reviews", "request_protocol": "http", "response_code": "200"}, 2.0)],
        "app",
    )
    assert rates == {"reviews": {"inbound": {"http": {"-": 1.0}}, "outbound": {"http": {"200": 2.0}}}}
