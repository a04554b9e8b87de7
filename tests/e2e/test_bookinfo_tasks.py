"""Istio's traffic-management tasks on Bookinfo, observed from outside as istio.io describes them.

One mesh per runtime (`sandbox up -f samples/bookinfo/compose.yaml --runtime local`, conftest.py); each
test applies the task's rule files (our networking/ versions of upstream's) and removes them
after. Ratios are checked against binomial bounds, times against the task's explanation.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
from mesh_support import REVIEWS_ERROR, Browser, Mesh, poll, reviews_shown

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]  # the compose runtime may build its image


@pytest.fixture
def mesh(bookinfo: Mesh) -> Iterator[Mesh]:
    yield bookinfo
    bookinfo.reset()


def shown(browser: Browser, pages: int) -> Counter[str]:
    seen: Counter[str] = Counter()
    for _ in range(pages):
        status, html, _ = browser.get()
        assert status == 200
        seen[reviews_shown(html)] += 1
    return seen


def test_baseline_title_and_stars_rotating(mesh: Mesh) -> None:
    browser = Browser(mesh.ingress)
    status, html, _ = browser.get()
    assert status == 200
    assert "<title>Simple Bookstore App</title>" in html
    seen = shown(browser, 30)
    # three versions, each a third of the time: P(one never shows in 30) = 3 * (2/3)^30 < 1e-5
    assert set(seen) == {"none", "black", "red"}, seen


def test_request_routing_all_v1_never_shows_stars(mesh: Mesh) -> None:
    mesh.apply("destination-rule-all.yaml", "virtual-service-all-v1.yaml")
    assert shown(Browser(mesh.ingress), 20) == {"none": 20}


def test_request_routing_jason_sees_black_stars_and_nobody_else(mesh: Mesh) -> None:
    mesh.apply("destination-rule-all.yaml", "virtual-service-all-v1.yaml", "virtual-service-reviews-test-v2.yaml")
    jason, anonymous, alice = Browser(mesh.ingress), Browser(mesh.ingress), Browser(mesh.ingress)
    jason.login("jason")
    alice.login("alice")
    assert shown(jason, 10) == {"black": 10}
    assert shown(anonymous, 10) == {"none": 10}
    assert shown(alice, 5) == {"none": 5}


def test_fault_injection_delay_breaks_jasons_reviews_after_about_6_seconds(mesh: Mesh) -> None:
    mesh.apply(
        "destination-rule-all.yaml",
        "virtual-service-all-v1.yaml",
        "virtual-service-reviews-test-v2.yaml",
        "virtual-service-ratings-test-delay.yaml",
    )
    jason, anonymous = Browser(mesh.ingress), Browser(mesh.ingress)
    jason.login("jason")
    status, html, took = jason.get()
    # reviews v2 waits up to 10 s for the 7 s delay; productpage gives up after 3 s, twice
    assert status == 200 and REVIEWS_ERROR in html and "Error fetching product reviews" in html
    assert 5.5 <= took <= 8.5, took
    status, html, took = anonymous.get()
    assert status == 200 and reviews_shown(html) == "none" and took < 2.0


def test_fault_injection_abort_shows_ratings_unavailable_at_once(mesh: Mesh) -> None:
    mesh.apply(
        "destination-rule-all.yaml",
        "virtual-service-all-v1.yaml",
        "virtual-service-reviews-test-v2.yaml",
        "virtual-service-ratings-test-abort.yaml",
    )
    jason, anonymous = Browser(mesh.ingress), Browser(mesh.ingress)
    jason.login("jason")
    status, html, took = jason.get()
    assert status == 200 and took < 2.0
    assert html.count("Ratings service is currently unavailable") == 2
    assert shown(anonymous, 5) == {"none": 5}


def test_traffic_shifting_50_50_then_all_v3(mesh: Mesh) -> None:
    mesh.apply("destination-rule-all.yaml", "virtual-service-all-v1.yaml")
    browser = Browser(mesh.ingress)
    assert shown(browser, 5) == {"none": 5}
    mesh.apply("virtual-service-reviews-50-v3.yaml")
    seen = shown(browser, 100)
    assert set(seen) <= {"none", "red"}, seen
    assert 30 <= seen["red"] <= 70, seen  # binomial(100, 0.5): mean 50, sd 5; this is 4 sd
    mesh.apply("virtual-service-reviews-v3.yaml")
    assert shown(browser, 20) == {"red": 20}


def test_request_timeouts(mesh: Mesh) -> None:
    mesh.apply(
        "destination-rule-all.yaml",
        "virtual-service-all-v1.yaml",
        "virtual-service-reviews-v2.yaml",
        "virtual-service-ratings-delay-2s.yaml",
    )
    browser = Browser(mesh.ingress)
    status, html, took = browser.get()
    assert status == 200 and reviews_shown(html) == "black"
    assert 1.9 <= took <= 4.0, took  # the 2 s delay on ratings, within reviews v2's 10 s
    mesh.apply("virtual-service-reviews-v2-timeout.yaml")
    status, html, took = browser.get()
    assert status == 200 and REVIEWS_ERROR in html
    assert 0.9 <= took <= 2.5, took  # 0.5 s per try, productpage tries twice

    def timed_out_hops() -> list[str]:
        log = mesh.logs("productpage-v1", proxy=True)
        return [
            line
            for line in log.splitlines()
            if '"GET /reviews/0 ' in line and '" 504 UT ' in line and "outbound|9080|v2|reviews" in line
        ]

    hops = poll(lambda: len(timed_out_hops()) >= 2, 10, "two 504 UT hops towards reviews v2 in the access log")
    assert hops
