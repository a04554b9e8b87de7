"""The console's writes against a real control plane (in this process, no sidecars): Kiali's config
API and the wizards change the Istio directory through `sandbox apply`'s planner, keep what the
user wrote around the edited document, refuse what brings an error with its line (writing
nothing), and refuse every write without the token or from another Origin."""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from sandbox.console.app import Console, ConsoleSettings
from sandbox.control.plane import ControlPlane, ControlPlaneSettings
from sandbox.control.server import ControlPlaneServer
from sandbox.runtime.project import find_project
from tests.factories import BOOKINFO, reviews_to

TOKEN = "t" * 32
GATEWAY_FILE = """# the way in (a comment the console must keep)
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: bookinfo-gateway
spec:
  selector:
    istio: ingressgateway
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*"]
---
# productpage's route (this comment is inside its document)
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: bookinfo
spec:
  hosts: ["*"]
  gateways: [bookinfo-gateway]
  http:
  - route:
    - destination:
        host: productpage
---
# and one more after it
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: productpage
spec:
  host: productpage
"""
Call = Callable[..., Awaitable[tuple[int, Any]]]


@dataclass
class Env:
    istio: Path
    call: Call
    base: str

    def digest(self) -> str:
        """Every file of the Istio directory, names and bytes: what "nothing was written" means."""
        h = hashlib.sha256()
        for path in sorted(self.istio.rglob("*")):
            h.update(str(path).encode() + (path.read_bytes() if path.is_file() else b""))
        return h.hexdigest()


@asynccontextmanager
async def console(tmp_path: Path) -> AsyncIterator[Env]:
    istio = tmp_path / "istio"
    istio.mkdir()
    (istio / "bookinfo.yaml").write_text(GATEWAY_FILE)
    compose = tmp_path / "compose.yaml"
    shutil.copy(BOOKINFO / "compose.yaml", compose)
    plane = ControlPlaneServer(ControlPlane(ControlPlaneSettings(istio, compose, tmp_path / "state", port=0)))
    cp_port = await plane.start()
    settings = ConsoleSettings(
        port=0, project=find_project(compose), control_plane=f"http://127.0.0.1:{cp_port}", token=TOKEN
    )
    c = Console(settings)
    port = await c.start()
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:

            async def call(
                method: str, path: str, body: Any = None, token: str | None = TOKEN, **headers: str
            ) -> tuple[int, Any]:
                if token:
                    headers["Authorization"] = f"Bearer {token}"
                data: bytes | None = None
                if isinstance(body, str):
                    data, headers["Content-Type"] = body.encode(), "application/yaml"
                elif body is not None:
                    data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
                async with http.request(method, base + path, data=data, headers=headers) as resp:
                    text = await resp.text()
                    return resp.status, json.loads(text) if text.startswith(("{", "[")) else text

            yield Env(istio, call, base)
    finally:
        await c.stop()
        await plane.stop()


def scenario(tmp_path: Path, body: Callable[[Env], Awaitable[None]]) -> None:
    async def run() -> None:
        async with console(tmp_path) as env:
            await body(env)

    asyncio.run(run())


async def in_force(env: Env, kind: str, name: str, present: bool = True) -> dict[str, Any]:
    """The object as the console reads it from the control plane, once the watcher applied the change."""
    for _ in range(100):
        status, body = await env.call("GET", f"/api/namespaces/default/istio/{kind}/{name}")
        if (status == 200) == present:
            return body if present else {}
        await asyncio.sleep(0.05)
    raise AssertionError(f"{kind}/{name} {'never came' if present else 'never went'}")


SUBSETS = {
    "apiVersion": "networking.istio.io/v1",
    "kind": "DestinationRule",
    "metadata": {"name": "reviews"},
    "spec": {"host": "reviews", "subsets": [{"name": v, "labels": {"version": v}} for v in ("v1", "v2", "v3")]},
}


def test_create_replace_patch_and_delete_change_the_files(tmp_path: Path) -> None:
    async def body(env: Env) -> None:
        status, created = await env.call("POST", "/api/namespaces/default/istio/destinationrules", SUBSETS)
        assert status == 201, created
        assert created["changes"] == [
            {"kind": "DestinationRule", "namespace": "default", "name": "reviews", "action": "created",
             "file": str(env.istio / "destinationrule-default-reviews.yaml")},
        ]  # fmt: skip
        assert (await env.call("POST", "/api/namespaces/default/istio/virtualservices", reviews_to("v1")))[0] == 201
        assert (await in_force(env, "virtualservices", "reviews"))["resource"]["spec"]["http"][0]["route"][0][
            "destination"
        ]["subset"] == "v1"

        # creating it again is a conflict that says what to do instead
        status, again = await env.call("POST", "/api/namespaces/default/istio/destinationrules", SUBSETS)
        assert status == 409 and "already exists" in again["error"] and "PUT or PATCH" in again["error"]

        # a JSON merge patch (Kiali's editor) changes one field
        patch = {"spec": {"http": [{"route": [{"destination": {"host": "reviews", "subset": "v3"}}]}]}}
        status, patched = await env.call("PATCH", "/api/namespaces/default/istio/virtualservices/reviews", patch)
        assert status == 200 and patched["changes"][0]["action"] == "configured", patched
        vs_file = env.istio / "virtualservice-default-reviews.yaml"
        assert "subset: v3" in vs_file.read_text()
        await asyncio.sleep(0)  # the watcher reads it
        for _ in range(100):
            obj = await in_force(env, "virtualservices", "reviews")
            if obj["resource"]["spec"]["http"][0]["route"][0]["destination"]["subset"] == "v3":
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the patch never came into force")

        # delete: the route first (deleting the subsets it uses would be refused)
        status, refused = await env.call("DELETE", "/api/namespaces/default/istio/destinationrules/reviews")
        assert status == 422 and refused["refused"][0]["code"] == "KIA1107", refused
        assert (env.istio / "destinationrule-default-reviews.yaml").exists()
        assert (await env.call("DELETE", "/api/namespaces/default/istio/virtualservices/reviews"))[0] == 200
        assert (await env.call("DELETE", "/api/namespaces/default/istio/destinationrules/reviews"))[0] == 200
        assert not vs_file.exists() and not (env.istio / "destinationrule-default-reviews.yaml").exists()
        await in_force(env, "virtualservices", "reviews", present=False)
        status, missing = await env.call("DELETE", "/api/namespaces/default/istio/virtualservices/reviews")
        assert status == 404 and "no VirtualService 'reviews'" in missing["error"]

    scenario(tmp_path, body)


def test_the_editor_shows_the_document_as_written_and_saving_keeps_the_rest_of_the_file(tmp_path: Path) -> None:
    async def body(env: Env) -> None:
        obj = await in_force(env, "virtualservices", "bookinfo")
        assert obj["asWritten"] and obj["yaml"].startswith(
            "# productpage's route (this comment is inside its document)"
        )
        edited = obj["yaml"].replace("host: productpage", "host: productpage\n      weight: 100")
        status, saved = await env.call("PUT", "/api/namespaces/default/istio/virtualservices/bookinfo", edited)
        assert status == 200 and saved["changes"][0]["action"] == "configured", saved
        text = (env.istio / "bookinfo.yaml").read_text()
        assert text == GATEWAY_FILE.replace(
            "        host: productpage\n---", "        host: productpage\n      weight: 100\n---"
        )

        # a route to a subset no DestinationRule defines: KIA1107 at its line, nothing written
        before = env.digest()
        broken = edited.replace("host: productpage", "host: productpage\n        subset: v4")
        for dry in ("?dryRun=All", ""):
            status, answer = await env.call(
                "PUT", "/api/namespaces/default/istio/virtualservices/bookinfo" + dry, broken
            )
            line = broken.splitlines().index("    - destination:") + 1
            assert status == 422 and [(c["code"], c["line"]) for c in answer["refused"]] == [("KIA1107", line)]
            assert answer["checks"][0]["line"] == line and answer["written"] is False
        assert env.digest() == before

        # YAML that does not parse: its line, nothing written
        status, answer = await env.call("PUT", "/api/namespaces/default/istio/virtualservices/bookinfo", "spec: [\n")
        assert status == 422 and answer["checks"] and "not valid YAML" in answer["error"]
        assert env.digest() == before

    scenario(tmp_path, body)


def test_without_the_token_or_from_another_origin_nothing_changes(tmp_path: Path) -> None:
    async def body(env: Env) -> None:
        before = env.digest()
        attempts = [
            ("POST", "/api/namespaces/default/istio/destinationrules", SUBSETS),
            ("PUT", "/api/namespaces/default/istio/virtualservices/bookinfo", reviews_to("v1")),
            ("PATCH", "/api/namespaces/default/istio/virtualservices/bookinfo", {"spec": {"hosts": ["x"]}}),
            ("DELETE", "/api/namespaces/default/istio/virtualservices/bookinfo", None),
            ("POST", "/api/namespaces/default/services/reviews/wizard", {"type": "traffic_shifting"}),
            ("DELETE", "/api/namespaces/default/services/reviews/wizard", None),
        ]
        for method, path, sent in attempts:
            status, answer = await env.call(method, path, sent, token=None)
            assert status == 403 and "needs the console's token" in answer["error"], (method, path)
            assert "sandbox dashboard" in answer["error"]
            status, answer = await env.call(method, path, sent, token="x" * 32)
            assert status == 403, (method, path)
            status, answer = await env.call(method, path, sent, Origin="http://evil.example")
            assert status == 403 and "must come from the console's own pages" in answer["error"]
        # the console's own Origin, with the token: allowed (a dry run changes nothing either)
        status, _ = await env.call(
            "POST", "/api/namespaces/default/istio/destinationrules?dryRun=All", SUBSETS, Origin=env.base
        )
        assert status == 200
        assert env.digest() == before

    scenario(tmp_path, body)


def test_a_page_opened_with_the_token_gets_it_as_a_cookie_that_writes(tmp_path: Path) -> None:
    async def body(env: Env) -> None:
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(cookie_jar=jar) as browser:
            async with browser.get(
                f"{env.base}/console/istio?token={TOKEN}&namespaces=default", allow_redirects=False
            ) as r:
                assert r.status == 303 and r.headers["Location"] == "/console/istio?namespaces=default"
                cookie = r.cookies[f"sandbox_console_{env.base.rsplit(':', 1)[1]}"]
                assert cookie["httponly"] and cookie["samesite"] == "Strict"
            async with browser.get(f"{env.base}/console/istio?namespaces=default") as r:
                assert 'id="access"' in await r.text() and "can edit" in await r.text()
            headers = {"Origin": env.base, "Content-Type": "application/json"}
            url = f"{env.base}/api/namespaces/default/istio/destinationrules?dryRun=All"
            async with browser.post(url, data=json.dumps(SUBSETS), headers=headers) as r:
                assert r.status == 200
            async with browser.get(f"{env.base}/console/overview?token={'y' * 32}") as r:
                assert r.status == 403 and "sandbox dashboard" in await r.text()
        async with aiohttp.ClientSession() as stranger, stranger.get(f"{env.base}/console/istio") as r:
            assert r.status == 200 and "read-only" in await r.text()  # reading needs nothing

    scenario(tmp_path, body)


def test_the_traffic_shifting_wizard_creates_and_deletes_routing_in_one_change(tmp_path: Path) -> None:
    async def body(env: Env) -> None:
        status, view = await env.call("GET", "/api/namespaces/default/services/reviews/wizard")
        assert status == 200 and all(w["enabled"] for w in view["wizards"]) and not view["hasTrafficRouting"]
        state = {"type": "traffic_shifting", "workloads": [{"name": w["name"], "weight": 0} for w in view["workloads"]]}
        state["workloads"][-1]["weight"] = 100
        status, preview = await env.call("POST", "/api/namespaces/default/services/reviews/wizard?dryRun=All", state)
        assert status == 200 and not preview["written"] and "kiali_wizard: traffic_shifting" in preview["yaml"]
        assert not (env.istio / "virtualservice-default-reviews.yaml").exists()
        status, made = await env.call("POST", "/api/namespaces/default/services/reviews/wizard", state)
        assert status == 200 and made["written"], made
        assert [c["action"] for c in made["changes"]] == ["created", "created"]
        obj = await in_force(env, "virtualservices", "reviews")
        assert obj["resource"]["metadata"]["labels"] == {"kiali_wizard": "traffic_shifting"}

        # now only that wizard opens on reviews, with its weights
        _, view = await env.call("GET", "/api/namespaces/default/services/reviews/wizard")
        assert [w["type"] for w in view["wizards"] if w["enabled"]] == ["traffic_shifting"]
        assert [w["weight"] for w in view["state"]["workloads"]] == [0, 0, 100]
        status, refused = await env.call(
            "POST", "/api/namespaces/default/services/reviews/wizard", {**state, "type": "fault_injection"}
        )
        assert status == 409 and "edit its VirtualService and DestinationRule as YAML" in refused["error"]
        status, bad = await env.call(
            "POST", "/api/namespaces/default/services/reviews/wizard", {**state, "workloads": state["workloads"][:1]}
        )
        assert status == 400 and "sum of all non-mirrored weights must be 100" in bad["error"]

        status, deleted = await env.call("DELETE", "/api/namespaces/default/services/reviews/wizard")
        assert status == 200 and [c["kind"] for c in deleted["changes"]] == ["VirtualService", "DestinationRule"]
        assert not (env.istio / "virtualservice-default-reviews.yaml").exists()

    scenario(tmp_path, body)


@pytest.mark.parametrize("path", ["/console/istio", "/console/security", "/console/istio/new?kind=dr"])
def test_the_new_pages_render(tmp_path: Path, path: str) -> None:
    async def body(env: Env) -> None:
        status, html = await env.call("GET", path)
        assert status == 200 and "<html" in html

    scenario(tmp_path, body)
