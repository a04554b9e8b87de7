"""The console's access token (runtime/consoletoken.py): made once per mesh, owner-only beside the
mesh secret, and the URL a person opens with it."""

from __future__ import annotations

import stat
from pathlib import Path

from sandbox.runtime import consoletoken
from sandbox.runtime.project import find_project


def test_the_token_is_made_once_and_owner_only(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text("services: {}\n")
    project = find_project(tmp_path / "compose.yaml")
    assert consoletoken.read(project) is None
    token = consoletoken.ensure(project)
    assert len(token) >= 32 and consoletoken.ensure(project) == token == consoletoken.read(project)
    assert stat.S_IMODE(consoletoken.token_path(project).stat().st_mode) == 0o600
    assert stat.S_IMODE(project.ca_dir.stat().st_mode) == 0o700


def test_the_url_a_person_opens() -> None:
    assert consoletoken.console_url("http://127.0.0.1:20001/", "a-b_c") == (
        "http://127.0.0.1:20001/console/overview?token=a-b_c"
    )
    assert consoletoken.console_url("http://127.0.0.1:20001", None) == "http://127.0.0.1:20001/console/overview"
    assert consoletoken.console_url(None, "abc") is None
