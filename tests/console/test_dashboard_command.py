"""`sandbox dashboard`: the running mesh's console, Prometheus or tracing URL, printed and opened in
the browser Python picks ($BROWSER here: a script that writes down what it was asked to open)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sandbox.cli import app
from sandbox.runtime.project import MeshRecord, find_project, write_record

URLS = {"ingress": "http://127.0.0.1:8080", "console": "http://127.0.0.1:20001", "prometheus": None, "tracing": None}


def mesh(tmp_path: Path) -> Path:
    compose = tmp_path / "compose.yaml"
    compose.write_text("services: {}\n")
    project = find_project(compose)
    write_record(project, MeshRecord("local", "shop", str(compose), str(project.istio_dir), "http://127.0.0.1:9", URLS))
    return compose


def test_it_opens_the_consoles_overview_in_the_browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    opened = tmp_path / "opened.txt"
    browser = tmp_path / "browser"
    browser.write_text(f'#!/bin/sh\necho "$1" >> {opened}\n')
    browser.chmod(browser.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("BROWSER", str(browser))
    result = CliRunner().invoke(app, ["dashboard", "-f", str(mesh(tmp_path))])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "http://127.0.0.1:20001/console/overview"
    assert opened.read_text().split() == ["http://127.0.0.1:20001/console/overview"]


def test_no_open_prints_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROWSER", "/bin/false")
    result = CliRunner().invoke(app, ["dashboard", "kiali", "--no-open", "-f", str(mesh(tmp_path))])
    assert result.exit_code == 0 and result.output.strip() == "http://127.0.0.1:20001/console/overview"


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["prometheus", "--no-open"], 1, "this mesh has no prometheus URL: Prometheus is not installed"),
        (["grafana"], 2, "the dashboard must be one of console, prometheus, tracing, not 'grafana'"),
    ],
)
def test_what_cannot_be_opened_is_named(tmp_path: Path, args: list[str], code: int, message: str) -> None:
    result = CliRunner().invoke(app, ["dashboard", *args, "-f", str(mesh(tmp_path))])
    assert result.exit_code == code and message in result.output


def test_without_a_running_mesh(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text("services: {}\n")
    result = CliRunner().invoke(app, ["dashboard", "--no-open", "-f", str(tmp_path / "compose.yaml")])
    assert result.exit_code == 1 and "no mesh is running" in result.output


def test_the_console_url_carries_the_meshs_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sandbox.runtime import consoletoken

    compose = mesh(tmp_path)
    token = consoletoken.ensure(find_project(compose))
    monkeypatch.setenv("BROWSER", "/bin/false")
    result = CliRunner().invoke(app, ["dashboard", "--no-open", "-f", str(compose)])
    assert result.exit_code == 0 and result.output.strip() == f"http://127.0.0.1:20001/console/overview?token={token}"
    status = CliRunner().invoke(app, ["status", "-o", "json", "-f", str(compose)])
    assert json.loads(status.output)["urls"]["console"] == f"http://127.0.0.1:20001/console/overview?token={token}"
