"""`sandbox init`: the scaffolded project analyzes clean and its apps answer over HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from sandbox.cli import app
from sandbox.mesh.loader import load_paths
from sandbox.mesh.topology import load_compose

runner = CliRunner()


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    result = runner.invoke(app, ["init", str(tmp_path / "demo")])
    assert result.exit_code == 0, result.output
    return tmp_path / "demo"


def test_init_then_analyze_is_clean(demo: Path) -> None:
    assert sorted(p.relative_to(demo).as_posix() for p in demo.rglob("*") if p.is_file()) == [
        "README.md",
        "apps/app.py",
        "compose.yaml",
        "istio/destination-rule.yaml",
        "istio/gateway.yaml",
        "istio/virtual-service.yaml",
    ]
    result = runner.invoke(app, ["analyze", str(demo / "istio"), "--compose", str(demo / "compose.yaml"), "--strict"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == ""  # not even a warning


def test_init_prints_what_it_made_and_the_next_command(demo: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["init", str(tmp_path / "other")])
    assert f"created {tmp_path / 'other' / 'compose.yaml'}" in result.output
    assert (
        f"sandbox analyze {tmp_path / 'other' / 'istio'} --compose {tmp_path / 'other' / 'compose.yaml'}"
        in result.output
    )


def test_the_project_is_two_services_and_three_workloads(demo: Path) -> None:
    topology = load_compose(demo / "compose.yaml")
    assert topology.diagnostics == ()
    assert [(s.name, s.port, s.workloads) for s in topology.services] == [
        ("api", 9080, ("api-v1", "api-v2")),
        ("web", 8000, ("web",)),
    ]
    for workload in topology.workloads:
        if workload.builtin:
            continue
        assert workload.labels == {"app": workload.app, "version": workload.version}
        assert workload.service_account == workload.app
        assert workload.image == "python:3.12-slim"
        assert workload.local is not None and workload.local.command == ("python3", "apps/app.py")
        assert (demo / workload.local.command[1]).is_file()
        assert workload.local.env["SERVICE"] == workload.app and workload.local.env["VERSION"] == workload.version
    web = topology.workload("web")
    assert web is not None and web.local is not None and web.local.env["UPSTREAM"] == "http://api:9080/"
    assert topology.settings.ingress_port == 8080


def test_the_rules_split_api_90_10_over_subsets_v1_and_v2(demo: Path) -> None:
    loaded = load_paths([demo / "istio"])
    assert loaded.diagnostics == ()
    by_ref = {r.ref: r for r in loaded.resources}
    dr = by_ref["DestinationRule/default/api"]
    assert [(s.name, s.labels) for s in dr.spec.subsets] == [("v1", {"version": "v1"}), ("v2", {"version": "v2"})]
    route = by_ref["VirtualService/default/api"].spec.http[0].route
    assert [(d.destination.subset, d.weight) for d in route] == [("v1", 90), ("v2", 10)]
    assert {"Gateway/default/ingress", "VirtualService/default/web"} <= by_ref.keys()


def test_init_refuses_a_non_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    result = runner.invoke(app, ["init", str(tmp_path)])
    assert result.exit_code == 2
    assert f"error: {tmp_path} is not empty; use --force" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_init_force_writes_the_project_and_keeps_other_files(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "compose.yaml").write_text("services: {}\n")
    result = runner.invoke(app, ["init", str(tmp_path), "--force"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert "api-v2" in (tmp_path / "compose.yaml").read_text()


def test_init_into_an_empty_directory_and_not_into_a_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert runner.invoke(app, ["init", str(empty)]).exit_code == 0
    file = tmp_path / "file"
    file.write_text("x")
    result = runner.invoke(app, ["init", str(file)])
    assert result.exit_code == 2
    assert "exists and is not a directory" in result.output


# --- the apps -------------------------------------------------------------------------------


@contextmanager
def running(demo: Path, **env: str) -> Iterator[str]:
    """Start apps/app.py on a free loopback port; yields its base URL once it answers /healthz."""
    clean = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy", "no_proxy")}
    process = subprocess.Popen(
        [sys.executable, "apps/app.py"],
        cwd=demo,
        env={**clean, "PORT": "0", "HOST": "127.0.0.1", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # "api v1 listening on http://127.0.0.1:PORT"
        assert "listening on http://127.0.0.1:" in line, line
        url = line.rsplit(" ", 1)[-1].strip()
        deadline = time.monotonic() + 10
        while True:  # wait on health, not on a sleep
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=1) as response:
                    assert response.read() == b"ok\n"
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout:
            process.stdout.close()


def get(url: str) -> tuple[int, Any]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # the test itself never proxies
    try:
        with opener.open(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_the_backend_app_answers_with_its_version(demo: Path) -> None:
    with running(demo, SERVICE="api", VERSION="v2") as url:
        assert get(url + "/") == (200, {"service": "api", "version": "v2", "path": "/"})


def test_the_frontend_calls_the_backend_through_http_proxy(demo: Path) -> None:
    # HTTP_PROXY points at the backend itself: a request that went through the proxy arrives in
    # absolute form, so the backend sees the full URL as its path
    with (
        running(demo, SERVICE="api", VERSION="v1") as api,
        running(demo, SERVICE="web", VERSION="v1", UPSTREAM="http://api:9080/", HTTP_PROXY=api) as web,
    ):
        status, body = get(web + "/")
    assert status == 200
    assert body == {
        "service": "web",
        "version": "v1",
        "path": "/",
        "upstream": {"service": "api", "version": "v1", "path": "http://api:9080/"},
        "upstream_status": 200,
    }


def test_the_frontend_reports_an_unreachable_backend_as_502(demo: Path) -> None:
    with running(demo, SERVICE="web", VERSION="v1", UPSTREAM="http://127.0.0.1:9/") as web:
        status, body = get(web + "/")
    assert status == 502
    assert body["upstream_status"] == 502 and "error" in body["upstream"]
