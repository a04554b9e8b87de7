"""The seed talk's Kiali demo, end to end in headless Chromium on the running Bookinfo, each step
done the way the talk does it in Kiali and screenshotted (tests/artifacts/console/demo-*.png):

1. mesh visualization: the versioned-app graph of Bookinfo;
2. fault injection: the Fault Injection wizard aborts ratings with 503, the graph's edges to it turn red;
3. configuration validation: a DestinationRule subset whose labels match no workload is shown red
   at its line ("This subset's labels are not found in any matching host") and is not saved;
4. weighted routing: the Traffic Shifting wizard's sliders send half of reviews to v1, half to v3;
5. tracing: a productpage trace through every service;
6. traffic stats: productpage's inbound request volume.
The rules are put back at the end. The 503s of step 2 stay in Prometheus' 10-minute health window
(reviews, which calls ratings, is unhealthy meanwhile): this module comes last, in file order, of
those sharing the session's mesh."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from tests.console.browser_support import graph_state, shot, warm
from tests.console.conftest import Bookinfo
from tests.console.test_browser_changes import create, open_wizard, weight
from tests.e2e.mesh_support import Browser, poll, reviews_shown

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
GRAPH = "/console/graph/namespaces?namespaces=default&graphType=versionedApp&duration=15s&refresh=0"


def refreshed(page: Any) -> dict[str, Any]:
    """The graph once more, as the Refresh button draws it."""
    done = graph_state(page)["refreshes"]
    page.click("#refresh-now")
    page.wait_for_function(f"window.sandboxGraph.refreshes > {done}")
    return graph_state(page)


def test_the_kiali_demo_of_the_seed_talk(bookinfo: Bookinfo, signed_in: Any) -> None:
    page = signed_in
    page.on("dialog", lambda dialog: dialog.accept())  # "Delete Traffic Routing?" is answered yes
    with bookinfo.rules_restored():
        # 1. mesh visualization
        warm(bookinfo)
        page.goto(bookinfo.console + GRAPH.replace("duration=15s", "duration=60s"))
        page.wait_for_function("window.sandboxGraph && window.sandboxGraph.refreshes >= 1")
        page.wait_for_timeout(500)
        nodes = set(graph_state(page)["nodes"])
        assert {"productpage v1", "reviews v1", "reviews v2", "reviews v3", "ratings v1", "details v1"} <= nodes
        shot(page, "demo-1-mesh-visualization")

        # 2. fault injection: ratings answers 503 to everyone
        open_wizard(page, bookinfo, "ratings", "fault_injection")
        page.check("#abort-on")
        page.fill("#abort-percent", "100")
        page.fill("#abort-status", "503")
        assert "httpStatus: 503" in create(page)
        shown = Counter(reviews_shown(Browser(bookinfo.mesh.ingress).get()[1]) for _ in range(12))
        assert shown["ratings-error"] > 0 and set(shown) <= {"none", "ratings-error"}, shown  # v1 calls no ratings
        page.goto(bookinfo.console + GRAPH)
        page.wait_for_function("window.sandboxGraph && window.sandboxGraph.refreshes >= 1")

        def red() -> dict[str, Any] | None:
            bookinfo.load(10, qps=10)
            edges = refreshed(page)["edges"]
            into = [e for k, e in edges.items() if k.startswith("reviews v") and k.endswith("-> ratings")]
            return edges if into and all(e["healthStatus"] == "Failure" for e in into) else None

        edges = poll(red, 60, "the edges into ratings to turn red", interval=1.0)
        for key, edge in edges.items():
            if key.startswith("reviews v") and key.endswith("-> ratings"):
                assert "FI" in edge["traffic"]["responses"]["503"]["flags"], edge  # Envoy's flag: fault injected
        node = page.evaluate(
            "() => window.sandboxGraph.cy.nodes().filter((n) => n.data('service') === 'ratings').data()"
        )
        assert node["hasFaultInjection"]
        shot(page, "demo-2-fault-injection")

        # 3. configuration validation: the wizard's DestinationRule, its subset's labels matching nothing
        page.goto(f"{bookinfo.console}/console/namespaces/default/istio/destinationrule/ratings")
        page.wait_for_selector("body[data-editor=ready]")
        text = page.evaluate("() => window.sandboxEditor.cm.getValue()")
        edited = text.replace("version: v1", "version: v9")
        page.evaluate("(t) => window.sandboxEditor.cm.setValue(t)", edited)
        line = edited.splitlines().index("  - name: v1") + 1
        page.wait_for_function(f"(document.body.dataset.checks || '').includes('KIA0203@{line}')")
        page.click("#save")
        page.wait_for_selector("body[data-saved=refused]")
        assert "This subset's labels are not found in any matching host" in page.inner_text("#checks")
        assert page.locator(f".CodeMirror-code > div:nth-child({line}).CodeMirror-lint-line-error").count() == 1
        page.hover(f".CodeMirror-code > div:nth-child({line}) .CodeMirror-lint-marker")
        page.wait_for_selector(".CodeMirror-lint-tooltip >> text=KIA0203")
        page.wait_for_timeout(600)  # the tooltip fades in
        shot(page, "demo-3-configuration-validation")
        assert "version: v9" not in (bookinfo.mesh.istio / "destinationrule-default-ratings.yaml").read_text()

        page.goto(f"{bookinfo.console}/console/namespaces/default/services/ratings")
        page.wait_for_selector("body[data-actions=ready]")
        page.click("#actions-toggle")
        page.click("#delete-routing")
        page.wait_for_selector("#notice >> text=Deleted")
        assert not (bookinfo.mesh.istio / "virtualservice-default-ratings.yaml").exists()

        # 4. weighted routing: half of reviews to v1 (no stars), half to v3 (red stars)
        open_wizard(page, bookinfo, "reviews", "traffic_shifting")
        weight(page, "reviews-v2", 0)
        weight(page, "reviews-v1", 50)
        values = page.eval_on_selector_all("#weights input[type=range]", "els => els.map(e => Number(e.value))")
        assert values == [50, 0, 50]
        shot(page, "demo-4-weighted-routing-wizard")
        create(page)
        shown = Counter(reviews_shown(Browser(bookinfo.mesh.ingress).get()[1]) for _ in range(40))
        assert set(shown) == {"none", "red"} and min(shown.values()) >= 8, shown  # binomial(40, 1/2): 4 sd
        page.goto(bookinfo.console + GRAPH)
        page.wait_for_function("window.sandboxGraph && window.sandboxGraph.refreshes >= 1")

        def split() -> set[str] | None:
            bookinfo.load(10, qps=10)
            into = {k for k in refreshed(page)["edges"] if k.startswith("reviews ->")}
            return into if into == {"reviews -> reviews v1", "reviews -> reviews v3"} else None

        poll(split, 60, "reviews' traffic to go to v1 and v3 only", interval=1.0)
        page.select_option("#edgeLabels", "distribution")
        page.wait_for_timeout(300)
        shot(page, "demo-4-weighted-routing-graph")

        # 5. tracing: a productpage trace through every service
        page.goto(f"{bookinfo.console}/console/namespaces/default/applications/productpage?tab=traces")
        page.wait_for_selector("#traces-list table")
        rows = page.evaluate(
            """() => Array.from(document.querySelectorAll('#traces-list tbody tr')).map((tr) => [
                parseInt(tr.children[3].textContent, 10), tr.querySelector('a').getAttribute('href')])"""
        )
        page.goto(bookinfo.console + max(rows)[1])
        services = " ".join(
            page.eval_on_selector_all("#trace tbody tr td:first-child", "els => els.map(e => e.textContent)")
        )
        for service in (
            "istio-ingressgateway",
            "productpage.default",
            "details.default",
            "reviews.default",
            "ratings.default",
        ):
            assert service in services, services
        shot(page, "demo-5-tracing")

        # 6. traffic stats: productpage's inbound requests
        page.goto(f"{bookinfo.console}/console/namespaces/default/workloads/productpage-v1?tab=inbound")
        page.wait_for_selector(".chart[data-metric=request_count] .uplot")
        total = page.evaluate(
            """async () => {
                const api = '/api/namespaces/default/workloads/productpage-v1/metrics';
                const r = await fetch(api + '?direction=inbound&duration=600');
                const d = await r.json();
                return Math.max(...d.request_count.flatMap((s) => s.datapoints.map((p) => p[1])));
            }"""
        )
        assert total > 0
        shot(page, "demo-6-traffic-stats")
