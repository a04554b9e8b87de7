"""What the console's writes are made of (console/edits.py): the object a request sends checked
against its URL, JSON merge patches (RFC 7386, what Kiali's editor sends), and the verdict of
`sandbox apply`'s planner as the API's JSON, with each problem at its line in the text sent."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox.console import edits
from sandbox.console.edits import Document, EditError
from sandbox.mesh.resources import KINDS
from sandbox.mesh.topology import parse_compose
from sandbox.operator.apply import Input, plan_edit
from tests.factories import REVIEWS_SUBSETS, compose_for, reviews_to

VS = KINDS["VirtualService"]
TOPOLOGY = parse_compose(compose_for(("reviews-v1", "reviews", "v1"), ("reviews-v2", "reviews", "v2")), "compose.yaml")


@pytest.mark.parametrize(
    ("target", "patch", "result"),
    [  # RFC 7386's own examples
        ({"a": "b"}, {"a": "c"}, {"a": "c"}),
        ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
        ({"a": "b"}, {"a": None}, {}),
        ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
        ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
        ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
        ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
        ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
        ("c", {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    ],
)
def test_json_merge_patch(target: Any, patch: Any, result: Any) -> None:
    assert edits.merge_patch(target, patch) == result


def test_a_yaml_body_is_kept_as_written_and_the_urls_namespace_fills_a_missing_one() -> None:
    text = "# mine\n" + reviews_to("v1")
    data = edits.parse_body(text.encode(), "application/yaml")[1]
    assert edits.object_text(text, data, VS, "default") == (text, "reviews")  # comments kept
    body, _ = edits.object_text(text, data, VS, "bookinfo")
    assert "namespace: bookinfo" in body


@pytest.mark.parametrize(
    ("kind", "namespace", "name", "message"),
    [
        ("DestinationRule", "default", None, "the body's kind is 'VirtualService', but the URL is for DestinationRule"),
        ("VirtualService", "default", "ratings", "an object cannot be renamed"),
    ],
)
def test_a_body_that_is_not_the_object_the_url_names_is_refused(
    kind: str, namespace: str, name: str | None, message: str
) -> None:
    data = edits.parse_body(reviews_to("v1").encode(), "application/yaml")[1]
    with pytest.raises(EditError, match=message):
        edits.object_text(reviews_to("v1"), data, KINDS[kind], namespace, name)


def test_another_namespace_in_the_body_is_refused() -> None:
    text = reviews_to("v1").replace("name: reviews", "name: reviews\n  namespace: prod")
    data = edits.parse_body(text.encode(), "application/yaml")[1]
    with pytest.raises(EditError, match="the body's namespace is 'prod', but the URL is for namespace 'default'"):
        edits.object_text(text, data, VS, "default")


def test_yaml_that_does_not_parse_is_refused_at_its_line() -> None:
    with pytest.raises(EditError) as raised:
        edits.parse_body(b"kind: VirtualService\nspec:\n  hosts: [reviews\n", "application/yaml")
    assert raised.value.status == 422 and raised.value.checks and raised.value.checks[0]["line"] >= 3
    assert "is not valid YAML at line" in str(raised.value)
    with pytest.raises(EditError, match="is not JSON"):
        edits.parse_body(b"{", "application/json")
    with pytest.raises(EditError, match="empty"):
        edits.parse_body(b"  \n", "application/yaml")


def test_a_route_to_a_missing_subset_is_refused_with_kia1107_at_its_line() -> None:
    files = {"/istio/reviews.yaml": REVIEWS_SUBSETS}
    sent = reviews_to("v9")
    plan = plan_edit("/istio", files, [Input("-", sent)], (), TOPOLOGY)
    answer = edits.result_json(plan, False, sent)
    assert not plan.ok and plan.writes == {}
    line = sent.splitlines().index("    - destination:") + 1
    assert [(c["code"], c["line"], c["inRequest"]) for c in answer["refused"]] == [("KIA1107", line, True)]
    assert [(c["code"], c["line"]) for c in answer["checks"]] == [("KIA1107", line)]
    assert answer["error"].startswith(f"Nothing was written: the change would bring KIA1107 at line {line}")
    assert "define the subset first" in answer["error"]


def test_the_checks_of_an_accepted_change_are_its_objects_findings_at_their_lines() -> None:
    files = {"/istio/reviews.yaml": REVIEWS_SUBSETS}
    sent = reviews_to("v1")
    plan = plan_edit("/istio", files, [Input("-", sent)], (), TOPOLOGY)
    answer = edits.result_json(plan, True, sent)
    assert plan.ok and answer["written"] and answer["changes"][0]["action"] == "created"
    assert "refused" not in answer and "error" not in answer


def test_the_checks_of_a_document_are_placed_at_its_lines() -> None:
    text = "# reviews\n" + reviews_to("v9")
    checks = [{"code": "KIA1107", "path": "spec/http[0]/route[0]/destination", "line": 99}]
    placed = edits.loaded_lines(text, checks)
    assert placed[0]["line"] == text.splitlines().index("    - destination:") + 1


def test_a_merge_patch_starts_from_the_document_as_written() -> None:
    document = Document("/istio/vs.yaml", 3, reviews_to("v1"))
    merged = edits.merge_patch(
        edits.manifest_of(document),
        {"spec": {"http": [{"route": [{"destination": {"host": "reviews", "subset": "v2"}}]}]}},
    )
    assert merged["spec"]["http"][0]["route"][0]["destination"]["subset"] == "v2"
    assert merged["metadata"] == {"name": "reviews"}


def test_a_yaml_warning_is_the_planners_to_report_not_a_refusal() -> None:
    text = reviews_to("v1").replace("metadata:\n  name: reviews", "metadata:\n  name: reviews\n  name: reviews")
    assert edits.parse_body(text.encode(), "application/yaml")[1]["metadata"] == {"name": "reviews"}
