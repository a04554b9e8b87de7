"""A private working copy of a project: its own state, Istio directory and ingress port, the same
workloads run from the project's own files."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox.mesh.topology import load_compose
from sandbox.runtime.localplan import app_command
from sandbox.runtime.workcopy import CopyFailed, work_copy

COMPOSE = """\
# the project's own comment
x-sandbox: {trustDomain: example.org}
x-app: &app
  image: python:3.12-slim
services:
  web:
    <<: *app
    labels: {app: web, version: v1}
    volumes: ["./apps:/app:ro"]
    x-sandbox:
      port: 8000
      local: {command: [python3, apps/web.py, --verbose, missing.py], env: {MODE: demo}}
  api-v1:
    labels: {app: api, version: v1}
    x-sandbox:
      port: 9000
      local: {command: [./api.sh], cwd: apps}
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    source = tmp_path / "project"
    (source / "apps").mkdir(parents=True)
    (source / "apps" / "web.py").write_text("")
    (source / "api.sh").write_text("")
    (source / "istio").mkdir()
    (source / "istio" / "vs.yaml").write_text("# rules\n")
    (source / ".sandbox").mkdir()
    (source / ".sandbox" / "mesh.json").write_text("{}")
    (source / "compose.yaml").write_text(COMPOSE)
    return source


def test_a_local_copy_runs_the_projects_files_with_its_own_port_and_rules(project: Path, tmp_path: Path) -> None:
    copy = work_copy(project / "compose.yaml", project / "istio", tmp_path / "copy", "local", 18123)
    assert copy.compose_file == tmp_path / "copy" / "compose.yaml"
    assert copy.istio_dir == tmp_path / "copy" / "istio"
    assert (copy.istio_dir / "vs.yaml").read_text() == "# rules\n"
    assert not (tmp_path / "copy" / "apps").exists()  # the apps run from the project
    topology = load_compose(copy.compose_file)
    assert topology.diagnostics == ()
    assert topology.settings.ingress_port == 18123
    assert topology.settings.trust_domain == "example.org"  # other mesh settings kept
    web, api = topology.workload("web"), topology.workload("api-v1")
    assert web is not None and web.local is not None and api is not None and api.local is not None
    # what the local runtime would run from the project, it runs from the copy
    assert app_command(web.local.command, copy.compose_file.parent, "/py") == (
        "/py",
        str(project / "apps" / "web.py"),
        "--verbose",
        "missing.py",
    )
    assert web.local.cwd == str(project) and web.local.env == {"MODE": "demo"}
    assert api.local.command == (str(project / "api.sh"),) and api.local.cwd == str(project / "apps")
    assert (project / "compose.yaml").read_text() == COMPOSE  # the project is untouched


def test_a_compose_copy_carries_the_directory_containers_mount(project: Path, tmp_path: Path) -> None:
    copy = work_copy(project / "compose.yaml", project / "istio", tmp_path / "copy", "compose", 18124)
    assert (tmp_path / "copy" / "apps" / "web.py").is_file() and (tmp_path / "copy" / "api.sh").is_file()
    assert not (tmp_path / "copy" / ".sandbox").exists()  # never the project's state
    topology = load_compose(copy.compose_file)
    assert topology.settings.ingress_port == 18124
    web = topology.workload("web")
    assert web is not None and web.local is not None and web.local.command[1] == "apps/web.py"  # as written


def test_an_istio_directory_elsewhere_is_copied_and_a_missing_one_is_empty(project: Path, tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "dr.yaml").write_text("# dr\n")
    copy = work_copy(project / "compose.yaml", rules, tmp_path / "one", "local", 18125)
    assert sorted(p.name for p in copy.istio_dir.iterdir()) == ["dr.yaml"]
    copy = work_copy(project / "compose.yaml", tmp_path / "none", tmp_path / "two", "local", 18126)
    assert copy.istio_dir.is_dir() and list(copy.istio_dir.iterdir()) == []


def test_an_unreadable_compose_file_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(CopyFailed, match=r"cannot read .*nope\.yaml"):
        work_copy(tmp_path / "nope.yaml", tmp_path, tmp_path / "copy", "local", 18127)
