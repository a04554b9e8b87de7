"""Bookinfo's apps in-process: each on a loopback port, reached as `http://<service>:9080` through a
fake sidecar set as HTTP_PROXY (what the mesh gives the apps), which records every call and can
delay or abort one service's calls the way an Istio fault would.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.util
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parents[2]
APPS = ROOT / "samples" / "bookinfo" / "apps"


def load_app(name: str, directory: Path = APPS) -> ModuleType:
    """A sample app module, imported from its file under a unique name (`bookinfo_reviews`)."""
    if str(directory) not in sys.path:
        sys.path.insert(0, str(directory))  # the apps import their shared module by plain name
    key = f"{directory.parent.name}_{name}"
    if key in sys.modules:
        return sys.modules[key]
    spec = importlib.util.spec_from_file_location(key, directory / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[key] = module
    spec.loader.exec_module(module)
    return module


def async_test(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test on a fresh loop, bounded to 30 s."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(asyncio.wait_for(fn(*args, **kwargs), 30))

    return run


@contextlib.asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    """Serve `app` on 127.0.0.1 (a free port); yields its base URL."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)  # cut short what a fault delays
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding", "date", "server"}


@dataclass
class Call:
    service: str
    path: str
    headers: dict[str, str]


@dataclass
class Fault:
    delay: float = 0.0
    abort: int | None = None


@dataclass
class FakeSidecar:
    """An HTTP proxy that routes `http://<service>:9080/...` to that service's in-process app."""

    upstreams: dict[str, str] = field(default_factory=dict)  # service -> base URL
    calls: list[Call] = field(default_factory=list)
    faults: dict[str, Fault] = field(default_factory=dict)

    def to(self, service: str) -> list[Call]:
        return [c for c in self.calls if c.service == service]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        target = request.url  # absolute-form request line: http://reviews:9080/reviews/0
        service = target.host or ""
        self.calls.append(Call(service, target.path_qs, {k.lower(): v for k, v in request.headers.items()}))
        base = self.upstreams.get(service)
        if base is None:
            return web.Response(status=503, text="no healthy upstream")
        fault = self.faults.get(service)
        if fault and fault.delay:
            await asyncio.sleep(fault.delay)
        if fault and fault.abort:
            return web.Response(status=fault.abort, text="fault filter abort")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        async with (
            aiohttp.ClientSession(auto_decompress=False) as session,
            session.request(request.method, base + target.path_qs, headers=headers, data=await request.read()) as up,
        ):
            body = await up.read()
            passed = {k: v for k, v in up.headers.items() if k.lower() not in HOP_BY_HOP}
            return web.Response(status=up.status, body=body, headers=passed)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app


@dataclass
class Bookinfo:
    productpage: str  # base URL
    sidecar: FakeSidecar
    session: aiohttp.ClientSession  # the browser: keeps productpage's session cookie

    async def page(self, **headers: str) -> tuple[int, str, float]:
        """GET /productpage: (status, HTML, seconds it took)."""
        started = time.monotonic()
        async with self.session.get(f"{self.productpage}/productpage", headers=headers) as response:
            return response.status, await response.text(), time.monotonic() - started

    async def login(self, user: str) -> int:
        form = {"username": user, "passwd": "password"}
        async with self.session.post(f"{self.productpage}/login", data=form, allow_redirects=False) as response:
            return response.status


@contextlib.asynccontextmanager
async def bookinfo(
    monkeypatch: Any,
    reviews_version: str = "v1",
    *,
    productpage_timeout: float = 3.0,
    ratings_timeout: float | None = None,
) -> AsyncIterator[Bookinfo]:
    """productpage, details, one reviews version and ratings, wired through a FakeSidecar."""
    sidecar = FakeSidecar()
    async with contextlib.AsyncExitStack() as stack:
        proxy = await stack.enter_async_context(serving(sidecar.app()))
        monkeypatch.setenv("HTTP_PROXY", proxy)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        monkeypatch.delenv("http_proxy", raising=False)
        apps = {
            "details": load_app("details").make_app(),
            "reviews": load_app("reviews").make_app(reviews_version, {}, ratings_timeout=ratings_timeout),
            "ratings": load_app("ratings").make_app("v1"),
        }
        for name, app in apps.items():
            sidecar.upstreams[name] = await stack.enter_async_context(serving(app))
        page_url = await stack.enter_async_context(
            serving(load_app("productpage").make_app({}, timeout=productpage_timeout))
        )
        browser = await stack.enter_async_context(aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)))
        yield Bookinfo(page_url, sidecar, browser)
