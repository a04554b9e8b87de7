"""Bookinfo `details` (upstream: Ruby WEBrick), the same contract on aiohttp.

    GET /health          {"status": "Details is healthy"}
    GET /details/<id>    the book's details; a non-numeric id is 400 {"error": "please provide numeric product id"}

Environment: PORT (9080), HOST (127.0.0.1), SERVICE_VERSION (v1).
"""

from __future__ import annotations

import os

from aiohttp import web
from bookinfo_common import NAME, json_response, serve


def book_details(product_id: int) -> dict[str, object]:
    return {
        "id": product_id,
        "author": "William Shakespeare",
        "year": 1595,
        "type": "paperback",
        "pages": 200,
        "publisher": "PublisherA",
        "language": "English",
        "ISBN-10": "1234567890",
        "ISBN-13": "123-1234567890",
    }


async def health(request: web.Request) -> web.Response:
    return json_response({"status": "Details is healthy"})


async def details(request: web.Request) -> web.Response:
    try:
        product_id = int(request.match_info["id"])
    except ValueError:
        return json_response({"error": "please provide numeric product id"}, status=400)
    return json_response(book_details(product_id))


def make_app(version: str | None = None) -> web.Application:
    app = web.Application()
    app[NAME] = f"details {version or os.environ.get('SERVICE_VERSION', 'v1')}"
    app.router.add_get("/health", health)
    app.router.add_get("/details/{id}", details)
    return app


if __name__ == "__main__":
    serve(make_app())
