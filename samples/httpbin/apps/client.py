"""A client workload (Istio's tasks use a fortio or curl pod): it serves only /health.

Its sidecar is the point: `sandbox load --proxy <its sidecar's outbound listener>
http://httpbin:8000/get` sends requests from inside the mesh, as `kubectl exec fortio -- fortio
load ...` does, so the client-side rules (connection pools, mirrors, routes) apply.

Environment: PORT (8080), HOST (127.0.0.1).
"""

from __future__ import annotations

import asyncio
import os
import signal

from aiohttp import web


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/health", health)
    return app


async def serve() -> None:
    host, port = os.environ.get("HOST", "127.0.0.1"), int(os.environ.get("PORT") or 8080)
    runner = web.AppRunner(make_app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port, reuse_address=True).start()
    print(f"client listening on http://{host}:{port}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(serve())
