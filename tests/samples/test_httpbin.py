"""The httpbin sample: httpbin's answers for the endpoints Istio's tasks use, and a request log line."""

from __future__ import annotations

import time
from pathlib import Path

import aiohttp
import pytest
from bookinfo_support import FakeSidecar, async_test, load_app, serving

APPS = Path(__file__).resolve().parents[2] / "samples" / "httpbin" / "apps"


def httpbin_app(version: str = "v1", log: bool = False) -> object:
    return load_app("httpbin", APPS).make_app(version, log=log)


@async_test
async def test_get_headers_ip_anything() -> None:
    async with serving(httpbin_app("v2")) as url, aiohttp.ClientSession() as client:
        async with client.get(f"{url}/get?a=1", headers={"X-Test": "yes"}) as r:
            body = await r.json()
            assert r.headers["x-httpbin-version"] == "v2"
        assert body["args"] == {"a": "1"}
        assert body["headers"]["X-Test"] == "yes"
        assert body["origin"] == "127.0.0.1"
        assert body["url"].endswith("/get?a=1")
        async with client.get(f"{url}/headers", headers={"end-user": "jason"}) as r:
            assert (await r.json())["headers"]["End-User"] == "jason"
        async with client.get(f"{url}/ip", headers={"X-Forwarded-For": "10.1.2.3, 127.0.0.1"}) as r:
            assert await r.json() == {"origin": "10.1.2.3"}
        async with client.post(f"{url}/anything/x", json={"k": 1}) as r:
            body = await r.json()
        assert (body["method"], body["json"], body["url"].endswith("/anything/x")) == ("POST", {"k": 1}, True)


@pytest.mark.parametrize(("path", "status"), [("/status/418", 418), ("/status/503", 503), ("/status/200", 200),
                                              ("/status/99", 400), ("/status/x", 400), ("/delay/x", 400)])  # fmt: skip
@async_test
async def test_status_codes(path: str, status: int) -> None:
    async with serving(httpbin_app()) as url, aiohttp.ClientSession() as client, client.get(url + path) as r:
        assert r.status == status


@async_test
async def test_delay_waits_and_is_bounded() -> None:
    module = load_app("httpbin", APPS)
    assert module.MAX_DELAY == 10.0
    async with serving(httpbin_app()) as url, aiohttp.ClientSession() as client:
        started = time.monotonic()
        async with client.get(f"{url}/delay/0.3") as r:
            assert r.status == 200
        assert 0.3 <= time.monotonic() - started < 2


@async_test
async def test_each_request_is_logged_with_its_version(capsys: pytest.CaptureFixture[str]) -> None:
    async with (
        serving(httpbin_app("v1", log=True)) as url,
        aiohttp.ClientSession() as client,
        client.get(f"{url}/headers", headers={"x-request-id": "abc"}),
    ):
        pass
    assert 'httpbin v1 "GET /headers" 200' in capsys.readouterr().out


@async_test
async def test_fortio_runs_loads_and_fetches_through_its_sidecar(monkeypatch: pytest.MonkeyPatch) -> None:
    fortio = load_app("fortio", APPS)
    sidecar = FakeSidecar()
    async with serving(sidecar.app()) as proxy, serving(httpbin_app("v1")) as httpbin:
        sidecar.upstreams["httpbin"] = httpbin
        monkeypatch.setenv("HTTP_PROXY", proxy)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        async with serving(fortio.make_app()) as url, aiohttp.ClientSession() as client:
            query = "url=http://httpbin:8000/get&c=2&n=6&qps=0&H=end-user:%20jason"
            async with client.get(f"{url}/fortio/rest/run?{query}") as r:
                assert r.status == 200
                result = await r.json()
            assert result["RetCodes"] == {"200": 6} and result["NumThreads"] == 2
            assert result["Proxy"] == proxy
            async with client.get(f"{url}/fortio/fetch/httpbin:8000/headers?x=1") as r:
                assert r.status == 200 and r.headers["x-httpbin-version"] == "v1"
            async with client.get(f"{url}/fortio/rest/run?url=https://x/&n=1") as r:
                assert r.status == 400 and "http://" in (await r.json())["error"]
    calls = sidecar.to("httpbin")
    assert len(calls) == 7
    assert calls[0].path == "/get" and calls[0].headers["end-user"] == "jason"
    assert calls[-1].path == "/headers?x=1"
