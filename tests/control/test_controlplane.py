"""The control plane process (sandbox/control/server.py) on 127.0.0.1: files on disk -> sidecar subscriptions.

Named after the `controlplane` command: tests/proxy/test_server.py is the sidecar's (test basenames must be unique)."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from factories import BOOKINFO, reviews_to

from sandbox.control.plane import ControlPlane, ControlPlaneSettings
from sandbox.control.server import ControlPlaneServer
from sandbox.proxy.subscription import Subscription
from sandbox.xds.certificate import WorkloadCertificate
from sandbox.xds.identity import ProxyIdentity
from sandbox.xds.messages import Hello
from sandbox.xds.snapshot import ProxySnapshot


class Sidecar:
    """A sink that really decodes the snapshot, as the proxy process does."""

    def __init__(self) -> None:
        self.snapshot: ProxySnapshot | None = None
        self.cert: WorkloadCertificate | None = None

    def on_snapshot(self, payload: dict[str, Any]) -> None:
        self.snapshot = ProxySnapshot.from_data(payload)

    def on_certificate(self, bundle: WorkloadCertificate) -> None:
        self.cert = bundle

    def reviews_cluster(self) -> str:
        if self.snapshot is None:
            return ""
        for rc in self.snapshot.route_configs:
            for vh in rc.virtual_hosts:
                if vh.name.startswith("reviews."):
                    return vh.routes[0].clusters[0].cluster
        return ""


async def until(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "not reached in time"
        await asyncio.sleep(0.01)


def save(path: Path, text: str) -> None:
    """An editor's atomic save."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def test_file_edits_reach_every_sidecar_and_bad_files_keep_the_last_good_rules(tmp_path: Path) -> None:
    istio = tmp_path / "istio"
    istio.mkdir()
    shutil.copy(BOOKINFO / "destination-rule-all.yaml", istio)
    compose = tmp_path / "compose.yaml"
    shutil.copy(BOOKINFO / "compose.yaml", compose)
    (istio / "reviews.yaml").write_text(reviews_to("v1"))
    v = "outbound|9080|{}|reviews.default.svc.cluster.local".format

    async def scenario() -> None:
        plane = ControlPlane(ControlPlaneSettings(istio, compose, tmp_path / "state", port=0))
        plane_server = ControlPlaneServer(plane)
        port = await plane_server.start()
        base = f"http://127.0.0.1:{port}"
        sidecars: list[tuple[Subscription, Sidecar]] = []
        for workload, sa in (("productpage-v1", "bookinfo-productpage"), ("reviews-v2", "bookinfo-reviews")):
            token = plane.tokens.issue(ProxyIdentity(workload, "default", sa))
            sink = Sidecar()
            sub = Subscription(f"{base}/v1/push", Hello(workload, ProxyIdentity(workload, "default", sa), token), sink)
            sub.start()
            sidecars.append((sub, sink))
        intruder = Subscription(
            f"{base}/v1/push",
            Hello(
                "x",
                ProxyIdentity("ratings-v1", "default", "bookinfo-ratings"),
                plane.tokens.issue(ProxyIdentity("a", "b", "c")),
            ),
            Sidecar(),
        )
        intruder.start()
        async with aiohttp.ClientSession() as http:

            async def syncz() -> list[dict[str, Any]]:
                async with http.get(f"{base}/debug/syncz") as r:
                    return list(await r.json())

            async def synced() -> bool:
                states = [p["state"] for p in await syncz()]
                return states == ["SYNCED", "SYNCED"]

            await until(lambda: all(s.reviews_cluster() == v("v1") for _, s in sidecars))
            assert await synced()
            cert = sidecars[1][1].cert
            assert cert is not None and cert.spiffe_id == "spiffe://cluster.local/ns/default/sa/bookinfo-reviews"
            await until(lambda: "4401" in intruder.last_error)

            save(istio / "reviews.yaml", reviews_to("v2"))
            await until(lambda: all(s.reviews_cluster() == v("v2") for _, s in sidecars))
            await until(lambda: plane.push.stats.acks >= 4)

            for broken, code, line in (
                (reviews_to("v2") + "  - [\n", "SBX001", 13),
                (reviews_to("v9"), "KIA1107", 9),
            ):
                save(istio / "reviews.yaml", broken)
                await until(
                    lambda c=code: c in {d.code for d in plane.store.statuses[str(istio / "reviews.yaml")].diagnostics}
                )
                async with http.get(f"{base}/debug/configz") as r:
                    files = {f["file"]: f for f in (await r.json())["files"]}
                status = files[str(istio / "reviews.yaml")]
                assert [(d["code"], d["line"]) for d in status["diagnostics"]][-1] == (code, line)
                assert status["resources"] == ["VirtualService/default/reviews"]  # still in force
                assert all(s.reviews_cluster() == v("v2") for _, s in sidecars)
                assert await synced()

            save(istio / "reviews.yaml", reviews_to("v3"))
            await until(lambda: all(s.reviews_cluster() == v("v3") for _, s in sidecars))
            await until(lambda: plane.push.stats.acks >= 6)
            assert await synced()

            async with http.get(f"{base}/metrics") as r:
                metrics = await r.text()
            assert "pilot_xds 2.0" in metrics
            assert 'pilot_xds_pushes_total{type="snapshot"} 6.0' in metrics
            assert "pilot_proxy_convergence_time_count 6.0" in metrics
            assert "sandbox_config_convergence_time_count 2.0" in metrics  # two changes applied: v2, then v3
            assert "sandbox_refused_connections_total" in metrics and "pilot_total_xds_rejects_total 0.0" in metrics
        for sub, _ in [*sidecars, (intruder, None)]:
            await sub.stop()
        await plane_server.stop()

    asyncio.run(asyncio.wait_for(scenario(), 90))


def test_adding_a_workload_to_the_compose_file_adds_endpoints(tmp_path: Path) -> None:
    istio = tmp_path / "istio"
    istio.mkdir()
    compose = tmp_path / "compose.yaml"
    text = (BOOKINFO / "compose.yaml").read_text()
    compose.write_text(text.split("  reviews-v3:")[0] + "  ratings-v1:" + text.split("  ratings-v1:")[1])

    async def scenario() -> None:
        plane = ControlPlane(ControlPlaneSettings(istio, compose, tmp_path / "state", port=0))
        plane_server = ControlPlaneServer(plane)
        port = await plane_server.start()
        identity = ProxyIdentity("productpage-v1", "default", "bookinfo-productpage")
        sink = Sidecar()
        me = Hello("pp", identity, plane.tokens.issue(identity))
        sub = Subscription(f"http://127.0.0.1:{port}/v1/push", me, sink)
        sub.start()

        def reviews_endpoints() -> list[str]:
            if sink.snapshot is None:
                return []
            cluster = sink.snapshot.cluster("outbound|9080||reviews.default.svc.cluster.local")
            return sorted(e.workload for e in cluster.endpoints) if cluster else []

        await until(lambda: reviews_endpoints() == ["reviews-v1", "reviews-v2"])
        save(compose, text)
        await until(lambda: reviews_endpoints() == ["reviews-v1", "reviews-v2", "reviews-v3"])
        await sub.stop()
        await plane_server.stop()

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_a_token_minted_for_an_identity_the_compose_file_no_longer_gives_is_refused(tmp_path: Path) -> None:
    istio = tmp_path / "istio"
    istio.mkdir()
    compose = tmp_path / "compose.yaml"
    shutil.copy(BOOKINFO / "compose.yaml", compose)

    async def scenario() -> None:
        plane = ControlPlane(ControlPlaneSettings(istio, compose, tmp_path / "state", port=0))
        plane_server = ControlPlaneServer(plane)
        port = await plane_server.start()
        old = ProxyIdentity("reviews-v1", "default", "bookinfo-productpage")  # the compose file says bookinfo-reviews
        me = Hello("r", ProxyIdentity(old.workload, old.namespace, old.service_account), plane.tokens.issue(old))
        sub = Subscription(f"http://127.0.0.1:{port}/v1/push", me, Sidecar())
        sub.start()
        await until(lambda: "4401" in sub.last_error)
        assert plane.push.stats.refused >= 1 and "r" not in plane.push.proxies
        await sub.stop()
        await plane_server.stop()

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_a_restarted_control_plane_keeps_its_ca_and_tokens_and_resyncs_every_sidecar(tmp_path: Path) -> None:
    istio = tmp_path / "istio"
    istio.mkdir()
    shutil.copy(BOOKINFO / "destination-rule-all.yaml", istio)
    (istio / "reviews.yaml").write_text(reviews_to("v1"))
    compose = tmp_path / "compose.yaml"
    shutil.copy(BOOKINFO / "compose.yaml", compose)

    async def scenario() -> None:
        plane = ControlPlane(ControlPlaneSettings(istio, compose, tmp_path / "state", port=0))
        plane_server = ControlPlaneServer(plane)
        port = await plane_server.start()
        sidecars = []
        for workload, sa in (("productpage-v1", "bookinfo-productpage"), ("details-v1", "bookinfo-details")):
            token = plane.tokens.issue(ProxyIdentity(workload, "default", sa))  # rendered once, at `sandbox up`
            sink = Sidecar()
            sub = Subscription(
                f"http://127.0.0.1:{port}/v1/push", Hello(workload, ProxyIdentity(workload, "default", sa), token), sink
            )
            sub.start()
            sidecars.append((sub, sink))
        await until(lambda: all(s.snapshot and s.cert for _, s in sidecars))
        root = sidecars[0][1].cert.root_cert  # type: ignore[union-attr]
        serials = [s.cert.serial for _, s in sidecars]  # type: ignore[union-attr]
        await plane_server.stop()
        await until(lambda: not any(sub.connected for sub, _ in sidecars))

        (istio / "reviews.yaml").write_text(reviews_to("v3"))  # changed while it was down
        again = ControlPlane(ControlPlaneSettings(istio, compose, tmp_path / "state", port=port))
        again_server = ControlPlaneServer(again)
        await again_server.start()
        v3 = "outbound|9080|v3|reviews.default.svc.cluster.local"
        await until(lambda: all(s.reviews_cluster() == v3 for _, s in sidecars))
        await until(lambda: [p["state"] for p in again.push.sync_status()] == ["SYNCED", "SYNCED"])
        await until(lambda: [s.cert.serial for _, s in sidecars] != serials)  # type: ignore[union-attr]
        assert all(s.cert is not None and s.cert.root_cert == root for _, s in sidecars)  # new certs, same mesh CA
        assert again.push.stats.refused == 0  # the tokens from before the restart still verify
        for sub, _ in sidecars:
            await sub.stop()
        await again_server.stop()

    asyncio.run(asyncio.wait_for(scenario(), 90))


def test_the_command_says_why_it_cannot_start_without_a_traceback(tmp_path: Path) -> None:
    import socket
    import subprocess
    import sys

    (tmp_path / "istio").mkdir()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = [sys.executable, "-m", "sandbox", "controlplane", "--istio", str(tmp_path / "istio")]
        argv += ["--port", str(port), "--state-dir", str(tmp_path / "state")]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and f"error: cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr
    both = [*argv[:6], "--endpoints", "e.json", "--endpoint-port", "15006"]
    result = subprocess.run(both, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "--endpoints or --endpoint-port, not both" in result.stderr


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("[1]", "expected an object"),
        ('{"a": 3}', "a: expected a list of host:port"),
        ('{"a": ["h:1", "nope"]}', "a[1]: expected host:port, got 'nope'"),
        ('{"a": ["h:99999"]}', "a[0]: expected host:port"),
        ("{", "not JSON"),
    ],
)
def test_a_bad_endpoints_file_says_what_is_wrong(text: str, error: str) -> None:
    from sandbox.control.plane import parse_endpoints

    with pytest.raises(ValueError, match=re.escape(error)):
        parse_endpoints(text)


def test_endpoints_from_a_file_or_every_replica_at_its_node_name() -> None:
    from sandbox.control.plane import node_endpoints, parse_endpoints
    from sandbox.mesh.topology import parse_compose

    assert parse_endpoints('{"a": ["h:1", "h:2"], "b": "g:3"}') == {("a", 0): "h:1", ("a", 1): "h:2", ("b", 0): "g:3"}
    topology = parse_compose(
        "services:\n  web:\n    image: x\n    labels: {app: web, version: v1}\n    expose: ['9080']\n"
        "    x-sandbox: {replicas: 2}\n",
        "compose.yaml",
    )
    web = topology.workload("web")
    assert web is not None and web.replicas == 2
    resolve = node_endpoints(15006)
    assert [resolve(web, replica, 9080) for replica in (0, 1)] == ["web-1:15006", "web-2:15006"]
    legacy = parse_compose(
        "services:\n  legacy:\n    image: x\n    labels: {app: curl, version: v1}\n"
        "    x-sandbox: {port: 8080, inject: false}\n",
        "compose.yaml",
    ).workload("legacy")
    assert legacy is not None and resolve(legacy, 0, 8080) == "legacy:8080"  # no sidecar: the app itself


def test_a_policy_the_sidecars_do_not_enforce_is_logged_once_when_it_arrives(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    istio = tmp_path / "istio"
    istio.mkdir()
    compose = tmp_path / "compose.yaml"
    shutil.copy(BOOKINFO / "compose.yaml", compose)
    shutil.copy(BOOKINFO / "destination-rule-all.yaml", istio)
    (istio / "lua.yaml").write_text(
        "apiVersion: networking.istio.io/v1alpha3\nkind: EnvoyFilter\nmetadata: {name: lua}\n"
        "spec:\n  configPatches: [{applyTo: HTTP_FILTER}]\n"
    )

    async def scenario() -> None:
        plane = ControlPlane(ControlPlaneSettings(istio, compose, tmp_path / "state", port=0))
        plane.on_update(plane.watcher.initial())
        (istio / "other.yaml").write_text(reviews_to("v1"))  # another change: no second warning
        plane.on_update(plane.watcher.initial())
        assert "reviews" in {r.name for r in plane.store.state.virtual_services}

    with caplog.at_level(logging.WARNING, logger="sandbox.control.plane"):
        asyncio.run(scenario())
    warnings = [r.getMessage() for r in caplog.records if "SBX702" in r.getMessage()]
    assert len(warnings) == 1
    assert "lua.yaml:5" in warnings[0] and "not applied" in warnings[0]
