"""One running Bookinfo mesh (local runtime, real Prometheus) shared by the console's API and
browser tests: `sandbox up` once per session, `sandbox down` at the end. A test that changes its
rules puts them back (`rules_restored`), as the operator restores a checkpoint. Headless Chromium
for the browser tests (`browser`, `page`, `signed_in`: a page holding the console's token)."""

from __future__ import annotations

import contextlib
import json
import shutil
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require
from tests.e2e.mesh_support import Mesh, http_get, poll, running_mesh

CHROMIUM = "/usr/bin/chromium"


class Bookinfo:
    """The mesh, plus what a console test needs: traffic it sends and Prometheus' view of it."""

    def __init__(self, mesh: Mesh) -> None:
        self.mesh = mesh

    @property
    def prometheus(self) -> str:
        return str(self.mesh.record["urls"]["prometheus"])

    @property
    def console(self) -> str:
        return str(self.mesh.record["urls"]["console"])

    @property
    def compose(self) -> Path:
        return self.mesh.compose

    @property
    def token(self) -> str:
        """The console's token, as `sandbox up` made it (what `sandbox dashboard` puts in the URL)."""
        return (self.mesh.directory / ".sandbox" / "state" / "console-token").read_text().strip()

    @contextlib.contextmanager
    def rules_restored(self) -> Iterator[None]:
        """The Istio directory put back as it was, by the operator's validated restore, and synced."""
        from sandbox.operator.apply import write
        from sandbox.operator.edit import checkpoint, plan_restore

        saved = checkpoint(self.mesh.istio)
        try:
            yield
        finally:
            plan = plan_restore(saved, self.compose)
            assert plan.ok, [d.format() for d in plan.refused]
            write(plan)
            self.mesh.wait()

    def load(self, requests: int, qps: float = 40.0, path: str = "/productpage") -> None:
        """`sandbox load` exactly `requests` calls through the ingress gateway; all must answer 200."""
        done = self.mesh.sandbox(
            "load", self.mesh.ingress + path, "-n", str(requests), "--qps", str(qps), "-c", "2", "-o", "json",
            timeout=120,
        )  # fmt: skip
        report = json.loads(done.stdout)
        codes = {str(k): v for k, v in (report.get("RetCodes") or report.get("codes") or {}).items()}
        assert codes == {"200": requests}, done.stdout[-2000:]

    def promql(self, query: str) -> list[dict[str, Any]]:
        url = f"{self.prometheus}/api/v1/query?{urllib.parse.urlencode({'query': query})}"
        status, body = http_get(url)
        assert status == 200, body[:500]
        return list(json.loads(body)["data"]["result"])

    def scraped_total(self) -> float:
        """productpage's inbound requests as Prometheus holds them now."""
        found = self.promql('sum(istio_requests_total{reporter="destination",destination_workload="productpage-v1"})')
        return float(found[0]["value"][1]) if found else 0.0

    def ensure_series(self) -> None:
        """Every Bookinfo workload has served requests that Prometheus scraped: a sidecar makes a
        series at its first request, and rate() needs two samples of it, so first calls only make
        series exist (least-request balancing may leave a version out of a few calls: repeat)."""
        for _ in range(10):
            served = self.promql('sum(istio_requests_total{reporter="destination"}) by (destination_workload)')
            if len(served) >= 6:
                return
            before = self.scraped_total()
            self.load(10)
            self.wait_scraped(before + 10)
        raise AssertionError(f"some Bookinfo workload never served a request: {served}")

    def wait_scraped(self, total: float, timeout: float = 30.0) -> None:
        """Until Prometheus has scraped productpage's counter up to `total` (scrapes every 5 s)."""
        poll(lambda: self.scraped_total() >= total, timeout, f"Prometheus to see {total:g} productpage requests")


@pytest.fixture(scope="session")
def bookinfo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bookinfo]:
    require(shutil.which("prometheus") is not None, "no prometheus binary (apt-get install prometheus)")
    with running_mesh("bookinfo", tmp_path_factory.mktemp("console-mesh")) as mesh:
        assert mesh.record["urls"]["prometheus"], "sandbox up started no Prometheus"
        assert mesh.record["urls"]["console"], "sandbox up started no console"
        mesh_ = Bookinfo(mesh)
        poll(lambda: http_get(mesh_.prometheus + "/-/ready")[0] == 200, 30, "Prometheus ready")
        yield mesh_


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from tests.console.browser_support import ARTIFACTS, CHROMIUM_ARGS

    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require(False, "Playwright for Python is not installed (pip install playwright)")
    require(Path(CHROMIUM).exists(), f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert errors == [], errors  # no script error on any page


@pytest.fixture
def signed_in(page: Any, bookinfo: Bookinfo) -> Any:
    """A page that opened the URL `sandbox dashboard` opens: the console's token is now its cookie."""
    page.goto(f"{bookinfo.console}/console/overview?token={bookinfo.token}")
    assert "token=" not in page.url  # traded for a cookie, out of the address bar
    assert page.inner_text("#access") == "can edit"
    return page
