"""A small httpbin for the mTLS tasks: what a call through the mesh carries, seen from the server.

    GET /ip        {"origin": "<client address>"}
    GET /headers   {"headers": {...}}: over mutual TLS it shows X-Forwarded-Client-Cert, which the
                   server's sidecar sets from the client's verified certificate (Istio's mTLS task)
    GET /get       {"args", "headers", "origin", "url"}
    GET /health    {"status": "ok"}

Environment: PORT (8000), HOST (127.0.0.1).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from typing import Any

from aiohttp import web


def _origin(request: web.Request) -> str:
    forwarded = request.headers.get("X-Forwarded-For")
    return forwarded.split(",")[0].strip() if forwarded else (request.remote or "")


def _json(data: Any) -> web.Response:
    return web.Response(text=json.dumps(data, indent=2) + "\n", content_type="application/json")


async def ip(request: web.Request) -> web.Response:
    return _json({"origin": _origin(request)})


async def headers(request: web.Request) -> web.Response:
    return _json({"headers": {k.title(): v for k, v in request.headers.items()}})


async def get(request: web.Request) -> web.Response:
    found = {k.title(): v for k, v in request.headers.items()}
    return _json({"args": dict(request.query), "headers": found, "origin": _origin(request), "url": str(request.url)})


async def health(request: web.Request) -> web.Response:
    return _json({"status": "ok"})


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/ip", ip)
    app.router.add_get("/headers", headers)
    app.router.add_get("/get", get)
    app.router.add_get("/health", health)
    return app


async def serve(app: web.Application, host: str, port: int, name: str) -> None:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port, reuse_address=True).start()
    print(f"{name} listening on http://{host}:{port}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(serve(make_app(), os.environ.get("HOST", "127.0.0.1"), int(os.environ.get("PORT") or 8000), "httpbin"))
