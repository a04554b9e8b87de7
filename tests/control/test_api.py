"""The control plane's read API (/api/v1) on 127.0.0.1: resources in force, file states, sync."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from factories import BOOKINFO, reviews_to

from sandbox.control.api import BadQuery, select_resources
from sandbox.control.plane import ControlPlane, ControlPlaneSettings
from sandbox.control.server import ControlPlaneServer
from sandbox.mesh.loader import load_text
from sandbox.proxy.subscription import Subscription
from sandbox.xds.identity import ProxyIdentity
from sandbox.xds.messages import Hello

STRICT_PA = """\
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: default}
spec:
  mtls: {mode: STRICT}
"""


class Sink:
    def on_snapshot(self, payload: dict[str, Any]) -> None:
        pass

    def on_certificate(self, bundle: object) -> None:
        pass


def test_select_resources_filters_by_kind_short_name_namespace_and_name() -> None:
    loaded = load_text(reviews_to("v1") + "---\n" + reviews_to("v2").replace("reviews\nspec", "r2\nspec"), "a.yaml")
    found = select_resources(loaded.resources, {"a.yaml": 12.5}, kind="vs")
    assert [(r["name"], r["file"], r["line"], r["applied"]) for r in found] == [
        ("r2", "a.yaml", 12, 12.5),  # the document starts at its `---`
        ("reviews", "a.yaml", 1, 12.5),
    ]
    assert found[1]["manifest"]["spec"]["http"][0]["route"][0]["destination"] == {"host": "reviews", "subset": "v1"}
    assert select_resources(loaded.resources, {}, kind="destinationrules") == []
    assert [r["name"] for r in select_resources(loaded.resources, {}, name="reviews", namespace="default")] == [
        "reviews"
    ]
    with pytest.raises(BadQuery, match="unknown kind 'nope'"):
        select_resources(loaded.resources, {}, kind="nope")


def test_the_api_serves_the_live_store_and_says_when_changes_are_pending(tmp_path: Path) -> None:
    istio = tmp_path / "istio"
    istio.mkdir()
    shutil.copy(BOOKINFO / "destination-rule-all.yaml", istio)
    (istio / "reviews.yaml").write_text(reviews_to("v1"))
    (istio / "broken.yaml").write_text("kind: VirtualService\nmetadata: {name: x}\nspec: {hosts: [\n")
    compose = tmp_path / "compose.yaml"
    shutil.copy(BOOKINFO / "compose.yaml", compose)

    async def scenario() -> None:
        # a second of debounce: a change stays pending long enough to be seen as pending
        settings = ControlPlaneSettings(
            istio, compose, tmp_path / "state", port=0, quiet=1.0, max_delay=2.0, settle=1.0
        )
        plane = ControlPlane(settings)
        plane_server = ControlPlaneServer(plane)
        port = await plane_server.start()
        base = f"http://127.0.0.1:{port}/api/v1"
        me = ProxyIdentity("productpage-v1", "default", "bookinfo-productpage")
        sub = Subscription(
            f"http://127.0.0.1:{port}/v1/push",
            Hello("pp", ProxyIdentity(me.workload, me.namespace, me.service_account), plane.tokens.issue(me)),
            Sink(),
        )
        sub.start()
        async with aiohttp.ClientSession() as http:

            async def get(path: str) -> tuple[int, Any]:
                async with http.get(base + path) as r:
                    return r.status, await r.json()

            status, body = await get("/resources?kind=vs")
            assert status == 200
            assert [(r["kind"], r["name"], r["file"]) for r in body["resources"]] == [
                ("VirtualService", "reviews", str(istio / "reviews.yaml"))
            ]
            _, body = await get("/resources?kind=dr&name=reviews")
            assert [r["manifest"]["metadata"]["name"] for r in body["resources"]] == ["reviews"]
            assert (await get("/resources?kind=bogus"))[0] == 400

            _, files = await get("/files")
            states = {
                Path(f["file"]).name: (f["state"], [(d["code"], d["line"]) for d in f["diagnostics"]])
                for f in files["files"]
            }
            assert states["reviews.yaml"] == ("ok", [])
            assert states["broken.yaml"][0] == "rejected" and states["broken.yaml"][1][0][0] == "SBX001"
            assert files["compose"]["state"] == "ok" and files["endpoints"] is None

            for _ in range(500):
                _, sync = await get("/sync")
                if sync["synced"]:
                    break
                await asyncio.sleep(0.01)
            assert sync["synced"] and sync["pending"] == [] and sync["rejected"] == [str(istio / "broken.yaml")]
            assert [(p["proxy"], p["state"]) for p in sync["proxies"]] == [("pp", "SYNCED")]

            (istio / "reviews.yaml").write_text(reviews_to("v2"))
            _, sync = await get("/sync")  # on disk, not applied yet
            assert not sync["synced"] and str(istio / "reviews.yaml") in sync["pending"]
            for _ in range(500):
                _, sync = await get("/sync")
                if sync["synced"]:
                    break
                await asyncio.sleep(0.01)
            assert sync["synced"]
            _, body = await get("/resources?kind=virtualservice")
            assert body["resources"][0]["manifest"]["spec"]["http"][0]["route"][0]["destination"]["subset"] == "v2"

            async def syncz() -> list[tuple[str, str, str]]:
                async with http.get(f"http://127.0.0.1:{port}/debug/syncz") as r:
                    return [(p["proxy"], p["mtls"], p["mtlsPolicy"]) for p in await r.json()]

            assert await syncz() == [("pp", "PERMISSIVE", "")]  # nothing set: Istio's default
            (istio / "pa.yaml").write_text(STRICT_PA)
            for _ in range(500):
                if (await syncz())[0][1] == "STRICT":
                    break
                await asyncio.sleep(0.01)
            assert await syncz() == [("pp", "STRICT", "PeerAuthentication/default/default")]
        await sub.stop()
        await plane_server.stop()

    asyncio.run(asyncio.wait_for(scenario(), 60))
