"""Bookinfo `ratings` (upstream: Node.js), the same contract on aiohttp.

    GET  /health          {"status": "Ratings is healthy"}
    GET  /ratings/<id>    {"id": <id>, "ratings": {"Reviewer1": 5, "Reviewer2": 4}} (or what was POSTed)
    POST /ratings/<id>    a JSON body {"Reviewer1": n, ...} replaces the product's ratings (in memory)

A non-numeric id is 400 {"error": "please provide numeric product ID"}. SERVICE_VERSION (or the
first argument) picks upstream's variants that need no database: v1 (default), v-faulty (half the
requests 503 {"error": "Service unavailable"}) and v-delayed (half the requests wait 7 s).

Environment: PORT (9080), HOST (127.0.0.1), SERVICE_VERSION.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
from typing import Any

from aiohttp import web
from bookinfo_common import NAME, json_response, serve

VERSION = web.AppKey("version", str)
RNG = web.AppKey("rng", random.Random)
STORED = web.AppKey("stored", dict)
DELAY = web.AppKey("delay", float)

DEFAULT_RATINGS = {"Reviewer1": 5, "Reviewer2": 4}


def _product_id(request: web.Request) -> int | None:
    try:
        return int(request.match_info["id"])
    except ValueError:
        return None


async def health(request: web.Request) -> web.Response:
    return json_response({"status": "Ratings is healthy"})


async def get_ratings(request: web.Request) -> web.Response:
    product_id = _product_id(request)
    if product_id is None:
        return json_response({"error": "please provide numeric product ID"}, status=400)
    app = request.app
    version = app[VERSION]
    if version == "v-faulty" and app[RNG].random() <= 0.5:
        return json_response({"error": "Service unavailable"}, status=503)
    if version == "v-delayed" and app[RNG].random() <= 0.5:
        await asyncio.sleep(app[DELAY])
    stored: dict[int, Any] = app[STORED]
    return json_response(stored.get(product_id) or {"id": product_id, "ratings": dict(DEFAULT_RATINGS)})


async def post_ratings(request: web.Request) -> web.Response:
    product_id = _product_id(request)
    if product_id is None:
        return json_response({"error": "please provide numeric product ID"}, status=400)
    try:
        ratings = json.loads(await request.text())
    except ValueError:
        ratings = None
    if not isinstance(ratings, dict):
        return json_response({"error": "please provide valid ratings JSON"}, status=400)
    record = {"id": product_id, "ratings": ratings}
    request.app[STORED][product_id] = record
    return json_response(record)


def make_app(version: str | None = None, *, rng: random.Random | None = None, delay: float = 7.0) -> web.Application:
    app = web.Application()
    app[VERSION] = version or os.environ.get("SERVICE_VERSION") or "v1"
    app[RNG] = rng or random.Random()
    app[STORED] = {}
    app[DELAY] = delay
    app[NAME] = f"ratings {app[VERSION]}"
    app.router.add_get("/health", health)
    app.router.add_get("/ratings/{id}", get_ratings)
    app.router.add_post("/ratings/{id}", post_ratings)
    return app


if __name__ == "__main__":
    serve(make_app(sys.argv[1] if len(sys.argv) > 1 else None))
