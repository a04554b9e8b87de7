"""productpage against the real details/reviews/ratings apps, reached by name through HTTP_PROXY."""

from __future__ import annotations

import re

import pytest
from bookinfo_support import Fault, async_test, bookinfo, load_app

REVIEWS_ERROR = "Sorry, product reviews are currently unavailable for this book."
DETAILS_ERROR = "Sorry, product details are currently unavailable for this book."
RATINGS_ERROR = "Ratings service is currently unavailable"
TRACE = {
    "x-request-id": "0b6b1d0c-8c6f-4a51-9a54-3c0f2b6a1c11",
    "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "tracestate": "vendor=1",
    "x-b3-traceid": "4bf92f3577b34da6a3ce929d0e0e4736",
    "x-b3-spanid": "00f067aa0ba902b7",
    "x-b3-parentspanid": "a3ce929d0e0e4736",
    "x-b3-sampled": "1",
    "b3": "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
}


def stars(html: str) -> dict[str, int]:
    """Full stars per colour on the page: {"black": 9} for reviews v2 (5 + 4)."""
    found: dict[str, int] = {}
    for color, block in re.findall(r'<font color="(\w+)">(.*?)</font>', html, re.S):
        found[color] = found.get(color, 0) + block.count('glyphicon-star"')
    return found


@pytest.mark.parametrize(("version", "expected"), [("v1", {}), ("v2", {"black": 9}), ("v3", {"red": 9})])
@async_test
async def test_page_title_details_and_stars_per_reviews_version(
    monkeypatch: pytest.MonkeyPatch, version: str, expected: dict[str, int]
) -> None:
    async with bookinfo(monkeypatch, version) as mesh:
        status, html, _ = await mesh.page()
    assert status == 200
    assert "<title>Simple Bookstore App</title>" in html
    assert "The Comedy of Errors" in html
    assert "PublisherA" in html and "1234567890" in html
    assert "An extremely entertaining play by Shakespeare." in html
    assert stars(html) == expected
    assert [c.service for c in mesh.sidecar.calls] == ["details", "reviews"] + (["ratings"] if version != "v1" else [])
    assert mesh.sidecar.calls[0].path == "/details/0" and mesh.sidecar.calls[1].path == "/reviews/0"


@async_test
async def test_sign_in_sends_end_user_to_reviews_and_ratings_and_sign_out_stops_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with bookinfo(monkeypatch, "v2") as mesh:
        await mesh.page()
        assert "end-user" not in mesh.sidecar.to("reviews")[-1].headers
        assert await mesh.login("jason") == 302
        _, html, _ = await mesh.page()
        assert "jason" in html and 'href="logout"' in html
        for service in ("details", "reviews", "ratings"):
            assert mesh.sidecar.to(service)[-1].headers["end-user"] == "jason"
        async with mesh.session.get(f"{mesh.productpage}/logout", allow_redirects=False) as response:
            assert response.status == 302
        _, html, _ = await mesh.page()
        assert 'name="passwd"' in html
        assert "end-user" not in mesh.sidecar.to("reviews")[-1].headers


@async_test
async def test_end_user_comes_only_from_the_session(monkeypatch: pytest.MonkeyPatch) -> None:
    async with bookinfo(monkeypatch, "v1") as mesh:
        await mesh.page(**{"end-user": "jason"})
        assert "end-user" not in mesh.sidecar.to("reviews")[-1].headers
        mesh.session.cookie_jar.update_cookies({"session": "eyJ1c2VyIjoiamFzb24ifQ.forged"})
        await mesh.page()
        call = mesh.sidecar.to("reviews")[-1]
        assert "session=eyJ1c2VyIjoiamFzb24ifQ.forged" in call.headers["cookie"]  # productpage forwards cookies
        assert "end-user" not in call.headers


@async_test
async def test_trace_headers_reach_every_hop(monkeypatch: pytest.MonkeyPatch) -> None:
    async with bookinfo(monkeypatch, "v3") as mesh:
        status, _, _ = await mesh.page(**TRACE)
        assert status == 200
        for service in ("details", "reviews", "ratings"):
            [call] = mesh.sidecar.to(service)
            assert {k: call.headers.get(k) for k in TRACE} == TRACE, service


@async_test
async def test_reviews_timeout_is_tried_twice_then_the_error_text(monkeypatch: pytest.MonkeyPatch) -> None:
    # productpage's 3 s per call, shortened to 0.3 s: two tries take ~0.6 s, as ~6 s upstream
    async with bookinfo(monkeypatch, "v2", productpage_timeout=0.3) as mesh:
        mesh.sidecar.faults["reviews"] = Fault(delay=2.0)
        status, html, took = await mesh.page()
        assert status == 200
        assert "Error fetching product reviews" in html and REVIEWS_ERROR in html
        assert "PublisherA" in html  # details unaffected
        assert len(mesh.sidecar.to("reviews")) == 2
        assert 0.55 <= took < 1.5
        async with mesh.session.get(f"{mesh.productpage}/api/v1/products/0/reviews") as response:
            assert response.status == 500
            assert await response.json() == {"error": REVIEWS_ERROR}


def test_productpage_timeout_contract() -> None:
    productpage = load_app("productpage")
    assert productpage.CALL_TIMEOUT == 3.0
    assert productpage.REVIEWS_ATTEMPTS == 2
    assert productpage.REVIEWS_UNAVAILABLE == REVIEWS_ERROR


@async_test
async def test_a_failing_reviews_answer_is_retried_once(monkeypatch: pytest.MonkeyPatch) -> None:
    async with bookinfo(monkeypatch, "v1") as mesh:
        mesh.sidecar.faults["reviews"] = Fault(abort=503)
        _, html, _ = await mesh.page()
        assert REVIEWS_ERROR in html
        assert len(mesh.sidecar.to("reviews")) == 2


@async_test
async def test_ratings_abort_shows_ratings_unavailable_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    async with bookinfo(monkeypatch, "v2") as mesh:
        mesh.sidecar.faults["ratings"] = Fault(abort=500)
        status, html, took = await mesh.page()
    assert status == 200
    assert html.count(RATINGS_ERROR) == 2
    assert stars(html) == {}
    assert took < 1.0


@async_test
async def test_details_failure_keeps_the_reviews(monkeypatch: pytest.MonkeyPatch) -> None:
    async with bookinfo(monkeypatch, "v3") as mesh:
        mesh.sidecar.faults["details"] = Fault(abort=555)
        _, html, _ = await mesh.page()
        assert "Error fetching product details" in html and DETAILS_ERROR in html
        assert stars(html) == {"red": 9}
        async with mesh.session.get(f"{mesh.productpage}/api/v1/products/0") as response:
            assert response.status == 555
            assert await response.json() == {"error": DETAILS_ERROR}


@async_test
async def test_json_api(monkeypatch: pytest.MonkeyPatch) -> None:
    async with bookinfo(monkeypatch, "v2") as mesh:
        base = f"{mesh.productpage}/api/v1/products"
        async with mesh.session.get(base) as response:
            [product] = await response.json()
            assert product["id"] == 0 and product["title"] == "The Comedy of Errors"
            assert "descriptionHtml" in product
        async with mesh.session.get(f"{base}/0") as response:
            assert response.status == 200
            assert (await response.json())["author"] == "William Shakespeare"
        assert await mesh.login("jason") == 302
        async with mesh.session.get(f"{base}/0/reviews") as response:
            body = await response.json()
            assert body["reviews"][1]["rating"] == {"stars": 4, "color": "black"}
        assert mesh.sidecar.to("reviews")[-1].headers["end-user"] == "jason"
        async with mesh.session.get(f"{base}/0/ratings") as response:
            assert await response.json() == {"id": 0, "ratings": {"Reviewer1": 5, "Reviewer2": 4}}
        async with mesh.session.get(f"{base}/abc") as response:
            assert response.status == 400
        async with mesh.session.get(f"{mesh.productpage}/metrics") as response:
            text = await response.text()
            assert 'request_result_total{destination_app="reviews",response_code="200"} 1' in text


@async_test
async def test_health_index_and_static(monkeypatch: pytest.MonkeyPatch) -> None:
    async with bookinfo(monkeypatch, "v1") as mesh:
        async with mesh.session.get(f"{mesh.productpage}/health") as response:
            assert await response.text() == "Product page is healthy"
        async with mesh.session.get(f"{mesh.productpage}/") as response:
            html = await response.text()
            assert "/productpage?u=normal" in html and "/productpage?u=test" in html
        async with mesh.session.get(f"{mesh.productpage}/static/bookinfo.css") as response:
            assert response.status == 200
        async with mesh.session.post(f"{mesh.productpage}/login", data={"username": "jason"}, headers={"Referer": "/x"},
                                     allow_redirects=False) as response:  # fmt: skip
            assert response.headers["Location"] == "/x"
