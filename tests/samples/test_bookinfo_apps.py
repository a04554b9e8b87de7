"""details, ratings and reviews alone: upstream's paths, JSON bodies and health answers."""

from __future__ import annotations

import json
import random
import time
from typing import Any

import aiohttp
import pytest
from bookinfo_support import Fault, async_test, bookinfo, load_app, serving

UPSTREAM_DETAILS = {
    "id": 0,
    "author": "William Shakespeare",
    "year": 1595,
    "type": "paperback",
    "pages": 200,
    "publisher": "PublisherA",
    "language": "English",
    "ISBN-10": "1234567890",
    "ISBN-13": "123-1234567890",
}


async def get(url: str, **kwargs: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.request(kwargs.pop("method", "GET"), url, **kwargs) as r:
        text = await r.text()
        try:
            return r.status, json.loads(text)
        except ValueError:
            return r.status, text


@async_test
async def test_details_serves_upstream_json() -> None:
    async with serving(load_app("details").make_app()) as url:
        assert await get(f"{url}/details/0") == (200, UPSTREAM_DETAILS)
        assert (await get(f"{url}/details/7"))[1]["id"] == 7
        assert await get(f"{url}/details/abc") == (400, {"error": "please provide numeric product id"})
        assert await get(f"{url}/health") == (200, {"status": "Details is healthy"})


@async_test
async def test_ratings_serves_stores_and_validates() -> None:
    async with serving(load_app("ratings").make_app("v1")) as url:
        assert await get(f"{url}/ratings/0") == (200, {"id": 0, "ratings": {"Reviewer1": 5, "Reviewer2": 4}})
        assert await get(f"{url}/ratings/x") == (400, {"error": "please provide numeric product ID"})
        assert await get(f"{url}/health") == (200, {"status": "Ratings is healthy"})
        posted = await get(f"{url}/ratings/3", method="POST", json={"Reviewer1": 1, "Reviewer2": 2})
        assert posted == (200, {"id": 3, "ratings": {"Reviewer1": 1, "Reviewer2": 2}})
        assert (await get(f"{url}/ratings/3"))[1]["ratings"] == {"Reviewer1": 1, "Reviewer2": 2}
        assert (await get(f"{url}/ratings/0"))[1]["ratings"] == {"Reviewer1": 5, "Reviewer2": 4}
        bad = await get(f"{url}/ratings/3", method="POST", data="not json")
        assert bad == (400, {"error": "please provide valid ratings JSON"})


@async_test
async def test_ratings_v_faulty_fails_about_half_the_requests() -> None:
    async with serving(load_app("ratings").make_app("v-faulty", rng=random.Random(7))) as url:
        statuses = [(await get(f"{url}/ratings/0"))[0] for _ in range(60)]
    assert set(statuses) == {200, 503}
    assert 15 <= statuses.count(503) <= 45  # binomial(60, 0.5): far outside 4 sigma otherwise


@async_test
async def test_reviews_v1_has_no_ratings_and_never_calls_ratings(monkeypatch: pytest.MonkeyPatch) -> None:
    async with bookinfo(monkeypatch, "v1") as mesh:
        status, body = await get(f"{mesh.sidecar.upstreams['reviews']}/reviews/0")
        assert status == 200
        assert body["id"] == "0"
        assert [r["reviewer"] for r in body["reviews"]] == ["Reviewer1", "Reviewer2"]
        assert body["reviews"][0]["text"].startswith("An extremely entertaining play by Shakespeare.")
        assert all("rating" not in r for r in body["reviews"])
        assert mesh.sidecar.to("ratings") == []
        assert await get(f"{mesh.sidecar.upstreams['reviews']}/health") == (200, {"status": "Reviews is healthy"})


@pytest.mark.parametrize(("version", "color"), [("v2", "black"), ("v3", "red")])
@async_test
async def test_reviews_v2_v3_stars_come_from_ratings(monkeypatch: pytest.MonkeyPatch, version: str, color: str) -> None:
    async with bookinfo(monkeypatch, version) as mesh:
        _, body = await get(f"{mesh.sidecar.upstreams['reviews']}/reviews/0", headers={"end-user": "jason"})
        assert [r["rating"] for r in body["reviews"]] == [
            {"stars": 5, "color": color},
            {"stars": 4, "color": color},
        ]
        [call] = mesh.sidecar.to("ratings")
        assert call.path == "/ratings/0"
        assert call.headers["end-user"] == "jason"  # reviews propagates it as upstream does


@async_test
async def test_reviews_reports_ratings_unavailable_on_error(monkeypatch: pytest.MonkeyPatch) -> None:
    async with bookinfo(monkeypatch, "v2") as mesh:
        mesh.sidecar.faults["ratings"] = Fault(abort=500)
        _, body = await get(f"{mesh.sidecar.upstreams['reviews']}/reviews/0")
    assert [r["rating"] for r in body["reviews"]] == [{"error": "Ratings service is currently unavailable"}] * 2


def test_ratings_timeouts_follow_the_star_color() -> None:
    reviews = load_app("reviews")
    assert reviews.Settings.from_env("v2", {}).ratings_timeout == 10.0
    assert reviews.Settings.from_env("v3", {}).ratings_timeout == 2.5
    assert reviews.Settings.from_env("v1", {}).ratings_enabled is False
    assert reviews.Settings.from_env(None, {"SERVICE_VERSION": "v3"}).star_color == "red"
    assert reviews.Settings.from_env("v1", {"ENABLE_RATINGS": "true", "STAR_COLOR": "red"}).ratings_enabled


@async_test
async def test_reviews_v3_gives_up_on_ratings_after_2_5_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    async with bookinfo(monkeypatch, "v3") as mesh:
        mesh.sidecar.faults["ratings"] = Fault(delay=4.0)
        started = time.monotonic()
        status, body = await get(f"{mesh.sidecar.upstreams['reviews']}/reviews/0")
        took = time.monotonic() - started
    assert status == 200
    assert body["reviews"][0]["rating"] == {"error": "Ratings service is currently unavailable"}
    assert 2.4 <= took < 3.5
