"""Bookinfo `productpage` (upstream: Python/Flask), the same contract on aiohttp.

    GET  /, /index.html       links to /productpage?u=normal and ?u=test (`u` is ignored, as upstream)
    GET  /health              "Product page is healthy"
    POST /login               form username, passwd: the session cookie remembers the user
    GET  /logout              forgets the user
    GET  /productpage         the page (title "Simple Bookstore App") with details and reviews of book 0
    GET  /api/v1/products     [{"id": 0, "title": ..., "descriptionHtml": ...}]
    GET  /api/v1/products/<id>[/reviews|/ratings]   details, reviews or ratings as JSON
    GET  /metrics             request_result{destination_app,response_code} (Prometheus text)
    GET  /static/...          the stylesheet

Every call to details, reviews and ratings carries the trace headers of the inbound request and,
for a signed-in user, `end-user: <name>` (what the request-routing task matches on). As
upstream: each call times out after 3 s, reviews is tried twice (so up to ~6 s), and failures
show "Sorry, product reviews are currently unavailable for this book." (details alike).

Environment: PORT (9080), HOST (127.0.0.1), DETAILS_HOSTNAME, REVIEWS_HOSTNAME, RATINGS_HOSTNAME,
*_SERVICE_PORT, SERVICES_DOMAIN, SESSION_SECRET (replicas must share it to share sign-ins).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from bookinfo_common import CLIENT, NAME, client_context, forward_headers, json_response, serve, service_url
from productpage_html import index_page, product_page

DETAILS_UNAVAILABLE = "Sorry, product details are currently unavailable for this book."
REVIEWS_UNAVAILABLE = "Sorry, product reviews are currently unavailable for this book."
RATINGS_UNAVAILABLE = "Sorry, product ratings are currently unavailable for this book."
CALL_TIMEOUT = 3.0  # upstream: requests.get(..., timeout=3.0)
REVIEWS_ATTEMPTS = 2  # upstream: "Bug introduced explicitly for illustration in fault injection task"
SESSION_COOKIE = "session"
STATIC_DIR = Path(__file__).resolve().parent / "static"
# Session and identity headers upstream forwards beside the trace headers (bookinfo_common.PROPAGATED).
FORWARDED_EXTRA = ("cookie", "authorization", "jwt")

PRODUCTS = [
    {
        "id": 0,
        "title": "The Comedy of Errors",
        "descriptionHtml": '<a href="https://en.wikipedia.org/wiki/The_Comedy_of_Errors">Wikipedia Summary</a>: '
        "The Comedy of Errors is one of <b>William Shakespeare's</b> early plays. It is his shortest and one of "
        "his most farcical comedies, with a major part of the humour coming from slapstick and mistaken identity, "
        "in addition to puns and word play.",
    }
]


@dataclass(frozen=True)
class Settings:
    details: str
    reviews: str
    ratings: str
    secret: bytes
    timeout: float = CALL_TIMEOUT

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        secret = env.get("SESSION_SECRET") or "bookinfo-sandbox-session"  # upstream hard-codes its key too
        return cls(
            service_url(env, "details"), service_url(env, "reviews"), service_url(env, "ratings"), secret.encode()
        )


SETTINGS = web.AppKey("settings", Settings)
RESULTS = web.AppKey("results", Counter)


# --------------------------------------------------------------------------- the session cookie


def _sign(secret: bytes, payload: str) -> str:
    return (
        base64.urlsafe_b64encode(hmac.new(secret, payload.encode(), hashlib.sha256).digest()[:16]).decode().rstrip("=")
    )


def encode_session(secret: bytes, data: dict[str, str]) -> str:
    payload = base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode().rstrip("=")
    return f"{payload}.{_sign(secret, payload)}"


def decode_session(secret: bytes, cookie: str | None) -> dict[str, str]:
    """The session's data, or {} when the cookie is missing, malformed or not signed by us."""
    payload, _, signature = (cookie or "").partition(".")
    if not payload or not hmac.compare_digest(signature, _sign(secret, payload)):
        return {}
    try:
        data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def session_user(request: web.Request) -> str:
    return decode_session(request.app[SETTINGS].secret, request.cookies.get(SESSION_COOKIE)).get("user", "")


# --------------------------------------------------------------------------- calls to the other services


def outbound_headers(request: web.Request) -> dict[str, str]:
    headers = forward_headers(request.headers, FORWARDED_EXTRA)
    headers.pop("end-user", None)  # upstream sets it from the session only, never from outside
    user = session_user(request)
    if user:
        headers["end-user"] = user
    return headers


async def _get(request: web.Request, app_name: str, url: str) -> tuple[int, Any]:
    """(status, JSON body) of one call; (0, None) when it failed or timed out."""
    timeout = aiohttp.ClientTimeout(total=request.app[SETTINGS].timeout)
    status: int | str = 0
    try:
        async with request.app[CLIENT].get(url, headers=outbound_headers(request), timeout=timeout) as response:
            status = response.status
            body = await response.json(content_type=None) if status == 200 else None
            return status, body
    except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
        print(f"error calling {url}: {exc!r}", flush=True)
        return 0, None
    finally:
        request.app[RESULTS][(app_name, str(status))] += 1


async def product_details(request: web.Request, product_id: str) -> tuple[int, dict[str, Any]]:
    status, body = await _get(request, "details", f"{request.app[SETTINGS].details}/details/{product_id}")
    if status == 200 and isinstance(body, dict):
        return 200, body
    return status or 500, {"error": DETAILS_UNAVAILABLE}


async def product_reviews(request: web.Request, product_id: str) -> tuple[int, dict[str, Any]]:
    status = 0
    for _ in range(REVIEWS_ATTEMPTS):
        status, body = await _get(request, "reviews", f"{request.app[SETTINGS].reviews}/reviews/{product_id}")
        if status == 200 and isinstance(body, dict):
            return 200, body
    return status or 500, {"error": REVIEWS_UNAVAILABLE}


async def product_ratings(request: web.Request, product_id: str) -> tuple[int, dict[str, Any]]:
    status, body = await _get(request, "ratings", f"{request.app[SETTINGS].ratings}/ratings/{product_id}")
    if status == 200 and isinstance(body, dict):
        return 200, body
    return status or 500, {"error": RATINGS_UNAVAILABLE}


# --------------------------------------------------------------------------- handlers


async def index(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    services = {
        "productpage": {"name": settings.details, "endpoint": "details"},
        "details": {"name": settings.details, "endpoint": "details"},
        "reviews": {"name": settings.reviews, "endpoint": "reviews"},
        "ratings": {"name": settings.ratings, "endpoint": "ratings"},
    }
    return web.Response(text=index_page(services), content_type="text/html")


async def health(request: web.Request) -> web.Response:
    return web.Response(text="Product page is healthy")


def _back(request: web.Request) -> web.HTTPFound:
    return web.HTTPFound(request.headers.get("Referer") or "/productpage")


async def login(request: web.Request) -> web.Response:
    form = await request.post()
    user = str(form.get("username") or request.query.get("username") or "")
    response = _back(request)
    if user:
        cookie = encode_session(request.app[SETTINGS].secret, {"user": user})
        response.set_cookie(SESSION_COOKIE, cookie, httponly=True, path="/")
    raise response


async def logout(request: web.Request) -> web.Response:
    response = _back(request)
    response.del_cookie(SESSION_COOKIE, path="/")
    raise response


async def front(request: web.Request) -> web.Response:
    product_id = "0"
    details_status, details = await product_details(request, product_id)
    reviews_status, reviews = await product_reviews(request, product_id)
    html = product_page(session_user(request), PRODUCTS[0], details_status, details, reviews_status, reviews)
    return web.Response(text=html, content_type="text/html")


async def products(request: web.Request) -> web.Response:
    return json_response(PRODUCTS)


async def product(request: web.Request) -> web.Response:
    status, body = await product_details(request, request.match_info["id"])
    return json_response(body, status)


async def reviews_route(request: web.Request) -> web.Response:
    status, body = await product_reviews(request, request.match_info["id"])
    return json_response(body, status)


async def ratings_route(request: web.Request) -> web.Response:
    status, body = await product_ratings(request, request.match_info["id"])
    return json_response(body, status)


async def metrics(request: web.Request) -> web.Response:
    lines = [
        "# HELP request_result Results of requests from productpage to the other services",
        "# TYPE request_result counter",
    ]
    for (app, code), count in sorted(request.app[RESULTS].items()):
        lines.append(f'request_result_total{{destination_app="{app}",response_code="{code}"}} {count}')
    return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")


def make_app(env: Mapping[str, str] | None = None, *, timeout: float = CALL_TIMEOUT) -> web.Application:
    settings = Settings.from_env(os.environ if env is None else env)
    app = web.Application()
    app[SETTINGS] = Settings(settings.details, settings.reviews, settings.ratings, settings.secret, timeout)
    app[RESULTS] = Counter()
    app[NAME] = "productpage v1"
    app.cleanup_ctx.append(client_context)
    app.router.add_get("/", index)
    app.router.add_get("/index.html", index)
    app.router.add_get("/health", health)
    app.router.add_post("/login", login)
    app.router.add_get("/logout", logout)
    app.router.add_get("/productpage", front)
    app.router.add_get("/api/v1/products", products)
    app.router.add_get("/api/v1/products/{id}", product)
    app.router.add_get("/api/v1/products/{id}/reviews", reviews_route)
    app.router.add_get("/api/v1/products/{id}/ratings", ratings_route)
    app.router.add_get("/metrics", metrics)
    app.router.add_static("/static", STATIC_DIR)
    return app


if __name__ == "__main__":
    serve(make_app())
