"""Kiali's API served in-process against a running Bookinfo with a real Prometheus: the graph's
nodes, edges and rates are what `sandbox load` sent; health, badges, lists, details, metrics, logs,
config dumps and validations read from the live mesh."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest

from sandbox.console.app import Console, ConsoleSettings
from sandbox.runtime.project import find_project
from tests.console.conftest import Bookinfo
from tests.e2e.mesh_support import poll

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
N = 60  # requests of the measured burst


@asynccontextmanager
async def console(bookinfo: Bookinfo) -> AsyncIterator[Callable[..., Any]]:
    """The console in this process, reading the mesh from its record (control plane, Prometheus)
    and traces from the mesh's own console (Jaeger's query API)."""
    settings = ConsoleSettings(port=0, project=find_project(bookinfo.compose), tracing=bookinfo.console)
    c = Console(settings)
    port = await c.start()
    async with aiohttp.ClientSession() as http:

        async def get(path: str, status: int = 200) -> Any:
            async with http.get(f"http://127.0.0.1:{port}{path}") as resp:
                body = await resp.json()
                assert resp.status == status, (path, resp.status, body)
                return body

        try:
            yield get
        finally:
            await c.stop()


def call(bookinfo: Bookinfo, *paths: str) -> list[Any]:
    async def scenario() -> list[Any]:
        async with console(bookinfo) as get:
            return [await get(p) for p in paths]

    return asyncio.run(scenario())


def names(graph: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """node id -> node data, and a readable name per node: app/version, workload or service."""
    return {n["data"]["id"]: n["data"] for n in graph["elements"]["nodes"]}


def label(node: dict[str, Any]) -> str:
    if node["nodeType"] == "service":
        return f"svc:{node['service']}"
    if node["nodeType"] == "workload":
        return node["workload"]
    return f"{node['app']}/{node.get('version', '')}".rstrip("/")


def edges(graph: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    nodes = names(graph)
    return {
        (label(nodes[e["data"]["source"]]), label(nodes[e["data"]["target"]])): e["data"]
        for e in graph["elements"]["edges"]
    }


WINDOW = 40  # seconds: long against the 5 s scrape interval, so rate()'s extrapolation adds at most ~12%


def burst(bookinfo: Bookinfo, requests: int = N) -> float:
    """Exactly `requests` calls in a window of their own: what came before was scraped more than
    WINDOW seconds before the answer's time, and the burst is scraped when this returns (the time)."""
    earlier = time.time() + 6  # earlier traffic is scraped by then
    time.sleep(WINDOW - 20)
    before = bookinfo.scraped_total()
    bookinfo.load(requests)
    bookinfo.wait_scraped(before + requests)
    time.sleep(max(6.0, earlier + WINDOW + 1 - time.time()))  # flat scrapes after the burst
    return time.time()


def test_the_graph_shows_the_traffic_sandbox_load_sent(bookinfo: Bookinfo) -> None:
    bookinfo.ensure_series()  # every series exists before the measured burst
    burst(bookinfo)
    window = WINDOW
    graph, app_graph, workload_graph, service_graph = call(
        bookinfo,
        f"/api/namespaces/graph?namespaces=default&graphType=versionedApp&duration={window}s",
        f"/api/namespaces/graph?namespaces=default&graphType=app&duration={window}s",
        f"/api/namespaces/graph?namespaces=default&graphType=workload&duration={window}s",
        f"/api/namespaces/graph?namespaces=default&graphType=service&duration={window}s",
    )
    assert graph["graphType"] == "versionedApp" and graph["duration"] == window
    nodes = {label(n): n for n in names(graph).values()}
    assert set(nodes) == {
        "istio-ingressgateway/latest", "productpage/v1", "details/v1", "reviews/v1", "reviews/v2", "reviews/v3",
        "ratings/v1",
    }  # fmt: skip
    gateway = nodes["istio-ingressgateway/latest"]
    assert gateway["isRoot"] and gateway["isOutside"] and gateway["isGateway"] == {"ingressInfo": {"hostnames": ["*"]}}
    assert nodes["reviews/v2"]["id"] == hashlib.sha256(b"vapp_Kubernetes_default_reviews-v2").hexdigest()

    found = edges(graph)
    assert set(found) == {
        ("istio-ingressgateway/latest", "productpage/v1"), ("productpage/v1", "details/v1"),
        ("productpage/v1", "reviews/v1"), ("productpage/v1", "reviews/v2"), ("productpage/v1", "reviews/v3"),
        ("reviews/v2", "ratings/v1"), ("reviews/v3", "ratings/v1"),
    }, {k: v["traffic"]["rates"] for k, v in found.items()}  # fmt: skip

    def sent(*pairs: tuple[str, str]) -> float:
        """Requests on these edges over the window, as the rates say."""
        return sum(float(found[p]["traffic"]["rates"]["http"]) for p in pairs) * window

    # Prometheus extrapolates a window's increase from its first and last samples (up to ~10% here)
    for pairs in (
        [("istio-ingressgateway/latest", "productpage/v1")],
        [("productpage/v1", "details/v1")],
        [("productpage/v1", f"reviews/v{v}") for v in (1, 2, 3)],
    ):
        assert N * 0.95 <= sent(*pairs) <= N * 1.2, (pairs, sent(*pairs))
    for v in (1, 2, 3):  # spread over three versions (least request: not exactly a third each)
        assert N / 3 * 0.3 <= sent(("productpage/v1", f"reviews/v{v}")) <= N / 3 * 2
    ratings = sent(("reviews/v2", "ratings/v1"), ("reviews/v3", "ratings/v1"))
    assert ratings == pytest.approx(sent(*[("productpage/v1", f"reviews/v{v}") for v in (2, 3)]), rel=0.1)
    assert found[("productpage/v1", "details/v1")]["traffic"]["rates"]["httpPercentReq"] == "50.0"
    assert found[("istio-ingressgateway/latest", "productpage/v1")]["traffic"]["rates"]["httpPercentReq"] == "100.0"
    for edge in found.values():
        assert edge["healthStatus"] == "Healthy" and "httpPercentErr" not in edge["traffic"]["rates"]
        assert edge["traffic"]["responses"]["200"]["flags"] == {"-": "100.0"}
        assert float(edge["responseTime"]) > 0
    assert {n["healthStatus"] for n in nodes.values()} == {"Healthy"}

    assert {label(n) for n in names(app_graph).values()} == {
        "istio-ingressgateway", "productpage", "details", "reviews", "ratings"
    }  # fmt: skip
    assert len(app_graph["elements"]["edges"]) == 4
    assert {label(n) for n in names(workload_graph).values()} == {
        "istio-ingressgateway", "productpage-v1", "details-v1", "reviews-v1", "reviews-v2", "reviews-v3", "ratings-v1"
    }  # fmt: skip
    assert set(edges(service_graph)) == {
        ("istio-ingressgateway", "svc:productpage"), ("svc:productpage", "svc:details"),
        ("svc:productpage", "svc:reviews"), ("svc:reviews", "svc:ratings"),
    }  # fmt: skip


def test_a_fault_shows_as_a_badge_failing_edges_and_failing_health(bookinfo: Bookinfo) -> None:
    bookinfo.mesh.apply("fault-injection-details-v1.yaml")  # details aborts every call with 555
    try:
        # a sidecar makes a series on its first request, and rate() needs two samples of it:
        # the 555s' series must exist before the measured burst (as with Istio's own Envoy)
        before = bookinfo.scraped_total()
        bookinfo.load(5)
        bookinfo.wait_scraped(before + 5)
        burst(bookinfo, 20)
        window = WINDOW
        graph, health, istio, vs = call(
            bookinfo,
            f"/api/namespaces/graph?namespaces=default&graphType=versionedApp&duration={window}s&injectServiceNodes=true",
            f"/api/namespaces/default/health?type=app&rateInterval={window}s",
            "/api/namespaces/default/istio?validate=true",
            "/api/namespaces/default/istio/virtualservice/details?validate=true",
        )
    finally:
        bookinfo.mesh.reset()
    nodes = {label(n): n for n in names(graph).values()}
    details = nodes["svc:details"]
    assert details["hasFaultInjection"] is True and details["hasVS"] == {
        "hostnames": ["details.default.svc.cluster.local"]
    }
    assert "details/v1" not in nodes  # the sidecar of productpage answered: no request reached details
    edge = edges(graph)[("productpage/v1", "svc:details")]
    assert edge["healthStatus"] == "Failure"
    assert edge["traffic"]["rates"]["httpPercentErr"] == "100.0"
    assert edge["traffic"]["responses"]["555"]["flags"] == {"FI": "100.0"}
    assert nodes["productpage/v1"]["healthStatus"] == "Failure"  # its outbound requests fail

    assert health["productpage"]["status"] == {"status": "Failure"}
    assert health["productpage"]["requests"]["outbound"]["http"]["555"] > 0
    assert health["reviews"]["status"] == {"status": "Healthy"}
    assert [w["name"] for w in health["reviews"]["workloadStatuses"]] == ["reviews-v1", "reviews-v2", "reviews-v3"]
    assert health["reviews"]["workloadStatuses"][0] == {
        "name": "reviews-v1", "desiredReplicas": 1, "currentReplicas": 1, "availableReplicas": 1, "syncedProxies": 1,
    }  # fmt: skip

    assert istio["validations"]["virtualservice"]["details.default"]["valid"] is True
    assert sorted(istio["resources"]) == ["DestinationRule", "Gateway", "VirtualService"]
    assert vs["validation"] == {
        "name": "details", "namespace": "default", "objectType": "virtualservice", "valid": True, "checks": [],
        "references": [],
    }  # fmt: skip


def test_validation_checks_come_from_the_analyzer_with_kialis_codes_and_paths(bookinfo: Bookinfo) -> None:
    rule = bookinfo.mesh.istio / "ratings-dr.yaml"
    rule.write_text(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: ratings}\n"
        "spec:\n  host: ratings\n  subsets:\n  - name: v9\n    labels: {version: v9}\n"
    )
    try:
        bookinfo.mesh.wait()

        def found() -> Any:
            (answer,) = call(bookinfo, "/api/namespaces/default/istio/destinationrule/ratings?validate=true")
            return answer

        dr = poll(lambda: found() if True else None, 10, "the DestinationRule in force")
    finally:
        rule.unlink()
        bookinfo.mesh.wait()
    assert dr["validation"]["valid"] is True  # an unreferenced subset's missing labels are info, as in Kiali
    assert dr["validation"]["checks"] == [
        {"code": "KIA0203", "message": "This subset's labels are not found in any matching host", "severity": "unknown",
         "path": "spec/subsets[0]", "line": dr["validation"]["checks"][0]["line"]},
    ]  # fmt: skip
    marked = dr["yaml"].splitlines()[dr["validation"]["checks"][0]["line"] - 1]
    assert "name: v9" in marked or "- " in marked  # the check's line is in the YAML the console shows


def test_lists_details_metrics_logs_and_config_dumps(bookinfo: Bookinfo) -> None:
    bookinfo.load(12)
    bookinfo.wait_scraped(bookinfo.scraped_total() + 0)
    namespaces, apps, workloads, services, workload, service, app = call(
        bookinfo,
        "/api/namespaces",
        "/api/namespaces/default/apps",
        "/api/namespaces/default/workloads",
        "/api/namespaces/default/services",
        "/api/namespaces/default/workloads/reviews-v2",
        "/api/namespaces/default/services/reviews",
        "/api/namespaces/default/apps/reviews",
    )
    default = next(n for n in namespaces if n["name"] == "default")
    assert default["counts"]["apps"] == 4 and default["counts"]["workloads"] == 6 and default["counts"]["services"] == 4
    assert [a["name"] for a in apps["applications"]] == ["details", "productpage", "ratings", "reviews"]
    assert apps["applications"][3]["versions"] == ["v1", "v2", "v3"]
    assert [w["name"] for w in workloads["workloads"]] == [
        "details-v1", "productpage-v1", "ratings-v1", "reviews-v1", "reviews-v2", "reviews-v3"
    ]  # fmt: skip
    assert [s["name"] for s in services["services"]] == ["details", "productpage", "ratings", "reviews"]
    assert workload["labels"] == {"app": "reviews", "version": "v2"}
    assert workload["serviceAccountNames"] == ["bookinfo-reviews"]
    assert [(p["name"], p["status"]) for p in workload["pods"]] == [("reviews-v2", "SYNCED")]
    assert workload["services"] == ["reviews"]
    assert service["service"]["host"] == "reviews.default.svc.cluster.local"
    assert sorted(e["workload"] for e in service["endpoints"]) == ["reviews-v1", "reviews-v2", "reviews-v3"]
    assert [w["workloadName"] for w in app["workloads"]] == ["reviews-v1", "reviews-v2", "reviews-v3"]

    metrics, outbound, logs, routes, traces = call(
        bookinfo,
        "/api/namespaces/default/workloads/productpage-v1/metrics?direction=inbound&duration=300s&step=15s",
        "/api/namespaces/default/apps/productpage/metrics?direction=outbound&duration=300s&step=15s",
        "/api/namespaces/default/workloads/reviews-v1/logs?tailLines=5&filter=GET%20/reviews",
        "/api/namespaces/default/pods/reviews-v1/config_dump/routes",
        "/api/namespaces/default/services/productpage/traces?limit=5",
    )
    assert max(v for _, v in metrics["request_count"][0]["datapoints"]) > 0
    assert {m["stat"] for m in metrics["request_duration_millis"]} >= {"avg", "0.5", "0.95", "0.99"}
    assert set(metrics) >= {"request_count", "request_error_count", "request_size", "response_size"}
    assert max(v for _, v in outbound["request_count"][0]["datapoints"]) > 0
    assert len(logs["entries"]) == 5
    assert all(
        e["container"] == "istio-proxy" and '"GET /reviews/0 HTTP/1.1" 200' in e["message"] for e in logs["entries"]
    )
    assert [e["timestampUnix"] for e in logs["entries"]] == sorted(e["timestampUnix"] for e in logs["entries"])
    assert "reviews.default.svc.cluster.local" in routes["text"]
    assert traces["tracingServiceName"] == "productpage.default" and traces["data"]

    async def errors() -> None:
        async with console(bookinfo) as get:
            assert "graphType" in (await get("/api/namespaces/graph?namespaces=default&graphType=pods", 400))["error"]
            assert "duration" in (await get("/api/namespaces/graph?namespaces=default&duration=soon", 400))["error"]
            await get("/api/namespaces/default/workloads/nosuch", 404)
            await get("/api/namespaces/default/istio/virtualservice/nosuch?validate=true", 404)
            await get("/api/namespaces/default/pods/reviews-v1/config_dump/everything", 400)

    asyncio.run(errors())
