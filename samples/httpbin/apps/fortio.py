"""A fortio-like client workload (Istio's circuit-breaking task execs `fortio load` in such a pod).

Its requests leave through its own sidecar (HTTP_PROXY), so the client-side rules apply to
them: DestinationRule connection pools, VirtualService routes and mirrors. Like `fortio server`:

    GET /fortio/rest/run?url=http://httpbin:8000/get&c=2&qps=0&n=20[&t=5s][&H=Name:%20value][&timeout=10]
        runs `sandbox load` from here and answers its JSON (fortio's keys: RetCodes,
        DurationHistogram, ActualQPS, ...)
    GET /fortio/fetch/<host[:port]/path>
        one GET of http://<host[:port]/path>, answered as it came (status, body, x-httpbin-version)
    GET /health

istio/httpbin-gateway.yaml routes /fortio on the ingress gateway here, so from the host:
    curl 'http://127.0.0.1:8080/fortio/rest/run?url=http://httpbin:8000/get&c=3&n=30'

Environment: PORT (8080), HOST (127.0.0.1), HTTP_PROXY (set by the mesh).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal

import aiohttp
from aiohttp import web

PASSED_ON = ("x-httpbin-version", "content-type")


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def _proxy() -> str | None:
    return os.environ.get("HTTP_PROXY") or os.environ.get("http_proxy") or None


async def run(request: web.Request) -> web.Response:
    """Run a bounded load from this workload (sandbox.load's caps apply) and answer its JSON."""
    try:
        from sandbox.load import LoadPlan, PlanError, parse_duration, parse_header
        from sandbox.load.report import to_json
        from sandbox.load.runner import run as run_load
    except ImportError:
        return web.json_response({"error": "sandbox is not installed beside this app"}, status=501)
    query = request.query
    try:
        plan = LoadPlan(
            query.get("url", ""),
            connections=int(query.get("c", "1")),
            qps=float(query.get("qps", "0")),
            requests=int(query["n"]) if "n" in query else None,
            duration=parse_duration(query["t"]) if "t" in query else None,
            headers=tuple(parse_header(h) for h in query.getall("H", [])),
            proxy=_proxy(),
            timeout=float(query.get("timeout", "10")),
        )
    except (PlanError, ValueError) as exc:
        return web.json_response({"error": str(exc)}, status=400)
    result = await run_load(plan)
    return web.Response(text=json.dumps(to_json(result), indent=2), content_type="application/json")


async def fetch(request: web.Request) -> web.Response:
    url = "http://" + request.match_info["target"] + (f"?{request.query_string}" if request.query_string else "")
    try:
        async with (
            aiohttp.ClientSession(trust_env=True, timeout=aiohttp.ClientTimeout(total=10)) as session,
            session.get(url) as answer,
        ):
            body = await answer.read()
            headers = {k: v for k, v in answer.headers.items() if k.lower() in PASSED_ON}
            return web.Response(status=answer.status, body=body, headers=headers)
    except (aiohttp.ClientError, TimeoutError) as exc:
        return web.json_response({"error": f"fetching {url}: {exc!r}"}, status=502)


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/fortio/rest/run", run)
    app.router.add_get("/fortio/fetch/{target:.+}", fetch)
    return app


async def serve() -> None:
    host, port = os.environ.get("HOST", "127.0.0.1"), int(os.environ.get("PORT") or 8080)
    runner = web.AppRunner(make_app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port, reuse_address=True).start()
    print(f"fortio listening on http://{host}:{port}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(serve())
