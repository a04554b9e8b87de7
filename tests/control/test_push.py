"""The push server with real sidecar subscriptions over WebSockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from sandbox.control.ca import MeshCA
from sandbox.control.push import PushServer, SyncState
from sandbox.control.tokens import TokenAuthority
from sandbox.proxy.subscription import Subscription
from sandbox.xds.certificate import WorkloadCertificate
from sandbox.xds.identity import ProxyIdentity
from sandbox.xds.messages import Hello

AUTHORITY = TokenAuthority(b"k" * 32)


class Config:
    """The snapshot source: a version per node, like compile() per proxy."""

    def __init__(self) -> None:
        self.default: dict[str, Any] = {"routes": "v1"}
        self.per_node: dict[str, dict[str, Any]] = {}

    def __call__(self, identity: ProxyIdentity, node: str) -> tuple[str, dict[str, Any]]:
        payload = self.per_node.get(node, self.default)
        return (f"{node}:{sorted(payload.items())}", payload)


class Sink:
    def __init__(self) -> None:
        self.applied: list[dict[str, Any]] = []
        self.certs: list[WorkloadCertificate] = []

    def on_snapshot(self, payload: dict[str, Any]) -> None:
        if "reject" in payload:
            raise ValueError(payload["reject"])
        self.applied.append(payload)

    def on_certificate(self, bundle: WorkloadCertificate) -> None:
        self.certs.append(bundle)


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


async def serve(push: PushServer, port: int = 0) -> tuple[web.AppRunner, int]:
    app = web.Application()
    push.add_routes(app)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, runner.addresses[0][1]


def sidecar(port: int, workload: str, token: str | None = None, node: str = "") -> tuple[Subscription, Sink]:
    identity = ProxyIdentity(workload, "default", workload.split("-")[0])
    sink = Sink()
    me = Hello(
        node or workload,
        ProxyIdentity(workload, "default", identity.service_account),
        token or AUTHORITY.issue(identity),
    )
    return Subscription(f"http://127.0.0.1:{port}/v1/push", me, sink, rng=random.Random(7)), sink


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_every_sidecar_gets_its_snapshot_and_only_changed_proxies_are_pushed_again() -> None:
    async def scenario() -> None:
        config = Config()
        converged: list[float] = []
        push = PushServer(config, AUTHORITY.verify, on_converged=converged.append)
        acked: list[str] = []
        push.ack_listeners.append(lambda status: acked.append(status.node))
        runner, port = await serve(push)
        clients = [sidecar(port, w) for w in ("productpage-v1", "reviews-v1", "ratings-v1")]
        for sub, _ in clients:
            sub.start()
        await until(lambda: all(s.applied for _, s in clients))
        await until(lambda: all(p["state"] == "SYNCED" for p in push.sync_status()) and len(push.sync_status()) == 3)
        assert push.stats.pushes == 3 and push.connected == 3 and len(converged) == 3

        config.per_node["reviews-v1"] = {"routes": "v2"}
        push.push_all(changed_at=asyncio.get_running_loop().time())
        await until(lambda: push.proxies["reviews-v1"].state is SyncState.SYNCED)
        assert [len(s.applied) for _, s in clients] == [1, 2, 1]  # the others' versions did not change
        assert clients[1][1].applied[-1] == {"routes": "v2"} and clients[1][0].version.endswith("'v2')]")
        assert push.stats.pushes == 4 and push.stats.acks == 4
        assert sorted(acked) == ["productpage-v1", "ratings-v1", "reviews-v1", "reviews-v1"]
        status = {p["proxy"]: p for p in push.sync_status()}["reviews-v1"]
        assert status["versionAcked"] == status["versionSent"] == status["versionCurrent"]
        assert status["sinceLastAck"] is not None and status["pushes"] == 2
        for sub, _ in clients:
            await sub.stop()
        await until(lambda: push.connected == 0)
        assert push.proxies["reviews-v1"].state is SyncState.DISCONNECTED
        await runner.cleanup()

    run(scenario)


def test_a_nacked_snapshot_is_not_applied_and_the_old_one_keeps_serving() -> None:
    async def scenario() -> None:
        config = Config()
        push = PushServer(config, AUTHORITY.verify)
        runner, port = await serve(push)
        sub, sink = sidecar(port, "reviews-v1")
        sub.start()
        await until(lambda: push.proxies.get("reviews-v1") is not None and push.proxies["reviews-v1"].version_acked)
        good = sub.version

        config.default = {"routes": "v2", "reject": "unknown cluster outbound|9080|v3|reviews"}
        push.push_all()
        await until(lambda: push.proxies["reviews-v1"].state is SyncState.NACK)
        status = push.proxies["reviews-v1"]
        assert status.nack_reason == "unknown cluster outbound|9080|v3|reviews"
        assert status.version_acked == good == sub.version and sink.applied == [{"routes": "v1"}]
        assert push.stats.nacks == 1
        push.push_all()  # nothing changed: the rejected version is not resent
        await asyncio.sleep(0.05)
        assert push.stats.pushes == 2

        config.default = {"routes": "v3"}
        push.push_all()
        await until(lambda: push.proxies["reviews-v1"].state is SyncState.SYNCED)
        assert sink.applied[-1] == {"routes": "v3"} and status.nack_reason == ""
        await sub.stop()
        await runner.cleanup()

    run(scenario)


def test_a_token_for_another_workload_is_refused_with_a_reason_and_counted() -> None:
    async def scenario() -> None:
        push = PushServer(Config(), AUTHORITY.verify)
        runner, port = await serve(push)
        stolen = AUTHORITY.issue(ProxyIdentity("ratings-v1", "default", "ratings"))
        sub, sink = sidecar(port, "reviews-v1", token=stolen)
        sub.start()
        await until(lambda: push.stats.refused >= 1 and "4401" in sub.last_error)
        assert "bootstrap token does not match reviews-v1 (default/reviews)" in sub.last_error
        assert sink.applied == [] and sink.certs == [] and "reviews-v1" not in push.proxies
        assert not sub.connected
        await sub.stop()
        await runner.cleanup()

    run(scenario)


def test_a_restarted_control_plane_brings_every_sidecar_to_the_current_version() -> None:
    async def scenario() -> None:
        config = Config()
        push = PushServer(config, AUTHORITY.verify)
        runner, port = await serve(push)
        clients = [sidecar(port, f"reviews-v{i}") for i in (1, 2, 3)]
        for sub, _ in clients:
            sub.start()
        await until(lambda: all(s.applied for _, s in clients))
        await runner.cleanup()  # the control plane goes away
        await until(lambda: not any(sub.connected for sub, _ in clients))
        assert all(s.applied == [{"routes": "v1"}] for _, s in clients)  # still serving the last snapshot

        config.default = {"routes": "v2"}  # changed while it was down
        config.per_node["reviews-v3"] = {"routes": "v1"}  # unchanged for this one
        again = PushServer(config, AUTHORITY.verify)
        runner, _ = await serve(again, port)
        await until(
            lambda: len(again.proxies) == 3 and all(p.state is SyncState.SYNCED for p in again.proxies.values())
        )
        assert [s.applied[-1] for _, s in clients] == [{"routes": "v2"}, {"routes": "v2"}, {"routes": "v1"}]
        assert again.stats.pushes == 2  # reviews-v3 reported the version it had: nothing to resend
        for sub, _ in clients:
            assert sub.connects == 2
            await sub.stop()
        await runner.cleanup()

    run(scenario)


def test_a_second_connection_of_the_same_proxy_supersedes_the_first() -> None:
    async def scenario() -> None:
        push = PushServer(Config(), AUTHORITY.verify)
        runner, port = await serve(push)
        first, _ = sidecar(port, "reviews-v1")
        first.start()
        await until(lambda: first.connected)
        second, sink = sidecar(port, "reviews-v1")
        await first.stop()  # a stale twin must not steal the proxy's status when it goes
        second.start()
        await until(lambda: bool(sink.applied) and push.connected == 1)
        assert push.proxies["reviews-v1"].connected
        await second.stop()
        await runner.cleanup()

    run(scenario)


def test_the_certificate_arrives_over_the_connection_and_is_rotated(tmp_path: Path) -> None:
    async def scenario() -> None:
        ca = MeshCA.load_or_create(tmp_path / "state")

        def certificates(identity: ProxyIdentity) -> Any:
            return ca.issue(identity.namespace, identity.service_account, ttl=dt.timedelta(seconds=2))

        push = PushServer(Config(), AUTHORITY.verify, certificates)
        runner, port = await serve(push)
        sub, sink = sidecar(port, "reviews-v2")
        sub.start()
        await until(lambda: len(sink.certs) >= 1)
        cert = sink.certs[0]
        assert cert.spiffe_id == "spiffe://cluster.local/ns/default/sa/reviews"
        assert "PRIVATE KEY" in cert.private_key and "PRIVATE KEY" not in repr(cert)
        assert cert.root_cert == ca.root_pem
        assert push.proxies["reviews-v2"].cert_serial == cert.serial_hex
        started = asyncio.get_running_loop().time()
        await until(lambda: len(sink.certs) >= 2)  # 2 s TTL: re-issued at about half its life
        took = asyncio.get_running_loop().time() - started
        assert 0.5 < took < 1.9 and sink.certs[1].serial != cert.serial  # before it expires
        assert len(sink.certs) == 2 and push.stats.certificates == 2
        await sub.stop()
        await runner.cleanup()

    run(scenario)


@pytest.mark.parametrize("hello", ['{"type": "ack"}', "not json", '{"type": "hello", "workload": "x"}'])
def test_a_malformed_hello_is_refused(hello: str) -> None:
    async def scenario() -> None:
        import aiohttp

        push = PushServer(Config(), AUTHORITY.verify)
        runner, port = await serve(push)
        async with aiohttp.ClientSession() as session, session.ws_connect(f"http://127.0.0.1:{port}/v1/push") as ws:
            await ws.send_str(hello)
            msg = await ws.receive(timeout=5)
            assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 4400
        assert push.stats.refused == 1 and push.proxies == {}
        await runner.cleanup()

    run(scenario)


def test_a_snapshot_that_fails_to_build_for_one_proxy_does_not_stop_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        config = Config()

        def snapshots(identity: ProxyIdentity, node: str) -> tuple[str, dict[str, Any]]:
            if node == "ratings-v1" and config.default != {"routes": "v1"}:
                raise KeyError("compile bug")
            return config(identity, node)

        push = PushServer(snapshots, AUTHORITY.verify)
        runner, port = await serve(push)
        clients = [sidecar(port, w) for w in ("reviews-v1", "ratings-v1")]
        for sub, _ in clients:
            sub.start()
        await until(lambda: all(s.applied for _, s in clients))
        config.default = {"routes": "v2"}
        push.push_all()
        await until(lambda: clients[0][1].applied[-1] == {"routes": "v2"})
        assert push.proxies["ratings-v1"].state is SyncState.STALE and clients[1][1].applied == [{"routes": "v1"}]
        assert "compile bug" in caplog.text
        for sub, _ in clients:
            await sub.stop()
        await runner.cleanup()

    run(scenario)


def test_only_the_most_recent_disconnected_proxies_are_remembered(monkeypatch: pytest.MonkeyPatch) -> None:
    import sandbox.control.push as push_module

    monkeypatch.setattr(push_module, "MAX_DISCONNECTED", 2)

    async def scenario() -> None:
        push = PushServer(Config(), AUTHORITY.verify)
        runner, port = await serve(push)
        for i in range(4):  # replicas that come and go under fresh names
            sub, sink = sidecar(port, "reviews-v1", node=f"reviews-v1-{i}")
            sub.start()
            await until(lambda s=sink: bool(s.applied))
            await sub.stop()
            await until(lambda: push.connected == 0)
        assert sorted(push.proxies) == ["reviews-v1-2", "reviews-v1-3"]
        assert all(p["state"] == "DISCONNECTED" for p in push.sync_status())
        await runner.cleanup()

    run(scenario)


def test_a_change_makes_every_proxy_stale_at_once_and_unconcerned_ones_current_again_without_a_push() -> None:
    async def scenario() -> None:
        config = Config()
        push = PushServer(config, AUTHORITY.verify)
        current: list[str] = []
        push.current_listeners.append(lambda status: current.append(status.node))
        runner, port = await serve(push)
        clients = [sidecar(port, w) for w in ("productpage-v1", "reviews-v1")]
        for sub, _ in clients:
            sub.start()
        await until(lambda: [p["state"] for p in push.sync_status()] == ["SYNCED", "SYNCED"])
        current.clear()
        config.per_node["reviews-v1"] = {"routes": "v2"}
        push.push_all()
        # before any version is recomputed, nobody may look SYNCED on what is now outdated
        assert [p["state"] for p in push.sync_status()] == ["STALE", "STALE"]
        await until(lambda: [p["state"] for p in push.sync_status()] == ["SYNCED", "SYNCED"])
        assert current == ["productpage-v1"] and push.stats.pushes == 3
        for sub, _ in clients:
            await sub.stop()
        await runner.cleanup()

    run(scenario)
