"""The control plane process: its HTTP port and its entry point (`sandbox controlplane`).

One aiohttp port serves the push WebSocket (/v1/push), Prometheus metrics (/metrics, named after
istiod's: pilot_xds, pilot_xds_pushes, pilot_total_xds_rejects, pilot_proxy_convergence_time),
per-proxy sync state and mTLS mode for proxy-status (/debug/syncz, as istiod's), per-file config status
(/debug/configz), the RequestAuthentication jwksUri fetches (/debug/jwksz) and the read API over
the live store (/api/v1/resources, /files, /sync; see api.py). The core it serves is
control/plane.py.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from prometheus_client import generate_latest

from sandbox.control import api
from sandbox.control.plane import ControlPlane, ControlPlaneSettings
from sandbox.service import StartupError, bind_error
from sandbox.service import run as run_service

log = logging.getLogger(__name__)


class ControlPlaneServer:
    """A ControlPlane on its HTTP port, as one component (sandbox.service)."""

    def __init__(self, plane: ControlPlane) -> None:
        self.plane = plane
        self.done = asyncio.Event()
        self.failure: Exception | None = None
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        plane = self.plane
        app = web.Application()
        plane.push.add_routes(app)

        async def metrics(_request: web.Request) -> web.Response:
            return web.Response(body=generate_latest(plane.registry), content_type="text/plain", charset="utf-8")

        async def syncz(_request: web.Request) -> web.Response:
            return web.json_response(api.proxies_json(plane))

        async def configz(_request: web.Request) -> web.Response:
            return web.json_response(api.files_json(plane))

        async def ready(_request: web.Request) -> web.Response:
            return web.Response(text="ok")

        async def jwksz(_request: web.Request) -> web.Response:
            return web.json_response(plane.jwks.status())

        app.router.add_get("/metrics", metrics)
        app.router.add_get("/debug/syncz", syncz)
        app.router.add_get("/debug/configz", configz)
        app.router.add_get("/debug/jwksz", jwksz)
        app.router.add_get("/ready", ready)
        api.add_routes(app, plane)
        return app

    async def start(self) -> int:
        """Load everything, start watching, listen; returns the bound port."""
        settings = self.plane.settings
        self.plane.start()
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, settings.host, settings.port).start()
        port: int = self._runner.addresses[0][1]
        log.info("control plane listening on %s:%d, watching %s", settings.host, port, settings.istio_dir)
        return port

    async def stop(self) -> None:
        self.plane.stop()
        await self.plane.jwks.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def run(settings: ControlPlaneSettings) -> int:
    """`sandbox controlplane`: serve until SIGINT/SIGTERM (exit codes: sandbox.service)."""

    async def start() -> ControlPlaneServer:
        try:
            server = ControlPlaneServer(ControlPlane(settings))
        except OSError as exc:
            raise StartupError(f"cannot use the state directory {settings.state_dir}: {exc.strerror or exc}") from None
        try:
            await server.start()
        except OSError as exc:
            await server.stop()
            raise bind_error(exc, f"{settings.host}:{settings.port}") from None
        return server

    return run_service(start)
