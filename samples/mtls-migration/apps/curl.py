"""The client workload of Istio's mTLS tasks (Istio's `curl` sample, formerly `sleep`), with a
small HTTP API so that a test or a person can make it call from inside its workload, as the task
does with `kubectl exec curl -- curl ...`:

    GET /fetch?url=http://httpbin.foo:8000/ip[&timeout=5]
        one GET of `url` from here, answered (200, text) with the status code it got, or 000 when
        the connection failed, was reset or timed out: what `curl -s -o /dev/null -w "%{http_code}"`
        prints
    GET /health

With a sidecar the call goes through it (HTTP_PROXY, which the mesh sets); without one (the legacy
client, outside the mesh) it goes straight to the URL, in plaintext.

Environment: PORT (8080), HOST (127.0.0.1), HTTP_PROXY (set by the mesh).
"""

from __future__ import annotations

import asyncio
import os
import signal

import aiohttp
from aiohttp import web

FAILED = "000"


async def fetch(request: web.Request) -> web.Response:
    url = request.query.get("url", "")
    if not url.startswith("http://"):
        return web.Response(status=400, text="pass url=http://host:port/path\n")
    try:
        timeout = aiohttp.ClientTimeout(total=min(float(request.query.get("timeout", "5")), 30.0))
    except ValueError:
        return web.Response(status=400, text="timeout must be a number of seconds\n")
    try:
        # trust_env: HTTP_PROXY (the sidecar) and NO_PROXY, as curl reads them
        async with aiohttp.ClientSession(trust_env=True, timeout=timeout) as session, session.get(url) as answer:
            await answer.read()
            code = f"{answer.status:03d}"
    except (aiohttp.ClientError, TimeoutError, OSError):
        code = FAILED
    return web.Response(text=code + "\n")


async def health(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/fetch", fetch)
    app.router.add_get("/health", health)
    return app


async def serve(app: web.Application, host: str, port: int) -> None:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port, reuse_address=True).start()
    print(f"curl listening on http://{host}:{port}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(serve(make_app(), os.environ.get("HOST", "127.0.0.1"), int(os.environ.get("PORT") or 8080)))
