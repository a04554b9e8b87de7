"""The config API of the console `sandbox up` started, against the running Bookinfo: create, patch and
delete change the files and the running mesh (productpage's stars follow), a route to a subset that
does not exist is refused with KIA1107 at its line and nothing is written, and a request without
the token or from another Origin gets 403 and changes nothing. Each test puts the rules back."""

from __future__ import annotations

import hashlib
import json
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.console.conftest import Bookinfo
from tests.e2e.mesh_support import Browser, poll, reviews_shown
from tests.factories import reviews_to

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

SUBSETS = {
    "apiVersion": "networking.istio.io/v1",
    "kind": "DestinationRule",
    "metadata": {"name": "reviews"},
    "spec": {"host": "reviews", "subsets": [{"name": v, "labels": {"version": v}} for v in ("v1", "v2", "v3")]},
}


def call(
    bookinfo: Bookinfo, method: str, path: str, body: Any = None, token: str | None = "", **headers: str
) -> tuple[int, Any]:
    """The console's API over HTTP, with the mesh's token unless told otherwise."""
    token = bookinfo.token if token == "" else token
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None
    if isinstance(body, str):
        data, headers["Content-Type"] = body.encode(), "application/yaml"
    elif body is not None:
        data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
    request = urllib.request.Request(bookinfo.console + path, data=data, method=method, headers=headers)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def synced(bookinfo: Bookinfo) -> dict[str, Any]:
    """The console's `wait --synced` view, polled until every sidecar ACKed what is on disk."""

    def check() -> dict[str, Any] | None:
        status, state = call(bookinfo, "GET", "/api/mesh/sync")
        assert status == 200, state
        return state if state["synced"] else None

    return poll(check, 30, "every sidecar to ACK the change")


def stars(bookinfo: Bookinfo, pages: int = 10) -> Counter[str]:
    browser = Browser(bookinfo.mesh.ingress)
    seen: Counter[str] = Counter()
    for _ in range(pages):
        status, html, _ = browser.get()
        assert status == 200
        seen[reviews_shown(html)] += 1
    return seen


def digest(directory: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(directory.rglob("*")):
        h.update(str(path).encode() + (path.read_bytes() if path.is_file() else b""))
    return h.hexdigest()


def test_create_patch_and_delete_change_the_files_and_the_running_mesh(bookinfo: Bookinfo) -> None:
    istio = bookinfo.mesh.istio
    with bookinfo.rules_restored():
        status, answer = call(bookinfo, "POST", "/api/namespaces/default/istio/destinationrules", SUBSETS)
        assert status == 201, answer
        status, answer = call(bookinfo, "POST", "/api/namespaces/default/istio/virtualservices", reviews_to("v3"))
        assert status == 201 and answer["changes"][0]["file"] == str(istio / "virtualservice-default-reviews.yaml")
        state = synced(bookinfo)
        assert state["acked"] == state["expected"] == 8  # six Bookinfo sidecars and the two gateways
        assert stars(bookinfo) == {"red": 10}  # reviews v3

        patch = {"spec": {"http": [{"route": [{"destination": {"host": "reviews", "subset": "v2"}}]}]}}
        status, answer = call(bookinfo, "PATCH", "/api/namespaces/default/istio/virtualservices/reviews", patch)
        assert status == 200 and answer["changes"][0]["action"] == "configured", answer
        assert "subset: v2" in (istio / "virtualservice-default-reviews.yaml").read_text()
        synced(bookinfo)
        assert stars(bookinfo) == {"black": 10}  # reviews v2

        assert call(bookinfo, "DELETE", "/api/namespaces/default/istio/virtualservices/reviews")[0] == 200
        assert call(bookinfo, "DELETE", "/api/namespaces/default/istio/destinationrules/reviews")[0] == 200
        assert sorted(p.name for p in istio.iterdir()) == ["bookinfo-gateway.yaml"]
        synced(bookinfo)
        assert len(stars(bookinfo, 15)) >= 2  # every version again (v1 shows none, v2 black, v3 red)


def test_a_subset_that_does_not_exist_is_refused_with_kia1107_at_its_line(bookinfo: Bookinfo) -> None:
    before = digest(bookinfo.mesh.istio)
    generation = synced(bookinfo)["generation"]
    sent = reviews_to("v4")
    status, answer = call(bookinfo, "POST", "/api/namespaces/default/istio/virtualservices", sent)
    line = sent.splitlines().index("    - destination:") + 1
    assert status == 422 and answer["written"] is False
    assert [(c["code"], c["line"], c["path"]) for c in answer["refused"]] == [
        ("KIA1107", line, "spec/http[0]/route[0]/destination")
    ]
    assert f"KIA1107 at line {line}" in answer["error"] and "Nothing was written" in answer["error"]
    time.sleep(0.5)  # the watcher would have seen a write by now
    assert digest(bookinfo.mesh.istio) == before
    assert synced(bookinfo)["generation"] == generation  # the control plane loaded nothing new


def test_without_the_token_or_from_another_origin_it_is_403_and_nothing_changes(bookinfo: Bookinfo) -> None:
    before = digest(bookinfo.mesh.istio)
    generation = synced(bookinfo)["generation"]
    for token, headers in (
        (None, {}),
        ("not-the-token-" * 3, {}),
        ("", {"Origin": "http://attacker.example"}),
        (None, {"Origin": bookinfo.console}),
    ):
        status, answer = call(
            bookinfo, "POST", "/api/namespaces/default/istio/destinationrules", SUBSETS, token, **headers
        )
        assert status == 403, (token, headers, answer)
        status, answer = call(
            bookinfo, "DELETE", "/api/namespaces/default/istio/virtualservices/bookinfo", None, token, **headers
        )
        assert status == 403, (token, headers, answer)
    assert (
        "sandbox dashboard"
        in call(bookinfo, "DELETE", "/api/namespaces/default/istio/gateways/x", None, None)[1]["error"]
    )
    time.sleep(0.5)
    assert digest(bookinfo.mesh.istio) == before
    assert synced(bookinfo)["generation"] == generation
