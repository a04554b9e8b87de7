"""The graph's padlocks: an edge whose requests Istio's metrics say were mutual TLS
(`connection_security_policy="mutual_tls"`, what the destination's sidecar reports once it
terminates mTLS) carries Kiali's `isMTLS` and a padlock beside its label; plaintext edges carry
neither. The metrics are served as a sidecar serves them and scraped by the Debian `prometheus`
binary; the console is `sandbox console` reading that Prometheus; the page is headless Chromium."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.conftest import require
from tests.console.browser_support import shot
from tests.e2e.mesh_support import free_port, http_get, poll
from tests.factories import BOOKINFO

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
TOKEN = "p" * 32


def labels(src: str, dst: str, policy: str) -> str:
    """istio_requests_total's labels for requests from workload `src` to `dst`, destination reporter."""
    sns = "istio-system" if src == "istio-ingressgateway" else "default"
    sapp, sver = (src, "latest") if src == "istio-ingressgateway" else src.rsplit("-", 1)
    dapp, dver = dst.rsplit("-", 1)
    values = {
        "reporter": "destination", "source_cluster": "Kubernetes", "source_workload_namespace": sns,
        "source_workload": src, "source_canonical_service": sapp, "source_canonical_revision": sver,
        "source_principal": f"spiffe://cluster.local/ns/{sns}/sa/{sapp}", "destination_cluster": "Kubernetes",
        "destination_service_namespace": "default", "destination_service": f"{dapp}.default.svc.cluster.local",
        "destination_service_name": dapp, "destination_workload_namespace": "default", "destination_workload": dst,
        "destination_canonical_service": dapp, "destination_canonical_revision": dver, "request_protocol": "http",
        "response_code": "200", "grpc_response_status": "", "response_flags": "-",
        "connection_security_policy": policy,
    }  # fmt: skip
    return ",".join(f'{k}="{v}"' for k, v in values.items())


EDGES = [  # (source, destination, policy): productpage's call to details is plaintext
    ("istio-ingressgateway", "productpage-v1", "mutual_tls"),
    ("productpage-v1", "reviews-v1", "mutual_tls"),
    ("productpage-v1", "details-v1", "none"),
]


class Exporter(BaseHTTPRequestHandler):
    started = time.monotonic()

    def do_GET(self) -> None:
        count = int((time.monotonic() - self.started) * 5)  # 5 requests/s on every edge
        body = "# TYPE istio_requests_total counter\n" + "".join(
            f"istio_requests_total{{{labels(s, d, p)}}} {count}\n" for s, d, p in EDGES
        )
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = shutil.which("prometheus")
    require(binary is not None, "no prometheus binary (apt-get install prometheus)")
    work = tmp_path_factory.mktemp("padlocks")
    exporter = ThreadingHTTPServer(("127.0.0.1", 0), Exporter)
    threading.Thread(target=exporter.serve_forever, daemon=True).start()
    (work / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s}\nscrape_configs:\n- job_name: sidecars\n  static_configs:\n"
        f"  - targets: ['127.0.0.1:{exporter.server_address[1]}']\n"
    )
    prom_port, console_port = free_port(), free_port()
    prom = subprocess.Popen(
        [binary, f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={work / 'data'}",
         f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    shutil.copy(BOOKINFO / "compose.yaml", work / "compose.yaml")
    env = {**os.environ, "SANDBOX_CONSOLE_TOKEN": TOKEN}
    console = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "console", "--port", str(console_port), "-f", str(work / "compose.yaml"),
         "--prometheus", f"http://127.0.0.1:{prom_port}", "--control-plane", f"http://127.0.0.1:{free_port()}"],
        env=env, stdout=subprocess.DEVNULL, stderr=(work / "console.log").open("w"),
    )  # fmt: skip
    base = f"http://127.0.0.1:{console_port}"
    try:
        query = urllib.parse.urlencode({"query": "rate(istio_requests_total[10s]) > 0"})

        def answers(url: str) -> tuple[int, bytes]:
            try:
                return http_get(url)
            except OSError:  # not listening yet
                return 0, b""

        def scraped() -> bool:
            status, body = answers(f"http://127.0.0.1:{prom_port}/api/v1/query?{query}")
            return status == 200 and len(json.loads(body)["data"]["result"]) == len(EDGES)

        poll(scraped, 60, "Prometheus to hold a rate for every edge", interval=0.5)
        poll(lambda: answers(base + "/healthz/ready")[0] == 200, 30, "the console")
        # a rate needs two samples in the window at the console's (whole-second) query time
        poll(lambda: len(graph(base)) == len(EDGES), 30, "the console's graph to show every edge", interval=0.5)
        yield base
    finally:
        for process in (console, prom):
            process.terminate()
            process.wait(timeout=30)
        exporter.shutdown()


def graph(base: str) -> dict[tuple[str, str], dict[str, Any]]:
    status, body = http_get(f"{base}/api/namespaces/graph?namespaces=default&graphType=workload&duration=15s")
    assert status == 200, body[:300]
    data = json.loads(body)
    nodes = {n["data"]["id"]: n["data"].get("workload") for n in data["elements"]["nodes"]}
    return {(nodes[e["data"]["source"]], nodes[e["data"]["target"]]): e["data"] for e in data["elements"]["edges"]}


def test_kialis_is_mtls_follows_the_connection_security_policy(console: str) -> None:
    edges = graph(console)
    assert edges[("istio-ingressgateway", "productpage-v1")]["isMTLS"] == "100"
    assert edges[("productpage-v1", "reviews-v1")]["isMTLS"] == "100"
    assert "isMTLS" not in edges[("productpage-v1", "details-v1")]


def test_the_graph_draws_a_padlock_on_each_mutual_tls_edge(console: str, page: Any) -> None:
    page.goto(f"{console}/console/graph/namespaces?namespaces=default&graphType=workload&duration=15s&refresh=0")
    page.wait_for_function("window.sandboxGraph && window.sandboxGraph.refreshes >= 1")
    page.wait_for_function("document.getElementById('locks').dataset.locks !== undefined")
    secure = page.evaluate(
        """() => {
            const name = (n) => n.data('workload') || 'svc:' + n.data('service');
            return window.sandboxGraph.cy.edges().filter((e) => parseFloat(e.data('isMTLS') || '0') > 0)
                .map((e) => [e.id(), name(e.source()) + ' -> ' + name(e.target())]);
        }"""
    )
    assert sorted(edge for _, edge in secure) == [
        "istio-ingressgateway -> svc:productpage", "productpage-v1 -> svc:reviews",
        "svc:productpage -> productpage-v1", "svc:reviews -> reviews-v1",
    ]  # fmt: skip
    locks = page.eval_on_selector_all("#locks .lock", "els => els.map((e) => [e.dataset.edge, e.title])")
    assert sorted(edge for edge, _ in locks) == sorted(edge for edge, _ in secure)  # one each, none on details'
    assert all(title == "mTLS 100% of requests" for _, title in locks)
    shot(page, "graph-mtls-padlocks")
    page.uncheck("#security")  # Kiali's Security display option
    page.wait_for_function("document.querySelectorAll('#locks .lock').length === 0")
