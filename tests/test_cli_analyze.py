"""`sandbox analyze` through typer's CliRunner: exit codes and output formats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sandbox.cli import app

COMPOSE = """\
services:
  reviews-v1:
    image: reviews
    labels: {app: reviews, version: v1}
    x-sandbox: {port: 9080}
"""
CLEAN = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets: [{name: v1, labels: {version: v1}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews, subset: v1}}]
"""
WARNING = CLEAN.replace("subset: v1}", "subset: v2}")  # KIA1107, a warning
ERROR = (
    CLEAN
    + """\
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews-again}
spec:
  host: reviews
  subsets: [{name: v1, labels: {version: v1}}, {name: v1, labels: {version: v1}}]
"""
)  # SBX130 (duplicate subset names) is an error


@pytest.fixture
def mesh(tmp_path: Path):
    (tmp_path / "compose.yaml").write_text(COMPOSE)
    (tmp_path / "istio").mkdir()

    def invoke(rules: str, *args: str) -> tuple[int, str]:
        (tmp_path / "istio" / "rules.yaml").write_text(rules)
        result = CliRunner().invoke(
            app, ["analyze", str(tmp_path / "istio"), "--compose", str(tmp_path / "compose.yaml"), *args]
        )
        return result.exit_code, result.output

    return invoke


def test_clean_rules_exit_0_with_no_output(mesh) -> None:
    assert mesh(CLEAN) == (0, "")


def test_warnings_exit_0_unless_strict(mesh) -> None:
    code, out = mesh(WARNING)
    assert code == 0 and "warning KIA1107 Subset not found" in out
    assert mesh(WARNING, "--strict")[0] == 1


def test_errors_exit_1(mesh) -> None:
    code, out = mesh(ERROR)
    assert code == 1
    assert "rules.yaml:21:49: error SBX130 duplicate subset names: v1" in out


def test_ignored_codes_do_not_count(mesh) -> None:
    code, out = mesh(ERROR, "--ignore", "sbx130", "--ignore", "KIA0201")
    assert (code, out) == (0, "")


@pytest.mark.parametrize(
    "args",
    [
        ["analyze", "--output", "xml"],
        ["analyze", "/no/such/dir"],
        ["analyze", ".", "--compose", "/no/such/compose.yaml"],
    ],
)
def test_unusable_arguments_exit_2(args: list[str]) -> None:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2


def test_json_output(mesh) -> None:
    code, out = mesh(WARNING, "-o", "json")
    assert code == 0
    (finding,) = json.loads(out)
    assert finding["code"] == "KIA1107" and finding["line"] == 14
    assert finding["resource"] == "VirtualService/default/reviews"


def test_sarif_output(mesh) -> None:
    code, out = mesh(ERROR, "--output", "sarif")
    assert code == 1
    sarif = json.loads(out)
    assert sarif["version"] == "2.1.0"
    results = sarif["runs"][0]["results"]
    assert {r["ruleId"] for r in results} == {"SBX130", "KIA0201"}
    assert all(r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"].endswith("rules.yaml") for r in results)


def test_text_output(mesh) -> None:
    code, out = mesh(WARNING, "--output", "text")
    assert code == 0
    (line,) = out.splitlines()
    assert line.endswith(
        "rules.yaml:14:14: warning KIA1107 Subset not found "
        "[VirtualService/default/reviews spec/http[0]/route[0]/destination]"
    )
