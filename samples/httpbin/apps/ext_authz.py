"""Istio's sample external authorizer (samples/extauthz), its HTTP half, on aiohttp.

Every request is a check: allowed (200) when it carries `x-ext-authz: allow`, denied (403, with
the body below) otherwise. Both answers carry `x-ext-authz-check-result: allowed|denied`, echo
`x-ext-authz-additional-header-override` and say what was received in
`x-ext-authz-check-received`. Each check is logged as `[HTTP][allowed]: ...` or `[HTTP][denied]: ...`.

A CUSTOM AuthorizationPolicy sends requests here through the provider the Compose file declares
(`x-sandbox.extensionProviders`, Istio's meshConfig). Environment: PORT (8000), HOST (127.0.0.1).
"""

from __future__ import annotations

import asyncio
import os
import signal

from aiohttp import web

CHECK_HEADER, ALLOWED_VALUE = "x-ext-authz", "allow"
RESULT_HEADER, RECEIVED_HEADER = "x-ext-authz-check-result", "x-ext-authz-check-received"
OVERRIDE_HEADER = "x-ext-authz-additional-header-override"
DENY_BODY = f"denied by ext_authz for not found header `{CHECK_HEADER}: {ALLOWED_VALUE}` in the request"


async def check(request: web.Request) -> web.Response:
    body = await request.read()
    received = f"{request.method} {request.host}{request.path_qs}, headers: {dict(request.headers)}"
    received += f", body: [{body[:1000]!r}]"
    allowed = request.headers.get(CHECK_HEADER) == ALLOWED_VALUE
    print(f"[HTTP][{'allowed' if allowed else 'denied'}]: {received}", flush=True)
    headers = {
        RESULT_HEADER: "allowed" if allowed else "denied",
        OVERRIDE_HEADER: request.headers.get(OVERRIDE_HEADER, ""),
        RECEIVED_HEADER: received[:4000].replace("\r", " ").replace("\n", " "),
    }
    if allowed:
        return web.Response(status=200, headers=headers)
    return web.Response(status=403, text=DENY_BODY, headers=headers)


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_route("*", "/{tail:.*}", check)
    return app


def main() -> None:
    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT") or 8000)

    async def serve() -> None:
        runner = web.AppRunner(make_app(), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, host, port, reuse_address=True).start()
        print(f"ext-authz listening on http://{host}:{port}", flush=True)
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        await stop.wait()
        await runner.cleanup()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
