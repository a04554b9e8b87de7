"""The console process: one aiohttp app serving the JSON API, the pages and (without --tracing)
the built-in trace collector.

    GET /                  the overview page (server-rendered from /api/status's data)
    GET /api/status        the mesh: control plane, proxies with sync state, URLs, recent traces
    GET /api/health        the console's own readiness (JSON); /healthz/ready the same as text
    POST /api/v2/spans     Zipkin ingest (built-in collector only)
    GET /api/services, /api/traces, ...   Jaeger's query API (ours, or passed through to --tracing)

The mesh record (.sandbox/mesh.json) is read on every status request: the runtime writes it once
the mesh is ready, which is after the console starts.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import jinja2
from aiohttp import web

from sandbox import __version__
from sandbox.console.collector import MAX_BODY, Collector
from sandbox.console.jaeger import trace_json
from sandbox.console.mesh import DEFAULT_CONTROL_PLANE, probe, read_control_plane
from sandbox.console.spans import normalize_trace_id
from sandbox.console.store import DEFAULT_MAX_SPANS, DEFAULT_MAX_TRACES, TraceStore
from sandbox.console.tracesource import JaegerTraces, LocalTraces, TraceSource
from sandbox.console.views import WorkloadInfo, format_age, format_duration, overview, trace_view
from sandbox.runtime.project import MeshRecord, Project, read_record
from sandbox.signals import until_stopped

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


class _Topology:
    """The Compose file's workloads, re-read when the file changes (a bad file keeps the last good list)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._mtime: float | None = None
        self._workloads: list[WorkloadInfo] = []

    def workloads(self) -> list[WorkloadInfo]:
        if self.path is None:
            return []
        try:
            mtime = self.path.stat().st_mtime
        except OSError:
            return self._workloads
        if mtime != self._mtime:
            from sandbox.mesh.topology import load_compose

            try:
                topology = load_compose(self.path)
            except Exception:  # an unreadable file is analyze's to report; the page keeps the last list
                log.warning("cannot read %s; keeping the last workload list", self.path, exc_info=True)
                return self._workloads
            self._mtime = mtime
            self._workloads = [
                WorkloadInfo(w.name, w.app, w.version, w.namespace, w.replicas, w.inject) for w in topology.workloads
            ]
        return self._workloads


class Console:
    def __init__(self, settings: ConsoleSettings, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self._clock = clock
        self._env = templates()
        self._topology = _Topology(settings.project.compose_file if settings.project else None)
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

    def _url(self, path: str, port: int | None = None) -> str:
        host = self.settings.bind if self.settings.bind not in ("0.0.0.0", "::", "") else "127.0.0.1"
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port or self.port}{path}"

    # -- wiring ----------------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_get("/", self._page)
        app.router.add_get("/api/status", self._status)
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
            topology=self._topology.workloads(),
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

    async def _page(self, request: web.Request) -> web.Response:
        data = await self.status()
        refresh = request.query.get("refresh", "")
        html = self._env.get_template("overview.html").render(
            status=data, now=self._clock(), refresh=int(refresh) if refresh.isdigit() and int(refresh) > 0 else None
        )
        return web.Response(text=html, content_type="text/html")

    async def _trace_page(self, request: web.Request) -> web.Response:
        """One trace of the built-in collector (with an external Jaeger, its own UI shows traces)."""
        assert self.store is not None
        trace_id = normalize_trace_id(request.match_info["trace_id"])
        spans = self.store.get(trace_id) if trace_id else None
        if not spans:
            raise web.HTTPNotFound(
                text=f"no trace {request.match_info['trace_id']} in the collector (it may be evicted)"
            )
        view = trace_view(trace_json(spans))
        html = self._env.get_template("trace.html").render(trace=view, now=self._clock(), refresh=None)
        return web.Response(text=html, content_type="text/html")

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
    """`sandbox console`: serve until SIGINT/SIGTERM; 1 when the port cannot be bound."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    async def main() -> int:
        console = Console(settings)
        try:
            await console.start()
        except OSError as exc:
            reason = os.strerror(exc.errno).lower() if exc.errno else str(exc)
            log.error("cannot listen on %s:%d: %s", settings.bind, settings.port, reason)
            await console.stop()
            return 1
        try:
            await until_stopped()
        finally:
            await console.stop()
        return 0

    return asyncio.run(main())
