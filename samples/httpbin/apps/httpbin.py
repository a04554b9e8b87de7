"""A small httpbin (the subset Istio's circuit-breaking and mirroring tasks use), on aiohttp.

    GET  /get               {"args", "headers", "origin", "url"}
    ANY  /anything[/...]    the same plus "method", "data", "json", "form"
    GET  /headers           {"headers": {...}}
    GET  /ip                {"origin": "<client address>"}
    ANY  /status/<code>     an empty answer with that status (100-599)
    GET  /delay/<seconds>   /get's answer after that many seconds (at most 10, as httpbin)
    GET  /health            {"status": "ok"}

Header values are strings, as python httpbin writes them (go-httpbin writes lists). Every
request is printed as one line, so the mirroring task can read each version's log.

Environment: PORT (8000), HOST (127.0.0.1), SERVICE_VERSION (or the first argument; it answers
in the `x-httpbin-version` header).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from typing import Any

from aiohttp import web

MAX_DELAY = 10.0
VERSION = web.AppKey("version", str)
LOG = web.AppKey("log", bool)


def _headers(request: web.Request) -> dict[str, str]:
    return {k.title(): v for k, v in request.headers.items()}


def _origin(request: web.Request) -> str:
    forwarded = request.headers.get("X-Forwarded-For")
    return forwarded.split(",")[0].strip() if forwarded else (request.remote or "")


def _json(request: web.Request, data: Any, status: int = 200) -> web.Response:
    response = web.Response(text=json.dumps(data, indent=2) + "\n", status=status, content_type="application/json")
    response.headers["x-httpbin-version"] = request.app[VERSION]
    return response


def _get_body(request: web.Request) -> dict[str, Any]:
    return {
        "args": dict(request.query),
        "headers": _headers(request),
        "origin": _origin(request),
        "url": str(request.url),
    }


async def get(request: web.Request) -> web.Response:
    return _json(request, _get_body(request))


async def anything(request: web.Request) -> web.Response:
    raw = await request.read()
    text = raw.decode("utf-8", "replace")
    form: dict[str, str] = {}
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = {k: str(v) for k, v in (await request.post()).items()}
    try:
        parsed = json.loads(text) if text else None
    except ValueError:
        parsed = None
    return _json(request, {**_get_body(request), "method": request.method, "data": text, "json": parsed, "form": form})


async def headers(request: web.Request) -> web.Response:
    return _json(request, {"headers": _headers(request)})


async def ip(request: web.Request) -> web.Response:
    return _json(request, {"origin": _origin(request)})


async def status(request: web.Request) -> web.Response:
    try:
        code = int(request.match_info["code"])
    except ValueError:
        return _json(request, {"error": "invalid status code"}, 400)
    if not 100 <= code <= 599:
        return _json(request, {"error": "invalid status code"}, 400)
    response = web.Response(status=code)
    response.headers["x-httpbin-version"] = request.app[VERSION]
    return response


async def delay(request: web.Request) -> web.Response:
    try:
        seconds = float(request.match_info["seconds"])
    except ValueError:
        return _json(request, {"error": "invalid delay"}, 400)
    if not seconds >= 0:  # also NaN
        return _json(request, {"error": "invalid delay"}, 400)
    await asyncio.sleep(min(seconds, MAX_DELAY))
    return _json(request, _get_body(request))


async def health(request: web.Request) -> web.Response:
    return _json(request, {"status": "ok"})


@web.middleware
async def log_requests(request: web.Request, handler: Any) -> web.StreamResponse:
    response: web.StreamResponse = await handler(request)
    if request.app[LOG]:
        print(
            f'httpbin {request.app[VERSION]} "{request.method} {request.path_qs}" {response.status} '
            f"host={request.host} x-request-id={request.headers.get('x-request-id', '-')}",
            flush=True,
        )
    return response


def make_app(version: str | None = None, *, log: bool = True) -> web.Application:
    app = web.Application(middlewares=[log_requests])
    app[VERSION] = version or os.environ.get("SERVICE_VERSION") or "v1"
    app[LOG] = log
    app.router.add_get("/get", get)
    app.router.add_route("*", "/anything", anything)
    app.router.add_route("*", "/anything/{tail:.*}", anything)
    app.router.add_get("/headers", headers)
    app.router.add_get("/ip", ip)
    app.router.add_route("*", "/status/{code}", status)
    app.router.add_get("/delay/{seconds}", delay)
    app.router.add_get("/health", health)
    return app


def main() -> None:
    app = make_app(sys.argv[1] if len(sys.argv) > 1 else None)
    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT") or 8000)

    async def serve() -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, host, port, reuse_address=True).start()
        print(f"httpbin {app[VERSION]} listening on http://{host}:{port}", flush=True)
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        await stop.wait()
        await runner.cleanup()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
