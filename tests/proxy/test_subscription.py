"""The sidecar's subscription against the real push server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
import random
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from sandbox.control.ca import MeshCA
from sandbox.control.push import PushServer, SyncState
from sandbox.control.tokens import TokenAuthority
from sandbox.proxy.subscription import Subscription, backoff_delay
from sandbox.xds.certificate import WorkloadCertificate
from sandbox.xds.identity import ProxyIdentity
from sandbox.xds.messages import Hello

AUTHORITY = TokenAuthority(b"s" * 32)
REVIEWS = ProxyIdentity("reviews-v1", "default", "reviews")


def me(node: str) -> Hello:
    return Hello(node, REVIEWS, AUTHORITY.issue(REVIEWS))


def test_backoff_doubles_from_100ms_to_a_5s_cap_with_jitter() -> None:
    rng = random.Random(3)
    delays = [backoff_delay(n, rng) for n in range(12)]
    for n, d in enumerate(delays):
        step = min(5.0, 0.1 * 2**n)
        assert step / 2 <= d <= step
    assert max(delays) <= 5.0 and delays[-1] >= 2.5
    fleet = {round(backoff_delay(4, random.Random(seed)), 4) for seed in range(50)}
    assert len(fleet) > 40  # sidecars do not reconnect in lockstep after a restart
    assert backoff_delay(10_000, rng) <= 5.0  # no overflow after a long outage


class Sink:
    def __init__(self, refuse_certs: bool = False) -> None:
        self.applied: list[dict[str, Any]] = []
        self.certs: list[WorkloadCertificate] = []
        self.refuse_certs = refuse_certs

    def on_snapshot(self, payload: dict[str, Any]) -> None:
        if payload.get("routes") == "broken":
            raise ValueError("route reviews: no cluster outbound|9080|v9|reviews.default.svc.cluster.local")
        self.applied.append(payload)

    def on_certificate(self, bundle: WorkloadCertificate) -> None:
        if self.refuse_certs:
            raise ValueError(f"unexpected SPIFFE ID {bundle.spiffe_id}")
        self.certs.append(bundle)


async def until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


async def serve(push: PushServer) -> tuple[web.AppRunner, str]:
    app = web.Application()
    push.add_routes(app)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}/v1/push"


def test_a_snapshot_the_sink_rejects_is_nacked_with_its_error_and_the_version_stays() -> None:
    payloads = [{"routes": "v1"}]

    def snapshots(identity: ProxyIdentity, node: str) -> tuple[str, dict[str, Any]]:
        return (f"v{len(payloads)}", payloads[-1])

    async def scenario() -> None:
        push = PushServer(snapshots, AUTHORITY.verify)
        runner, url = await serve(push)
        sink = Sink()
        sub = Subscription(url, me("reviews-v1-0"), sink)
        sub.start()
        await until(lambda: sub.version == "v1")
        payloads.append({"routes": "broken"})
        push.push_all()
        await until(lambda: push.proxies["reviews-v1-0"].state is SyncState.NACK)
        assert sub.version == "v1" and sink.applied == [{"routes": "v1"}]
        assert "no cluster outbound|9080|v9" in push.proxies["reviews-v1-0"].nack_reason
        await sub.stop()
        await runner.cleanup()

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_the_private_key_never_reaches_the_log(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    ca = MeshCA.load_or_create(tmp_path / "state")
    keys: list[str] = []

    def certificates(identity: ProxyIdentity) -> Any:
        issued = ca.issue(identity.namespace, identity.service_account)
        keys.append(issued.private_key)
        return issued

    async def scenario() -> None:
        push = PushServer(lambda i, n: None, AUTHORITY.verify, certificates)
        runner, url = await serve(push)
        subs = []
        for refuse in (False, True):  # the NACK path logs the error, never the key
            sink = Sink(refuse_certs=refuse)
            sub = Subscription(url, me(f"reviews-v1-{int(refuse)}"), sink)
            sub.start()
            subs.append((sub, sink))
        await until(lambda: subs[0][1].certs and len(keys) == 2 and "unexpected SPIFFE ID" in caplog.text)
        logging.getLogger("sandbox.proxy").info("bundle %r", subs[0][1].certs[0])
        for sub, _ in subs:
            await sub.stop()
        await runner.cleanup()

    asyncio.run(asyncio.wait_for(scenario(), 60))
    for key in keys:
        assert key.splitlines()[1] not in caplog.text
    assert "PRIVATE KEY" not in caplog.text


def test_garbage_from_the_server_ends_the_connection_but_not_the_subscription() -> None:
    async def scenario() -> None:
        connections = 0

        async def handler(request: web.Request) -> web.WebSocketResponse:
            nonlocal connections
            connections += 1
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            await ws.receive()  # the hello
            await ws.send_str("[1, 2, 3]" if connections == 1 else '{"type": "hello", "version": ""}')
            async for _ in ws:
                pass
            return ws

        app = web.Application()
        app.router.add_get("/v1/push", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        sub = Subscription(f"http://127.0.0.1:{runner.addresses[0][1]}/v1/push", me("n"), Sink())
        sub.start()
        await until(lambda: sub.connected)  # it came back after the garbage
        assert connections == 2
        await sub.stop()
        await runner.cleanup()

    asyncio.run(asyncio.wait_for(scenario(), 60))
