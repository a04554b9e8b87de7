"""The workshop's steps as data: the seed talk's demos in order, each rule file there and valid,
console pages by the console's URL convention, and security steps held back until enforced."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox.mesh.loader import load_text
from sandbox.mesh.topology import load_compose
from sandbox.operator.apply import Input, plan_apply
from sandbox.workshop import steps
from sandbox.workshop.runner import listing
from sandbox.workshop.steps import BOOKINFO, Rule, Step

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "samples"


def test_the_seed_talks_demos_in_order() -> None:
    assert [s.key for s in BOOKINFO] == [
        "visualize",
        "all-v1",
        "canary",
        "a-b",
        "by-user",
        "mirroring",
        "delay",
        "abort",
        "circuit-breaking",
        "outlier-detection",
        "validation",
        "tracing",
        "traffic-stats",
        "mtls",
        "authorization",
    ]


@pytest.mark.parametrize("step", BOOKINFO, ids=lambda s: s.key)
def test_each_rule_exists_and_is_istio(step: Step) -> None:
    sample = SAMPLES / step.sample
    for name in step.needs:
        assert (sample / name).is_file(), name
    for rule in step.rules:
        text = rule.text if rule.text is not None else (sample / rule.name).read_text()
        loaded = load_text(text, rule.name)
        assert loaded.resources and not loaded.errors, [d.format() for d in loaded.diagnostics]
    assert step.page.startswith("/console/")


def test_the_validation_steps_mistake_is_refused_by_apply() -> None:
    [rule] = next(s for s in BOOKINFO if s.key == "validation").rules
    assert rule.refused and rule.text is not None
    bookinfo = SAMPLES / "bookinfo"
    subsets = (bookinfo / "networking" / "destination-rule-all.yaml").read_text()  # what the step builds on
    topology = load_compose(bookinfo / "compose.yaml")
    plan = plan_apply("/istio", {"/istio/dr.yaml": subsets}, [Input("-", rule.text)], topology)
    assert not plan.ok and plan.refused[0].code == "KIA1107"


def test_security_steps_wait_for_enforcement(monkeypatch: pytest.MonkeyPatch) -> None:
    assert {s.key: s.requires for s in BOOKINFO if s.requires} == {"mtls": "mtls", "authorization": "authorization"}
    assert [s.key for s in BOOKINFO if not s.available] == []  # the sidecar enforces both
    assert "not available in this version" not in listing(BOOKINFO)
    monkeypatch.setattr(steps, "ENFORCED", frozenset({"mtls"}))
    assert [s.key for s in BOOKINFO if not s.available] == ["authorization"]
    assert "not available in this version: the sidecar does not enforce AuthorizationPolicy" in listing(BOOKINFO)
    monkeypatch.setattr(steps, "ENFORCED", frozenset({"mtls", "authorization"}))  # the one-line switch
    assert all(s.available for s in BOOKINFO)
    assert "not available" not in listing(BOOKINFO)


def test_a_step_is_a_plain_record() -> None:
    step = Step("k", "T", "why", "look", "/console/overview", lambda stage: None, (Rule("x.yaml"),))  # type: ignore[arg-type,return-value]
    assert step.available and step.unavailable_because == ""
    assert "x.yaml" in listing([step])
