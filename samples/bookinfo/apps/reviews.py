"""Bookinfo `reviews` (upstream: Java on OpenLiberty), one app for the three versions.

    GET /health         {"status": "Reviews is healthy"}
    GET /reviews/<id>   {"id": "<id>", "podname": ..., "clustername": ..., "reviews": [...]}

    python3 apps/reviews.py v1|v2|v3    (or SERVICE_VERSION; default v1)

v1 does not call ratings and shows no stars; v2 calls ratings and colours the stars black, v3
red. As upstream, the ratings call times out after 10 s when the stars are black and 2.5 s
otherwise (the fault-injection task depends on it), and a failed call turns each review's rating
into {"error": "Ratings service is currently unavailable"}. ENABLE_RATINGS and STAR_COLOR
override the version's defaults, as upstream's images set them.

Environment: PORT (9080), HOST (127.0.0.1), SERVICE_VERSION, ENABLE_RATINGS, STAR_COLOR,
RATINGS_HOSTNAME, RATINGS_SERVICE_PORT, SERVICES_DOMAIN, HOSTNAME, CLUSTER_NAME.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web
from bookinfo_common import CLIENT, NAME, client_context, forward_headers, json_response, pod_name, serve, service_url

RATINGS_UNAVAILABLE = "Ratings service is currently unavailable"
REVIEWS = (
    ("Reviewer1", "An extremely entertaining play by Shakespeare. The slapstick humour is refreshing!"),
    (
        "Reviewer2",
        "Absolutely fun and entertaining. The play lacks thematic depth when compared to other plays by Shakespeare.",
    ),
)


@dataclass(frozen=True)
class Settings:
    version: str
    ratings_enabled: bool
    star_color: str
    ratings_url: str
    pod: str
    cluster: str
    timeout_override: float | None = None  # tests shorten the wait; the contract is below

    @property
    def ratings_timeout(self) -> float:
        """Upstream: `star_color.equals("black") ? 10000 : 2500` ms (connect and receive)."""
        if self.timeout_override is not None:
            return self.timeout_override
        return 10.0 if self.star_color == "black" else 2.5

    @classmethod
    def from_env(cls, version: str | None, env: Mapping[str, str]) -> Settings:
        version = version or env.get("SERVICE_VERSION") or "v1"
        enabled = env.get("ENABLE_RATINGS")
        color = env.get("STAR_COLOR") or ("red" if version == "v3" else "black")
        return cls(
            version=version,
            ratings_enabled=enabled.lower() == "true" if enabled else version != "v1",
            star_color=color,
            ratings_url=service_url(env, "ratings"),
            pod=pod_name(),
            cluster=env.get("CLUSTER_NAME") or "null",
        )


SETTINGS = web.AppKey("settings", Settings)


async def health(request: web.Request) -> web.Response:
    return json_response({"status": "Reviews is healthy"})


async def fetch_ratings(request: web.Request, product_id: int) -> dict[str, Any] | None:
    """The product's ratings from the ratings service, or None when it failed or took too long."""
    settings = request.app[SETTINGS]
    url = f"{settings.ratings_url}/ratings/{product_id}"
    timeout = aiohttp.ClientTimeout(total=settings.ratings_timeout)
    headers = forward_headers(request.headers)
    try:
        async with request.app[CLIENT].get(url, headers=headers, timeout=timeout) as response:
            if response.status != 200:
                print(f"Error: unable to contact {url} got status of {response.status}", flush=True)
                return None
            body = await response.json(content_type=None)
    except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
        print(f"Error: unable to contact {url} got exception {exc!r}", flush=True)
        return None
    ratings = body.get("ratings") if isinstance(body, dict) else None
    return ratings if isinstance(ratings, dict) else {}


async def reviews(request: web.Request) -> web.Response:
    try:
        product_id = int(request.match_info["id"])
    except ValueError:
        raise web.HTTPNotFound() from None
    settings = request.app[SETTINGS]
    ratings = await fetch_ratings(request, product_id) if settings.ratings_enabled else None
    items = []
    for reviewer, text in REVIEWS:
        item: dict[str, Any] = {"reviewer": reviewer, "text": text}
        if settings.ratings_enabled:
            stars = ratings.get(reviewer) if ratings is not None else None
            if isinstance(stars, int):
                item["rating"] = {"stars": stars, "color": settings.star_color}
            else:
                item["rating"] = {"error": RATINGS_UNAVAILABLE}
        items.append(item)
    body = {"id": str(product_id), "podname": settings.pod, "clustername": settings.cluster, "reviews": items}
    return json_response(body)


def make_app(
    version: str | None = None, env: Mapping[str, str] | None = None, *, ratings_timeout: float | None = None
) -> web.Application:
    settings = Settings.from_env(version, os.environ if env is None else env)
    settings = dataclasses.replace(settings, timeout_override=ratings_timeout)
    app = web.Application()
    app[SETTINGS] = settings
    app[NAME] = f"reviews {settings.version}"
    app.cleanup_ctx.append(client_context)
    app.router.add_get("/health", health)
    app.router.add_get("/reviews/{id}", reviews)
    return app


if __name__ == "__main__":
    serve(make_app(sys.argv[1] if len(sys.argv) > 1 else None))
