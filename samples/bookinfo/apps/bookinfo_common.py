"""What the four Bookinfo apps share: trace-header propagation, JSON replies, the client, `serve`.

Istio's sidecars start and report spans, but only the app can tie an inbound request to the
calls it makes because of it, by copying these headers onto them (the list upstream's
productpage and reviews keep, in sync with each other). Outbound calls go to
`http://<service>:9080` through HTTP_PROXY (the sidecar), which aiohttp honours with
`trust_env=True` (NO_PROXY too).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
from collections.abc import AsyncIterator, Mapping
from typing import Any

from aiohttp import ClientSession, ClientTimeout, DummyCookieJar, TCPConnector, web

# Upstream's headers_to_propagate (reviews' LibertyRestEndpoint, productpage's getForwardHeaders).
PROPAGATED = (
    "x-request-id",
    "x-ot-span-context",
    "x-datadog-trace-id",
    "x-datadog-parent-id",
    "x-datadog-sampling-priority",
    "traceparent",
    "tracestate",
    "x-cloud-trace-context",
    "grpc-trace-bin",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
    "b3",
    "sw8",
    "end-user",
    "user-agent",
)


def forward_headers(incoming: Mapping[str, str], extra: tuple[str, ...] = ()) -> dict[str, str]:
    """The propagated headers present on the inbound request (plus `extra` names), to copy onto a call."""
    out: dict[str, str] = {}
    for name in (*PROPAGATED, *extra):
        value = incoming.get(name)
        if value is not None:
            out[name] = value
    return out


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(data), status=status, content_type="application/json")


def service_url(env: Mapping[str, str], service: str) -> str:
    """`http://<SERVICE>_HOSTNAME[.SERVICES_DOMAIN]:<SERVICE>_SERVICE_PORT`, defaults as upstream."""
    key = service.upper()
    host = env.get(f"{key}_HOSTNAME") or service
    domain = env.get("SERVICES_DOMAIN")
    port = env.get(f"{key}_SERVICE_PORT") or "9080"
    return f"http://{host}{'.' + domain if domain else ''}:{port}"


NAME = web.AppKey("name", str)  # what `serve` prints once listening
CLIENT: web.AppKey[ClientSession] = web.AppKey("client", ClientSession)


async def client_context(app: web.Application) -> AsyncIterator[None]:
    """`app.cleanup_ctx` entry: one client per app, through HTTP_PROXY when set. The dummy jar keeps
    no cookies, so one user's Set-Cookie never rides on another user's call."""
    async with ClientSession(
        trust_env=True,
        connector=TCPConnector(limit=0, use_dns_cache=False),
        cookie_jar=DummyCookieJar(),
        timeout=ClientTimeout(total=None),
    ) as session:
        app[CLIENT] = session
        yield


def pod_name() -> str:
    return os.environ.get("HOSTNAME") or socket.gethostname()


def serve(app: web.Application, default_port: int = 9080) -> None:
    """Listen on HOST:PORT (env; 127.0.0.1 and `default_port` by default) until SIGTERM/SIGINT."""
    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT") or default_port)

    async def main() -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port, reuse_address=True)
        await site.start()
        print(f"{app.get(NAME, 'app')} listening on http://{host}:{port}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await runner.cleanup()

    asyncio.run(main())
