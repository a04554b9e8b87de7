from __future__ import annotations

import json

import pytest

from sandbox.mesh.diagnostics import Diagnostic, Severity
from sandbox.output import FORMATS, render

FINDINGS = [
    Diagnostic(
        "KIA0203",
        Severity.ERROR,
        "This subset's labels are not found in any matching host",
        "istio/reviews.yaml",
        11,
        5,
        "spec/subsets[1]",
        "DestinationRule/default/reviews",
    ),
    Diagnostic(
        "KIA1107", Severity.WARNING, "Subset not found", "istio/vs.yaml", 24, 7, "spec/http[0]/route[0]/destination"
    ),
    Diagnostic("KIA1108", Severity.INFO, "Preferred nomenclature", "istio/vs.yaml", 9, 5, "spec/gateways[0]"),
    Diagnostic("SBX000", Severity.ERROR, "cannot read: Permission denied", "my dir/x.yaml"),
]


def test_text_is_one_compiler_style_line_per_finding() -> None:
    lines = render(FINDINGS, "text").splitlines()
    assert lines[0] == (
        "istio/reviews.yaml:11:5: error KIA0203 This subset's labels are not found in any matching host "
        "[DestinationRule/default/reviews spec/subsets[1]]"
    )
    assert lines[3] == "my dir/x.yaml:0:0: error SBX000 cannot read: Permission denied"


def test_json_objects_have_a_stable_key_order() -> None:
    data = json.loads(render(FINDINGS, "json"))
    assert list(data[0]) == ["code", "severity", "message", "file", "line", "column", "path", "resource"]
    assert data[0] == {
        "code": "KIA0203",
        "severity": "error",
        "message": "This subset's labels are not found in any matching host",
        "file": "istio/reviews.yaml",
        "line": 11,
        "column": 5,
        "path": "spec/subsets[1]",
        "resource": "DestinationRule/default/reviews",
    }
    assert render([], "json") == "[]"


def test_sarif_is_valid_2_1_0() -> None:
    sarif = json.loads(render(FINDINGS, "sarif"))
    assert sarif["version"] == "2.1.0"
    assert sarif["$schema"].endswith("sarif-2.1.0.json")
    (run,) = sarif["runs"]
    driver = run["tool"]["driver"]
    assert driver["name"] == "sandbox" and driver["version"]
    rules = driver["rules"]
    assert [r["id"] for r in rules] == ["KIA0203", "KIA1107", "KIA1108", "SBX000"]
    assert rules[0]["shortDescription"]["text"] == "This subset's labels are not found in any matching host"
    assert rules[1]["defaultConfiguration"]["level"] == "warning"
    for result in run["results"]:
        assert set(result) >= {"ruleId", "level", "message", "locations"}
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
        assert result["level"] in ("error", "warning", "note", "none")
        assert result["message"]["text"]
        (location,) = result["locations"]
        assert location["physicalLocation"]["artifactLocation"]["uri"]
    levels = [r["level"] for r in run["results"]]
    assert levels == ["error", "warning", "note", "error"]
    first = run["results"][0]["locations"][0]
    assert first["physicalLocation"]["region"] == {"startLine": 11, "startColumn": 5}
    assert first["logicalLocations"][0]["fullyQualifiedName"] == "DestinationRule/default/reviews spec/subsets[1]"
    unreadable = run["results"][3]["locations"][0]["physicalLocation"]
    assert unreadable == {"artifactLocation": {"uri": "my%20dir/x.yaml"}}  # no region: line 0 is not a line


def test_sarif_with_no_findings_still_names_the_tool() -> None:
    sarif = json.loads(render([], "sarif"))
    assert sarif["runs"][0]["results"] == [] and sarif["runs"][0]["tool"]["driver"]["rules"] == []


def test_every_format_renders_and_unknown_ones_are_refused() -> None:
    for fmt in FORMATS:
        assert render(FINDINGS, fmt)
    with pytest.raises(ValueError, match="unknown output format"):
        render(FINDINGS, "xml")
