"""Istio's circuit-breaking and mirroring tasks on the httpbin sample, observed from outside.

Circuit breaking: `sandbox load` through the ingress gateway (whose calls to httpbin obey the
DestinationRule as any client proxy's do), and `fortio load` from inside the mesh (the fortio
workload's REST API, as `kubectl exec fortio -- fortio load` in the task). Mirroring: requests
sent from the fortio workload, read back from each httpbin version's log.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from mesh_support import Mesh, http_get, poll

from tests.conftest import require

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]  # the compose runtime may build its image
STATS_FILTER = "httpbin.default.svc.cluster.local.upstream_rq_pending_overflow"


@pytest.fixture
def mesh(httpbin: Mesh) -> Iterator[Mesh]:
    yield httpbin
    httpbin.reset()


def load_json(mesh: Mesh, *args: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(mesh.sandbox("load", *args, "-o", "json").stdout)
    return data


def share_503(result: dict[str, Any]) -> float:
    codes = result["RetCodes"]
    return codes.get("503", 0) / sum(codes.values())


def overflow_count(mesh: Mesh, workload: str) -> int:
    _, body = http_get(f"{mesh.admin(workload)}/stats?filter={STATS_FILTER}")
    match = re.search(rb"upstream_rq_pending_overflow: (\d+)", body)
    return int(match.group(1)) if match else 0


def test_circuit_breaking_with_sandbox_load(mesh: Mesh) -> None:
    mesh.apply("destination-rule-circuit-breaker.yaml")
    assert load_json(mesh, f"{mesh.ingress}/get", "-n", "3")["RetCodes"] == {"200": 3}  # one at a time: fine
    two = load_json(mesh, f"{mesh.ingress}/get", "-c", "2", "--qps", "0", "-n", "20")
    three = load_json(mesh, f"{mesh.ingress}/get", "-c", "3", "--qps", "0", "-n", "30")
    assert set(two["RetCodes"]) <= {"200", "503"} and set(three["RetCodes"]) <= {"200", "503"}
    # Istio's docs show 15% with 2 connections and 63% with 3; this proxy (slower than Envoy, more
    # so in containers) overflows more at 2, so: some 503s at 2, at least 35% at 3, and not fewer at
    # 3 than at 2 (0.15 allows for the noise of 20 and 30 calls).
    assert 0 < share_503(two) < 1, two["RetCodes"]
    assert share_503(three) >= 0.35, three["RetCodes"]
    assert share_503(three) >= share_503(two) - 0.15, (two["RetCodes"], three["RetCodes"])
    rejected = two["RetCodes"]["503"] + three["RetCodes"].get("503", 0)

    def uo_lines() -> int:
        log = mesh.logs("istio-ingressgateway", proxy=True)
        return sum('"GET /get HTTP/1.1" 503 UO ' in line for line in log.splitlines())

    poll(lambda: uo_lines() == rejected, 10, f"{rejected} 503 UO lines in the gateway's access log")
    assert overflow_count(mesh, "istio-ingressgateway") == rejected


def prometheus_uo(mesh: Mesh) -> int:
    query = 'sum(istio_requests_total{source_workload="istio-ingressgateway",response_code="503",response_flags="UO"})'
    url = f"{mesh.record['urls']['prometheus']}/api/v1/query?{urllib.parse.urlencode({'query': query})}"
    status, body = http_get(url)
    assert status == 200, body
    result = json.loads(body)["data"]["result"]
    return int(float(result[0]["value"][1])) if result else 0


def gateway_scraped_after(mesh: Mesh, moment: float) -> bool:
    """Prometheus scraped the ingress gateway after `moment` (so it has everything sent before)."""
    _, body = http_get(f"{mesh.record['urls']['prometheus']}/api/v1/targets")
    for target in json.loads(body)["data"]["activeTargets"]:
        if target["labels"].get("pod") == "istio-ingressgateway":
            stamp = re.sub(r"(\.\d{6})\d+", r"\1", target["lastScrape"])  # nanoseconds -> micro
            return bool(dt.datetime.fromisoformat(stamp).timestamp() > moment)
    return False


def test_circuit_breaking_shows_in_istio_requests_total(mesh: Mesh) -> None:
    require(mesh.record["urls"].get("prometheus") is not None, "Prometheus is not installed (metrics are off)")
    mesh.apply("destination-rule-circuit-breaker.yaml")
    settled = time.time()
    poll(lambda: gateway_scraped_after(mesh, settled), 30, "a scrape of the gateway", interval=0.5)
    before = prometheus_uo(mesh)
    result = load_json(mesh, f"{mesh.ingress}/get", "-c", "3", "--qps", "0", "-n", "30")
    sent = time.time()
    poll(lambda: gateway_scraped_after(mesh, sent), 30, "a scrape of the gateway after the load", interval=0.5)
    assert prometheus_uo(mesh) - before == result["RetCodes"]["503"]


def test_circuit_breaking_from_the_fortio_workload(mesh: Mesh) -> None:
    mesh.apply("destination-rule-circuit-breaker.yaml")
    before = overflow_count(mesh, "fortio")
    status, body = http_get(f"{mesh.ingress}/fortio/rest/run?url=http://httpbin:8000/get&c=3&qps=0&n=30", timeout=60)
    assert status == 200, body
    result = json.loads(body)
    assert result["DurationHistogram"]["Count"] == 30
    assert share_503(result) >= 0.35, result["RetCodes"]
    assert overflow_count(mesh, "fortio") - before == result["RetCodes"]["503"]


def fetch(mesh: Mesh, path: str) -> tuple[int, str]:
    """GET http://httpbin:8000<path> from the fortio workload: (status, the version that answered)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"{mesh.ingress}/fortio/fetch/httpbin:8000{path}", timeout=10) as response:
        return response.status, response.headers.get("x-httpbin-version", "")


def logged(mesh: Mesh, mark: str) -> dict[str, list[str]]:
    """Each httpbin version's log lines for requests carrying `mark`."""
    return {v: [line for line in mesh.logs(f"httpbin-{v}").splitlines() if mark in line] for v in ("v1", "v2")}


def logged_when(mesh: Mesh, mark: str, v1: int, v2: int) -> dict[str, list[str]] | None:
    found = logged(mesh, mark)
    return found if (len(found["v1"]), len(found["v2"])) == (v1, v2) else None


def test_mirroring(mesh: Mesh) -> None:
    mesh.apply("destination-rule-subsets.yaml", "virtual-service-v1.yaml")
    before = uuid.uuid4().hex
    assert [fetch(mesh, f"/headers?mark={before}") for _ in range(3)] == [(200, "v1")] * 3
    lines = poll(lambda: logged_when(mesh, before, 3, 0), 10, "3 requests in v1's log")
    assert lines["v2"] == []

    mesh.apply("virtual-service-mirror.yaml")
    after = uuid.uuid4().hex
    assert [fetch(mesh, f"/headers?mark={after}") for _ in range(5)] == [(200, "v1")] * 5  # the client sees v1
    lines = poll(lambda: logged_when(mesh, after, 5, 5), 10, "each request in both versions' logs")
    assert all("host=httpbin:8000" in line for line in lines["v1"]), lines["v1"]
    assert all("host=httpbin-shadow:8000" in line for line in lines["v2"]), lines["v2"]
