"""Istio's "Authorization for HTTP traffic" task on Bookinfo, and the seed talk's v1alpha1 RBAC
version of it, observed from outside: the product page through the ingress, the sidecars' access
logs, `sandbox proxy-config authz`.

Steps 3 and 4 of the task allow callers by principal (`cluster.local/ns/default/sa/...`), which
comes from the caller's certificate: the sidecars speak mutual TLS, so the server's sidecar knows it.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator

import pytest
from mesh_support import REVIEWS_ERROR, Browser, Mesh, http_get, poll, reviews_shown

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

DETAILS_ERROR = "Error fetching product details"


@pytest.fixture
def mesh(bookinfo: Mesh) -> Iterator[Mesh]:
    yield bookinfo
    bookinfo.reset()


def page(mesh: Mesh) -> tuple[int, str]:
    status, html, _ = Browser(mesh.ingress).get()
    return status, html


def denied_in_log(mesh: Mesh, workload: str) -> bool:
    lines = mesh.logs(workload, proxy=True).splitlines()
    return any(" 403 - rbac_access_denied_matched_policy[none] " in line for line in lines)


def denials_counted(mesh: Mesh) -> float:
    """istio_requests_total of productpage's 403s, as Prometheus scraped them from its sidecar."""
    query = (
        'sum(istio_requests_total{destination_workload="productpage-v1",response_code="403",reporter="destination"})'
    )
    url = f"{mesh.record['urls']['prometheus']}/api/v1/query?{urllib.parse.urlencode({'query': query})}"
    status, body = http_get(url)
    result = json.loads(body)["data"]["result"] if status == 200 else []
    return float(result[0]["value"][1]) if result else 0.0


def test_allow_nothing_denies_the_page(mesh: Mesh) -> None:
    mesh.apply("authz-allow-nothing.yaml")
    status, html = page(mesh)
    assert (status, html) == (403, "RBAC: access denied")
    poll(lambda: denied_in_log(mesh, "productpage-v1"), 10, "productpage's sidecar logging the denial")
    if mesh.record["urls"].get("prometheus"):  # metrics are off without a prometheus binary
        poll(lambda: denials_counted(mesh) >= 1, 60, "the denial in istio_requests_total", interval=1)


def test_productpage_viewer_shows_the_page_with_details_and_reviews_refused(mesh: Mesh) -> None:
    mesh.apply("authz-allow-nothing.yaml", "authz-productpage-viewer.yaml")
    status, html = page(mesh)
    assert status == 200 and DETAILS_ERROR in html and reviews_shown(html) == "reviews-error"
    poll(lambda: denied_in_log(mesh, "details-v1"), 10, "details' sidecar logging productpage's call denied")
    table = mesh.sandbox("proxy-config", "authz", "productpage-v1", "-f", str(mesh.compose)).stdout
    rows = [line.split()[:2] for line in table.splitlines()[1:] if line.strip()]
    assert rows[:2] == [["ALLOW", "allow-nothing.default"], ["ALLOW", "productpage-viewer.default"]]


def test_details_and_reviews_viewers_bring_them_back_without_ratings(mesh: Mesh) -> None:
    mesh.apply(
        "authz-allow-nothing.yaml",
        "authz-productpage-viewer.yaml",
        "authz-details-viewer.yaml",
        "authz-reviews-viewer.yaml",
    )
    # reviews-v1 never calls ratings (no stars, no error), so one page may show either; v2 and v3
    # answer round robin beside it and must show the ratings error, never stars.
    browser = Browser(mesh.ingress)
    seen = set()
    for _ in range(12):
        status, html, _ = browser.get()
        assert status == 200 and DETAILS_ERROR not in html
        seen.add(reviews_shown(html))
    assert "ratings-error" in seen and seen <= {"none", "ratings-error"}, seen


def test_ratings_viewer_brings_back_the_stars(mesh: Mesh) -> None:
    mesh.apply(
        "authz-allow-nothing.yaml",
        "authz-productpage-viewer.yaml",
        "authz-details-viewer.yaml",
        "authz-reviews-viewer.yaml",
        "authz-ratings-viewer.yaml",
    )
    browser = Browser(mesh.ingress)
    seen = set()
    for _ in range(12):
        status, html, _ = browser.get()
        assert status == 200 and REVIEWS_ERROR not in html
        seen.add(reviews_shown(html))
    assert {"black", "red"} <= seen


def test_the_seed_talks_serviceroles_decide_as_their_translation(mesh: Mesh) -> None:
    """ClusterRbacConfig ON for default: nothing may be called (the translated rbac-allow-nothing);
    a ServiceRole for productpage bound to user "*": the page, without details and reviews, exactly
    as allow-nothing and productpage-viewer give it above."""
    mesh.apply("rbac-config-on.yaml")
    assert page(mesh) == (403, "RBAC: access denied")
    mesh.apply("rbac-productpage-policy.yaml")
    status, html = page(mesh)
    assert status == 200 and DETAILS_ERROR in html and reviews_shown(html) == "reviews-error"
    table = mesh.sandbox("proxy-config", "authz", "productpage-v1", "-f", str(mesh.compose)).stdout
    assert "rbac-allow-nothing.default" in table and "bind-productpage-viewer.default" in table


def test_the_seed_talks_principal_bindings_bring_back_details_reviews_and_ratings(mesh: Mesh) -> None:
    mesh.apply(
        "rbac-config-on.yaml",
        "rbac-productpage-policy.yaml",
        "rbac-details-reviews-policy.yaml",
        "rbac-ratings-policy.yaml",
    )
    status, html = page(mesh)
    assert status == 200 and DETAILS_ERROR not in html and reviews_shown(html) in ("none", "black", "red")
