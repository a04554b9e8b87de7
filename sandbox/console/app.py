"""The console process: one aiohttp app serving the JSON API, the pages and (without --tracing)
the built-in trace collector.

    GET /                  the overview page (server-rendered from /api/status's data)
    GET /api/status        the mesh: control plane, proxies with sync state, URLs, recent traces
    GET /api/health        the console's own readiness (JSON); /healthz/ready the same as text
    POST /api/v2/spans     Zipkin ingest (built-in collector only)
    GET /api/services, /api/traces, ...   Jaeger's query API (ours, or passed through to --tracing)
    /api/namespaces/...    Kiali's API (api.py reads; changes.py writes, each needing the token: access.py)
    /console/...           the pages (pages.py)

The mesh record (.sandbox/mesh.json) is read on every status request: the runtime writes it once
the mesh is ready, which is after the console starts.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import jinja2
from aiohttp import web

from sandbox import __version__
from sandbox.console import api
from sandbox.console.access import Access
from sandbox.console.changes import Changes
from sandbox.console.collector import MAX_BODY, Collector
from sandbox.console.data import ConsoleData
from sandbox.console.mesh import DEFAULT_CONTROL_PLANE, probe, read_control_plane
from sandbox.console.pages import STATIC_DIR, Pages
from sandbox.console.reader import MeshReader
from sandbox.console.store import DEFAULT_MAX_SPANS, DEFAULT_MAX_TRACES, TraceStore
from sandbox.console.tracesource import JaegerTraces, LocalTraces, TraceSource
from sandbox.console.views import WorkloadInfo, format_age, format_duration, overview
from sandbox.console.writer import ConfigWriter
from sandbox.runtime.project import MeshRecord, Project, read_record
from sandbox.service import bind_error
from sandbox.service import run as run_service

log = logging.getLogger(__name__)

DEFAULT_PORT = 20001  # Kiali's
RECENT_TRACES = 20
UPSTREAM_TIMEOUT = 2.0  # seconds for each call to the control plane, Prometheus or Jaeger


@dataclass
class ConsoleSettings:
    port: int = DEFAULT_PORT
    bind: str = "127.0.0.1"
    control_plane: str | None = None  # default: the mesh record's, else http://127.0.0.1:15010
    prometheus: str | None = None  # default: the mesh record's URL, if any
    tracing: str | None = None  # an external Jaeger query base URL; None = the built-in collector
    zipkin_port: int | None = None  # also take spans on this port (Zipkin's 9411), built-in collector only
    project: Project | None = None
    max_traces: int = DEFAULT_MAX_TRACES
    max_spans: int = DEFAULT_MAX_SPANS
    istio_dir: Path | None = None  # default: the mesh record's, else the project's istio/
    token: str | None = None  # what writes need (runtime/consoletoken.py); None: one made for this process


def _code_class(code: int) -> str:
    return f"{code // 100}xx" if 100 <= code < 600 else "err"


def templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("sandbox.console", "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["duration"] = format_duration
    env.filters["age"] = format_age
    env.filters["code_class"] = _code_class
    return env


class Console:
    def __init__(self, settings: ConsoleSettings, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.done = asyncio.Event()  # (sandbox.service) nothing ends the console but a signal
        self.failure: Exception | None = None
        self._clock = clock
        self._env = templates()
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self._zipkin_runner: web.AppRunner | None = None
        self.port = settings.port
        self.zipkin_port: int | None = None
        self.store: TraceStore | None = None
        self.traces: TraceSource
        if settings.tracing:
            self._jaeger: JaegerTraces | None = JaegerTraces(settings.tracing)
            self.traces = self._jaeger
        else:
            self._jaeger = None
            self.store = TraceStore(settings.max_traces, settings.max_spans)
            self.traces = LocalTraces(self.store, self._url("/api/v2/spans"))
        self.started_at = clock()
        self.reader = MeshReader(settings.project, settings.control_plane, settings.prometheus, self._current_session)
        self.writer = ConfigWriter(settings.project, self._istio_dir)
        self.data = ConsoleData(self.reader, self.traces, clock, self.writer)
        self.token = settings.token or secrets.token_urlsafe(24)
        self.access = Access(self.token)

    def _istio_dir(self) -> Path | None:
        """Where the console writes: --istio, else the running mesh's Istio directory."""
        if self.settings.istio_dir is not None:
            return self.settings.istio_dir
        record = self.record()
        return Path(record.istio_dir) if record is not None and record.istio_dir else None

    def _current_session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "the console is not started"
        return self._session

    def _url(self, path: str, port: int | None = None) -> str:
        host = self.settings.bind if self.settings.bind not in ("0.0.0.0", "::", "") else "127.0.0.1"
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port or self.port}{path}"

    # -- wiring ----------------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY, middlewares=[self.access.middleware])
        app.router.add_get("/", self._root)
        app.router.add_get("/api/status", self._status)
        api.add_routes(app, self.data)
        Changes(self.data, self.writer, self.access).add_routes(app)
        Pages(self.data, self._env, self.status, self._clock, self.access).add_routes(app)
        app.router.add_static("/static/", STATIC_DIR, append_version=False)
        app.router.add_get("/api/health", self._health)
        app.router.add_get("/healthz/ready", self._ready)
        if self.store is not None:
            Collector(self.store, self._clock).add_routes(app)
            app.router.add_get("/traces/{trace_id}", self._trace_page)
        elif self._jaeger is not None:
            self._jaeger.add_routes(app)
        app.on_startup.append(self._open_session)
        app.on_cleanup.append(self._close_session)
        return app

    async def _open_session(self, _app: web.Application) -> None:
        timeout = aiohttp.ClientTimeout(total=UPSTREAM_TIMEOUT)
        self._session = aiohttp.ClientSession(timeout=timeout, cookie_jar=aiohttp.DummyCookieJar())
        if self._jaeger is not None:
            self._jaeger.session = self._session

    async def _close_session(self, _app: web.Application) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def start(self) -> int:
        """Listen; returns the bound port (useful with port 0)."""
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.settings.bind, self.settings.port).start()
        self.port = self._runner.addresses[0][1]
        if self.store is not None and self.settings.zipkin_port is not None:
            zipkin = web.Application(client_max_size=MAX_BODY)
            Collector(self.store, self._clock).add_ingest_route(zipkin)
            self._zipkin_runner = web.AppRunner(zipkin, access_log=None)
            await self._zipkin_runner.setup()
            await web.TCPSite(self._zipkin_runner, self.settings.bind, self.settings.zipkin_port).start()
            self.zipkin_port = self._zipkin_runner.addresses[0][1]
        if isinstance(self.traces, LocalTraces):
            self.traces.ingest_url = self._url("/api/v2/spans", self.zipkin_port)
        log.info("console on %s", self._url("/"))
        return self.port

    async def stop(self) -> None:
        for runner in (self._zipkin_runner, self._runner):
            if runner is not None:
                await runner.cleanup()
        self._runner = self._zipkin_runner = None

    # -- view data -------------------------------------------------------------------------------
    def record(self) -> MeshRecord | None:
        return read_record(self.settings.project) if self.settings.project else None

    async def status(self) -> dict[str, Any]:
        """The overview's data: every upstream read at once, each bounded by UPSTREAM_TIMEOUT."""
        assert self._session is not None, "the console is not started"
        record = self.record()
        cp_url = self.settings.control_plane or (record.control_plane if record else None) or DEFAULT_CONTROL_PLANE
        prom_url = self.settings.prometheus or (record.urls.get("prometheus") if record else None)
        control_plane, prometheus, (recent, traces_error) = await asyncio.gather(
            read_control_plane(self._session, cp_url),
            probe(self._session, prom_url, "/-/ready"),
            self.traces.recent(RECENT_TRACES),
        )
        project = self.settings.project
        return overview(
            now=self._clock(),
            record=record,
            compose_file=str(project.compose_file) if project else None,
            topology=[
                WorkloadInfo(w.name, w.app, w.version, w.namespace, w.replicas, w.inject)
                for w in self.reader.topology().workloads
            ],
            control_plane=control_plane,
            prometheus=prometheus,
            tracing=self.traces.describe(),
            traces=recent,
            traces_error=traces_error,
            console_url=self._url(""),
        )

    # -- handlers --------------------------------------------------------------------------------
    async def _status(self, _request: web.Request) -> web.Response:
        return web.json_response(await self.status())

    async def _root(self, _request: web.Request) -> web.Response:
        raise web.HTTPFound("/console/overview")

    async def _trace_page(self, request: web.Request) -> web.Response:
        """The old address of a trace page: the console's trace page now reads either source."""
        raise web.HTTPMovedPermanently(f"/console/traces/{request.match_info['trace_id']}")

    async def _health(self, _request: web.Request) -> web.Response:
        return web.json_response(
            {
                "status": "ready",
                "version": __version__,
                "tracing": self.traces.mode,
                "uptime": round(self._clock() - self.started_at, 3),
            }
        )

    async def _ready(self, _request: web.Request) -> web.Response:
        return web.Response(text="ok")


def run(settings: ConsoleSettings) -> int:
    """`sandbox console`: serve until SIGINT/SIGTERM (exit codes: sandbox.service)."""

    async def start() -> Console:
        console = Console(settings)
        try:
            await console.start()
        except OSError as exc:
            await console.stop()
            raise bind_error(exc, f"{settings.bind}:{settings.port}") from None
        return console

    return run_service(start)
