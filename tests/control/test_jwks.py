"""jwksUri fetched by the control plane from a JWKS server on loopback, pushed inline, refreshed."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import web
from factories import BOOKINFO
from jwtkit import ISSUER, jwks

from sandbox.control.jwks import JwksCache
from sandbox.control.plane import ControlPlane, ControlPlaneSettings
from sandbox.xds.identity import ProxyIdentity
from sandbox.xds.snapshot import ProxySnapshot


class JwksServer:
    """A JWKS endpoint whose answer the test changes: keys, an error status, garbage or silence."""

    def __init__(self) -> None:
        self.body = jwks()
        self.status = 200
        self.delay = 0.0
        self.hits = 0
        self.url = ""

    async def handle(self, _request: web.Request) -> web.Response:
        self.hits += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        return web.Response(text=self.body, status=self.status, content_type="application/json")


@asynccontextmanager
async def jwks_server() -> AsyncIterator[JwksServer]:
    server = JwksServer()
    app = web.Application()
    app.router.add_get("/jwks.json", server.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server.url = f"http://127.0.0.1:{runner.addresses[0][1]}/jwks.json"
    try:
        yield server
    finally:
        await runner.cleanup()


async def until(predicate: object, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "not reached in time"
        await asyncio.sleep(0.02)


def test_keys_are_fetched_refreshed_and_a_failing_fetch_keeps_the_last_good_ones(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        changes: list[int] = []
        async with jwks_server() as server:
            cache = JwksCache(lambda: changes.append(1), refresh=0.2, timeouts=lambda _uri: 0.5)
            cache.track([server.url])
            await until(lambda: cache.get(server.url) is not None)
            assert json.loads(cache.get(server.url) or "")["keys"][0]["kty"] == "RSA"
            assert changes == [1]
            hits = server.hits
            await until(lambda: server.hits >= hits + 2)  # refetched periodically
            assert changes == [1]  # the same keys: no new push
            server.status = 500
            await until(lambda: cache.status()[0]["error"] == "HTTP 500")
            assert cache.get(server.url) is not None  # the last good keys stay
            server.status, server.body = 200, "not json"
            await until(lambda: cache.status()[0]["error"] == "the answer is not JSON")
            server.body, server.delay = jwks(), 2.0
            await until(lambda: cache.status()[0]["error"] == "timed out")
            server.delay = 0.0
            server.body = json.dumps({"keys": []})
            await until(lambda: changes == [1, 1])  # new keys: a new push
            assert cache.status()[0]["error"] is None and cache.status()[0]["keys"] == 0
            cache.track([])
            assert cache.get(server.url) is None and cache.status() == []
            await cache.close()

    with caplog.at_level(logging.WARNING, logger="sandbox.control.jwks"):
        asyncio.run(scenario())
    assert any("HTTP 500; keeping the last good keys" in m for m in caplog.messages)


def test_the_control_plane_pushes_the_fetched_keys_inline(tmp_path: Path) -> None:
    istio = tmp_path / "istio"
    istio.mkdir()
    compose = tmp_path / "compose.yaml"
    shutil.copy(BOOKINFO / "compose.yaml", compose)

    async def scenario() -> None:
        async with jwks_server() as server:
            (istio / "ra.yaml").write_text(
                "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\n"
                "metadata: {name: jwt, namespace: default}\n"
                f"spec:\n  jwtRules:\n  - issuer: {ISSUER}\n    jwksUri: {server.url}\n"
            )
            plane = ControlPlane(ControlPlaneSettings(istio, compose, tmp_path / "state", port=0, jwks_refresh=0.2))
            plane.start()
            try:
                identity = ProxyIdentity("productpage-v1", "default", "bookinfo-productpage")

                def provider_keys() -> str:
                    found = plane._snapshot_for(identity, "productpage-v1")
                    assert found is not None
                    return ProxySnapshot.from_json(found[1]).access.jwt[0].jwks

                await until(lambda: provider_keys() != "")
                assert json.loads(provider_keys()) == json.loads(jwks())
                assert plane.jwks.status()[0]["uri"] == server.url
            finally:
                plane.stop()
                await plane.jwks.close()

    asyncio.run(scenario())
