"""Changing the mesh from the console in headless Chromium, against the running Bookinfo: the
traffic-shifting wizard sending everything to reviews v3 moves the graph's traffic there within two
refreshes; a YAML edit naming a subset that does not exist shows KIA1107 at its line and is not
saved; the fault-injection wizard's delay shows in a trace of productpage. Screenshots go to
tests/artifacts/console/. Each test puts the rules back."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.console.browser_support import graph_state, shot, warm
from tests.console.conftest import Bookinfo
from tests.e2e.mesh_support import poll

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@contextmanager
def steady_traffic(bookinfo: Bookinfo, qps: int = 8) -> Iterator[None]:
    """`sandbox load` on productpage, over and over, until the block ends."""
    stop = threading.Event()
    command = [
        sys.executable,
        "-m",
        "sandbox",
        "load",
        bookinfo.mesh.ingress + "/productpage",
        "--qps",
        str(qps),
        "-t",
        "5s",
    ]

    def traffic() -> None:
        while not stop.is_set():
            subprocess.run(command, capture_output=True, timeout=60, check=False)

    sender = threading.Thread(target=traffic, daemon=True)
    sender.start()
    try:
        yield
    finally:
        stop.set()
        sender.join(timeout=30)


def open_wizard(page: Any, bookinfo: Bookinfo, service: str, wizard: str) -> None:
    page.goto(f"{bookinfo.console}/console/namespaces/default/services/{service}")
    page.wait_for_selector("body[data-actions=ready]")
    page.click("#actions-toggle")
    page.click(f"button[data-wizard={wizard}]")
    page.wait_for_selector(f"body[data-wizard={wizard}]")


def weight(page: Any, workload: str, value: int, table: str = "weights") -> None:
    """Move a workload's slider as a person does (its number box): the others follow to keep 100 %."""
    box = f"#{table} input[type=number][data-workload={workload}]"
    page.fill(box, str(value))
    page.dispatch_event(box, "input")


def create(page: Any) -> str:
    """Preview (the YAML, validated as a dry run), then Create: the page comes back once every sidecar ACKed."""
    page.click("#wizard-preview")
    page.wait_for_selector("#wizard-yaml")
    yaml = str(page.inner_text("#wizard-yaml"))
    assert "Valid:" in page.inner_text("#wizard-result")
    page.click("#wizard-create")
    page.wait_for_selector("#notice .notice.ok >> text=ACKed the new config", timeout=30_000)
    return yaml


def test_the_traffic_shifting_wizard_moves_the_graphs_traffic_to_v3_within_two_refreshes(
    bookinfo: Bookinfo, signed_in: Any
) -> None:
    warm(bookinfo, 10)
    graph = signed_in.context.new_page()
    with bookinfo.rules_restored(), steady_traffic(bookinfo):
        graph.goto(
            f"{bookinfo.console}/console/graph/namespaces?namespaces=default&graphType=versionedApp&duration=15s&refresh=15"
        )
        graph.wait_for_function("window.sandboxGraph && window.sandboxGraph.refreshes >= 1")
        before = {k for k in graph_state(graph)["edges"] if k.startswith("reviews ->")}
        assert len(before) >= 2, before  # reviews' traffic is spread over its versions

        open_wizard(signed_in, bookinfo, "reviews", "traffic_shifting")
        weight(signed_in, "reviews-v3", 100)
        values = signed_in.eval_on_selector_all("#weights input[type=number]", "els => els.map(e => Number(e.value))")
        assert values == [0, 0, 100]  # v1 and v2 followed the slider down
        signed_in.click("#wizard-preview")
        signed_in.wait_for_selector("#wizard-yaml")
        shot(signed_in, "wizard-traffic-shifting-preview")
        yaml = create(signed_in)
        assert "kiali_wizard: traffic_shifting" in yaml and "subset: v3\n      weight: 100" in yaml
        shot(signed_in, "wizard-traffic-shifting-done")

        applied_at = graph_state(graph)["refreshes"]
        graph.wait_for_function(f"window.sandboxGraph.refreshes >= {applied_at + 2}", timeout=45_000)
        graph.wait_for_timeout(500)
        state = graph_state(graph)
        to_reviews = {k for k in state["edges"] if k.startswith("reviews ->")}
        assert to_reviews == {"reviews -> reviews v3"}, to_reviews  # v1 and v2 get nothing in the window
        node = graph.evaluate(
            "() => window.sandboxGraph.cy.nodes().filter((n) => n.data('service') === 'reviews').data()"
        )
        assert node["hasVS"] and node["hasTrafficShifting"]  # the badges of the rule the wizard made
        shot(graph, "graph-after-traffic-shifting-wizard")


def test_a_yaml_edit_naming_a_missing_subset_shows_kia1107_at_its_line_and_is_not_saved(
    bookinfo: Bookinfo, signed_in: Any
) -> None:
    page = signed_in
    file = bookinfo.mesh.istio / "bookinfo-gateway.yaml"
    before = file.read_text()
    page.goto(f"{bookinfo.console}/console/namespaces/default/istio/virtualservice/bookinfo")
    page.wait_for_selector("body[data-editor=ready]")
    text = page.evaluate("() => window.sandboxEditor.cm.getValue()")
    assert text.startswith("apiVersion: networking.istio.io/v1\nkind: VirtualService")  # its document, as written
    edited = text.replace("        host: productpage\n", "        host: productpage\n        subset: v4\n")
    assert edited != text
    page.evaluate("(t) => window.sandboxEditor.cm.setValue(t)", edited)
    line = edited.splitlines().index("    - destination:") + 1

    # marked as you type: the same validation Save runs, at its line, its message on hover
    page.wait_for_function(f"(document.body.dataset.checks || '').includes('KIA1107@{line}')")
    marker = page.evaluate(
        f"() => !!(window.sandboxEditor.cm.lineInfo({line - 1}).gutterMarkers || {{}})['CodeMirror-lint-markers']"
    )
    assert marker, f"no mark in the gutter at line {line}"
    assert page.inner_text(f"#checks .check[data-line='{line}']").startswith("KIA1107")
    page.click("#save")
    page.wait_for_selector("body[data-saved=refused]")
    assert f"KIA1107 at line {line}" in page.inner_text("#editor-message") and "Nothing was written" in page.inner_text(
        "#editor-message"
    )
    page.hover(f".CodeMirror-code > div:nth-child({line}) .CodeMirror-lint-marker")
    page.wait_for_selector(".CodeMirror-lint-tooltip >> text=KIA1107 Subset not found")
    page.wait_for_timeout(600)  # the tooltip fades in
    shot(page, "editor-kia1107-refused")
    assert file.read_text() == before  # not saved
    # the file the user wrote is what the console shows again
    page.reload()
    page.wait_for_selector("body[data-editor=ready]")
    assert page.evaluate("() => window.sandboxEditor.cm.getValue()") == text


def test_the_fault_injection_wizards_delay_shows_in_a_trace_of_productpage(bookinfo: Bookinfo, signed_in: Any) -> None:
    page = signed_in
    with bookinfo.rules_restored():
        open_wizard(page, bookinfo, "ratings", "fault_injection")
        page.check("#delay-on")
        page.fill("#delay-percent", "100")
        page.fill("#delay-fixed", "1.5s")
        yaml = create(page)
        assert "fixedDelay: 1.5s" in yaml and "kiali_wizard: fault_injection" in yaml
        bookinfo.load(6, qps=6)

        def slow_trace() -> str | None:  # reviews v2 and v3 call ratings: their traces take the delay
            page.goto(f"{bookinfo.console}/console/namespaces/default/applications/productpage?tab=traces")
            page.wait_for_selector("#traces-list table, #traces-list .empty")
            rows = page.evaluate(
                """() => Array.from(document.querySelectorAll('#traces-list tbody tr')).map((tr) => [
                    parseFloat(tr.children[2].textContent), tr.querySelector('a').getAttribute('href')])"""
            )
            slow = [href for ms, href in rows if ms >= 1500]
            return slow[0] if slow else None

        href = poll(slow_trace, 30, "a productpage trace that took the injected delay", interval=1.0)
        shot(page, "traces-productpage-delayed")
        page.goto(bookinfo.console + href)
        rows = page.evaluate(
            """() => Array.from(document.querySelectorAll('#trace tbody tr')).map((tr) => [
                tr.children[0].textContent, tr.children[1].textContent, tr.children[3].textContent])"""
        )
        delayed = [r for r in rows if "response_flags=DI" in r[1]]  # Envoy's flag for an injected delay
        assert delayed, rows
        assert any("ratings" in r[1] for r in delayed)
        seconds = [float(m.group(1)) for r in delayed for m in [re.match(r"\s*([\d.]+)s", r[2])] if m]
        assert seconds and min(seconds) >= 1.5, delayed
        shot(page, "trace-fault-injection-delay")


def test_the_request_routing_wizard_builds_rules_in_evaluation_order(bookinfo: Bookinfo, signed_in: Any) -> None:
    page = signed_in
    file_names = sorted(p.name for p in bookinfo.mesh.istio.iterdir())
    open_wizard(page, bookinfo, "reviews", "request_routing")
    # rule: jason goes to v2 (a header match)
    page.select_option("#match-field", "headers")
    page.fill("#match-header", "end-user")
    page.select_option("#match-op", "exact")
    page.fill("#match-value", "jason")
    page.click("#match-add")
    weight(page, "reviews-v2", 100, "rule-weights")
    page.click("#rule-add")
    # rule: everyone else to v1 (no match: the catch-all), then put it first and back
    weight(page, "reviews-v1", 100, "rule-weights")
    page.click("#rule-add")
    rules = lambda: page.eval_on_selector_all("#rules .rule", "els => els.map((e) => e.textContent)")  # noqa: E731
    assert "end-user" in rules()[0] and "any request" in rules()[1]
    page.click("#rules [data-up='1']")
    assert "any request" in rules()[0]
    page.click("#rules [data-down='0']")
    assert "end-user" in rules()[0]
    page.click("#wizard-preview")
    page.wait_for_selector("#wizard-yaml")
    yaml = page.inner_text("#wizard-yaml")
    first, second = yaml.split("http:\n", 1)[1].split("\n  - ")[:2]
    assert "end-user:\n          exact: jason" in first and "subset: v2\n      weight: 100" in first
    assert "match" not in second and "subset: v1\n      weight: 100" in second
    assert "Valid:" in page.inner_text("#wizard-result")
    shot(page, "wizard-request-routing-preview")
    page.click("#wizard-cancel")
    assert sorted(p.name for p in bookinfo.mesh.istio.iterdir()) == file_names  # a preview writes nothing


SECURITY = """apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: default}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: productpage-viewer, namespace: default}
spec:
  selector: {matchLabels: {app: productpage}}
  action: ALLOW
  rules: [{from: [{source: {principals: [cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-purge, namespace: istio-system}
spec:
  action: DENY
  rules: [{to: [{operation: {methods: [PURGE]}}]}]
"""


def test_the_security_view_shows_mtls_per_port_and_policies_in_evaluation_order(
    bookinfo: Bookinfo, signed_in: Any
) -> None:

    page = signed_in
    with bookinfo.rules_restored():
        from sandbox.operator.apply import Input, write
        from sandbox.operator.edit import plan_change

        plan = plan_change(bookinfo.mesh.istio, bookinfo.compose, [Input("-", SECURITY)])
        assert plan.ok, [d.format() for d in plan.refused]
        write(plan)
        bookinfo.mesh.wait()
        page.goto(f"{bookinfo.console}/console/security?namespaces=default")
        row = page.locator("tr[data-workload=productpage-v1]")
        assert row.locator(".mtls-port[data-port='9080']").get_attribute("data-mode") == "STRICT"
        assert "namespace-wide" in row.inner_text() and "default/default" in row.inner_text()
        actions = row.locator(".policy").evaluate_all("els => els.map((e) => e.dataset.action)")
        assert actions == ["DENY", "ALLOW"]  # Istio's order; the root namespace's DENY applies mesh-wide
        assert "mesh-wide" in row.locator(".policy").first.inner_text()
        text = row.inner_text()
        assert "SBX701" not in text  # the sidecars enforce both kinds: nothing says otherwise
        details = page.locator("tr[data-workload=details-v1]")
        assert details.locator(".policy").evaluate_all("els => els.map((e) => e.dataset.action)") == ["DENY"]
        shot(page, "security-view")
        page.goto(f"{bookinfo.console}/console/namespaces/default/workloads/productpage-v1")
        card = page.inner_text("#card-security")
        assert "STRICT" in card and "productpage-viewer" in card
        shot(page, "workload-security-card")
