"""The console in headless Chromium (Debian's, driven by Playwright for Python) against the running
Bookinfo: the graph with its nodes and rates, traffic moving to reviews v3 after `sandbox apply`,
a productpage trace through every service, a workload's access log. Every page is screenshotted
into tests/artifacts/console/ for a person to look at."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from typing import Any

import pytest

from tests.console.browser_support import graph_state, shot, warm
from tests.console.conftest import Bookinfo
from tests.e2e.mesh_support import http_get, poll

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def test_the_graph_shows_bookinfo_with_rates(bookinfo: Bookinfo, page: Any) -> None:
    warm(bookinfo)
    page.goto(
        f"{bookinfo.console}/console/graph/namespaces?namespaces=default&graphType=versionedApp&duration=60s&refresh=0"
    )
    page.wait_for_function("window.sandboxGraph && window.sandboxGraph.refreshes >= 1 && window.sandboxGraph.cy")
    page.wait_for_timeout(500)  # the layout settles
    state = graph_state(page)
    assert sorted(state["nodes"]) == sorted(
        ["istio-ingressgateway", "productpage", "productpage v1", "details", "details v1", "reviews",
         "reviews v1", "reviews v2", "reviews v3", "ratings", "ratings v1"]
    )  # fmt: skip
    edge = state["edges"]["productpage v1 -> details"]
    # the rate (and errors, an earlier test's fault); sidecars speak mutual TLS: every request of it
    rate = re.match(r"(\d+\.\d\d)rps(\n[\d.]+%err)?$", edge["label"])
    assert rate is not None and float(rate.group(1)) > 0, edge["label"]
    assert float(edge.get("isMTLS") or 0) > 0, edge  # (a fault an earlier test injected has no connection)
    assert "istio-ingressgateway -> productpage" in state["edges"]
    gateway = page.evaluate("() => window.sandboxGraph.cy.nodes().filter((n) => n.data('isRoot')).data('label')")
    assert gateway == "istio-ingressgateway\n[GW ROOT]"  # the ingress gateway is the graph's root, badged
    assert all(re.match(r"\d+\.\d\drps", e["label"]) for e in state["edges"].values()), state["edges"]
    secure = [name for name, e in state["edges"].items() if float(e.get("isMTLS") or 0) > 0]
    assert sorted(secure) == sorted(state["edges"]), state["edges"]  # sidecar to sidecar, all of them
    page.wait_for_function(f"document.querySelectorAll('#locks .lock').length === {len(secure)}")  # a padlock each
    assert "11 nodes" in page.inner_text("#graph-status")
    shot(page, "graph-versioned-app")

    # the side panel shows a selected edge's traffic
    page.evaluate(
        "() => window.sandboxGraph.cy.edges().filter((e) => e.target().data('service') === 'details').emit('tap')"
    )
    assert "HTTP" in page.inner_text("#side-body") and "http" in page.inner_text("#side-body")

    # hide and seek: "rt > X" finds exactly the edges slower than X. Response times are asked of the
    # API (Kiali's responseTime appender) once a label or a find shows them
    assert not any("responseTime" in e for e in state["edges"].values())
    page.select_option("#edgeLabels", "rt")
    page.wait_for_function(f"window.sandboxGraph.refreshes > {state['refreshes']}")
    state = graph_state(page)
    rts = sorted(float(e["responseTime"]) for e in state["edges"].values() if e.get("responseTime"))
    assert len(rts) == len(state["edges"])
    threshold = rts[-1] - 0.5  # below the slowest edge: at least one is found
    page.fill("#find", f"rt > {threshold:g}")
    found = page.evaluate("() => window.sandboxGraph.cy.edges('.found').length")
    assert found == sum(rt > threshold for rt in rts) and found > 0
    labels = page.evaluate("() => window.sandboxGraph.cy.edges().map((e) => e.data('label'))")
    assert all(label.endswith("ms") or label.endswith("s") for label in labels if label)
    page.fill("#hide", f"rt <= {threshold:g}")
    hidden = page.evaluate("() => window.sandboxGraph.cy.edges('.hidden').length")
    assert hidden == sum(rt <= threshold for rt in rts)
    shot(page, "graph-response-time-find-hide")


def test_traffic_moves_to_reviews_v3_within_two_refreshes(bookinfo: Bookinfo, page: Any) -> None:
    warm(bookinfo, 10)
    stop = threading.Event()
    command = [
        sys.executable,
        "-m",
        "sandbox",
        "load",
        bookinfo.mesh.ingress + "/productpage",
        "--qps",
        "8",
        "-t",
        "5s",
    ]

    def traffic() -> None:
        while not stop.is_set():
            subprocess.run(command, capture_output=True, timeout=60, check=False)

    sender = threading.Thread(target=traffic, daemon=True)
    sender.start()
    try:
        page.goto(
            f"{bookinfo.console}/console/graph/namespaces?namespaces=default&graphType=versionedApp"
            "&duration=15s&refresh=15"
        )
        page.wait_for_function("window.sandboxGraph && window.sandboxGraph.refreshes >= 1")
        bookinfo.mesh.apply("destination-rule-all.yaml", "virtual-service-reviews-v3.yaml")
        applied_at = graph_state(page)["refreshes"]
        page.wait_for_function(f"window.sandboxGraph.refreshes >= {applied_at + 2}", timeout=45_000)
        page.wait_for_timeout(500)
        state = graph_state(page)
        to_reviews = {
            k: float(v["traffic"]["rates"].get("http", 0))
            for k, v in state["edges"].items()
            if k.startswith("reviews ->")
        }
        assert set(to_reviews) == {"reviews -> reviews v3"}, to_reviews  # v1 and v2 get nothing in the window
        assert "reviews v3 -> ratings" in state["edges"]
        node = page.evaluate(
            "() => window.sandboxGraph.cy.nodes().filter((n) => n.data('service') === 'reviews').data()"
        )
        assert node["hasVS"] and node["hasRequestRouting"]  # the badges of the rule just applied
        shot(page, "graph-after-reviews-v3")
    finally:
        stop.set()
        sender.join(timeout=30)
        bookinfo.mesh.reset()


def test_a_productpage_trace_shows_every_bookinfo_service(bookinfo: Bookinfo, page: Any) -> None:
    bookinfo.load(10)

    def traces() -> bool:  # sidecars send their spans in batches
        status, body = http_get(f"{bookinfo.console}/api/traces?service=ratings.default&limit=1&lookback=1h")
        return status == 200 and bool(json.loads(body)["data"])

    poll(traces, 20, "spans in the console's collector")
    page.goto(f"{bookinfo.console}/console/namespaces/default/applications/productpage?tab=traces")
    page.wait_for_selector("#traces-list table")
    shot(page, "app-productpage-traces")
    # the trace with the most spans went through reviews v2 or v3, which call ratings
    links = page.evaluate(
        """() => Array.from(document.querySelectorAll('#traces-list tbody tr')).map((tr) => [
            parseInt(tr.children[3].textContent, 10), tr.querySelector('a').getAttribute('href')])"""
    )
    href = max(links)[1]
    page.goto(bookinfo.console + href)
    services = page.evaluate(
        "() => Array.from(document.querySelectorAll('#trace tbody tr td:first-child')).map((td) => td.textContent)"
    )
    text = " ".join(services)
    for service in (
        "istio-ingressgateway.istio-system",
        "productpage.default",
        "details.default",
        "reviews.default",
        "ratings.default",
    ):
        assert service in text, (service, services)
    shot(page, "trace")
    # from a span to its workload
    page.click("a.span-workload >> text=productpage-v1")
    page.wait_for_url("**/console/namespaces/default/workloads/productpage-v1")
    assert "productpage-v1" in page.inner_text("h1")


def test_a_workloads_logs_show_its_access_log_and_follow_it(bookinfo: Bookinfo, page: Any) -> None:
    bookinfo.load(5)
    page.goto(f"{bookinfo.console}/console/namespaces/default/workloads/reviews-v1?tab=logs")
    page.wait_for_selector("#logview .line.c-istio-proxy")
    lines = page.inner_text("#logview")
    assert '"GET /reviews/0 HTTP/1.1" 200' in lines and "inbound|9080" in lines
    page.fill("#log-filter", "GET /reviews/0")
    page.wait_for_timeout(800)
    assert "Follow" in page.inner_text("#tab-logs") and page.is_checked("#log-follow")
    last = page.evaluate("() => Array.from(document.querySelectorAll('#logview .line')).pop().textContent")
    bookinfo.load(9)  # some of it reaches reviews v1; the view follows without a reload
    page.wait_for_function(
        "(last) => Array.from(document.querySelectorAll('#logview .line')).pop().textContent !== last",
        arg=last,
        timeout=15_000,
    )
    shot(page, "workload-logs")


def test_every_page_renders_for_a_screenshot(bookinfo: Bookinfo, page: Any) -> None:
    bookinfo.load(10)
    pages = {
        "overview": "/console/overview",
        "applications": "/console/applications",
        "workloads": "/console/workloads",
        "services": "/console/services",
        "istio-config": "/console/istio",
        "istio-object": "/console/namespaces/default/istio/virtualservice/bookinfo",
        "proxies": "/console/proxies",
        "app-reviews": "/console/namespaces/default/applications/reviews",
        "service-reviews": "/console/namespaces/default/services/reviews",
        "workload-metrics": "/console/namespaces/default/workloads/productpage-v1?tab=inbound",
        "workload-envoy": "/console/namespaces/default/workloads/reviews-v1?tab=envoy",
    }
    for name, path in pages.items():
        response = page.goto(bookinfo.console + path)
        assert response is not None and response.status == 200, (path, response and response.status)
        page.wait_for_load_state("networkidle")
        if name == "workload-metrics":
            page.wait_for_selector(".chart .uplot")
        if name == "workload-envoy":
            page.wait_for_function("document.querySelector('#envoy-dump').textContent.includes('VIRTUAL SERVICE')")
        shot(page, name)
    page.goto(bookinfo.console + "/console/applications")
    rows = page.inner_text("#list").splitlines()
    assert any(line.startswith("Healthy") and "reviews" in line for line in rows), rows
