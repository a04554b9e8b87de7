"""Planning `sandbox apply` / `delete` against an Istio directory (pure: texts in, writes out)."""

from __future__ import annotations

from pathlib import Path

import pytest
from factories import BOOKINFO, reviews_to

from sandbox.mesh.topology import Topology, load_compose
from sandbox.operator.apply import Input, plan_apply, plan_delete, read_inputs

ISTIO = "/mesh/istio"
DR = (BOOKINFO / "destination-rule-all.yaml").read_text()


@pytest.fixture(scope="module")
def topology() -> Topology:
    return load_compose(BOOKINFO / "compose.yaml")


def lines(plan: object) -> list[str]:
    return [c.line for c in plan.changes]  # type: ignore[attr-defined]


def test_a_new_resource_goes_to_a_file_named_after_the_applied_one_as_written(topology: Topology) -> None:
    text = "# reviews to v2\n" + reviews_to("v2")
    plan = plan_apply(ISTIO, {f"{ISTIO}/dr.yaml": DR}, [Input("work/reviews-v2.yaml", text)], topology)
    assert plan.ok and lines(plan) == ["virtualservice.networking.istio.io/reviews created"]
    assert plan.writes == {f"{ISTIO}/reviews-v2.yaml": text}


def test_an_existing_resource_is_replaced_in_place_and_the_rest_of_its_file_stays(topology: Topology) -> None:
    existing = f"# the whole app\n{DR}---\n# route reviews\n{reviews_to('v1')}"
    plan = plan_apply(ISTIO, {f"{ISTIO}/app.yaml": existing}, [Input("new.yaml", reviews_to("v3"))], topology)
    assert plan.ok and lines(plan) == ["virtualservice.networking.istio.io/reviews configured"]
    written = plan.writes[f"{ISTIO}/app.yaml"]
    assert written is not None
    assert written.startswith(f"# the whole app\n{DR}---\n") and written.endswith(reviews_to("v3"))
    assert "# route reviews" not in written  # the replaced document's own comment goes with it

    again = plan_apply(ISTIO, {f"{ISTIO}/app.yaml": written}, [Input("new.yaml", reviews_to("v3"))], topology)
    assert lines(again) == ["virtualservice.networking.istio.io/reviews unchanged"] and again.writes == {}


def test_stdin_and_directories_name_the_files_they_create(tmp_path: Path, topology: Topology) -> None:
    plan = plan_apply(ISTIO, {}, [Input("-", DR)], topology)
    assert sorted(plan.writes) == [f"{ISTIO}/destinationrule-default-details.yaml"] + [
        f"{ISTIO}/destinationrule-default-{n}.yaml" for n in ("productpage", "ratings", "reviews")
    ]
    (tmp_path / "rules" / "net").mkdir(parents=True)
    (tmp_path / "rules" / "net" / "dr.yaml").write_text(DR)
    (tmp_path / "rules" / "vs.yaml").write_text(reviews_to("v1"))
    inputs, problems = read_inputs([str(tmp_path / "rules"), str(tmp_path / "missing")], lambda: "")
    assert problems == [f"no such file or directory: {tmp_path / 'missing'}"]
    plan = plan_apply(ISTIO, {}, inputs, topology)
    assert plan.ok and sorted(plan.writes) == [f"{ISTIO}/net/dr.yaml", f"{ISTIO}/vs.yaml"]


@pytest.mark.parametrize(
    ("text", "code", "line"),
    [
        (reviews_to("v2") + "  - [\n", "SBX001", 13),  # bad YAML in the applied file
        (reviews_to("v9"), "KIA1107", 9),  # a subset no DestinationRule defines: 503s
        (reviews_to("v2").replace("hosts:", "hostz:"), "SBX121", 5),  # hosts is required
    ],
)
def test_a_change_that_brings_an_error_is_refused_and_writes_nothing(
    topology: Topology, text: str, code: str, line: int
) -> None:
    plan = plan_apply(ISTIO, {f"{ISTIO}/dr.yaml": DR}, [Input("reviews.yaml", text)], topology)
    assert not plan.ok and plan.writes == {}
    assert (plan.refused[0].code, plan.refused[0].file, plan.refused[0].line) == (code, "reviews.yaml", line)


def test_an_error_that_was_already_there_does_not_block_other_changes(topology: Topology) -> None:
    broken = {f"{ISTIO}/old.yaml": reviews_to("v9").replace("reviews", "ratings")}
    plan = plan_apply(ISTIO, {**broken, f"{ISTIO}/dr.yaml": DR}, [Input("r.yaml", reviews_to("v2"))], topology)
    assert plan.ok and list(plan.writes) == [f"{ISTIO}/r.yaml"]


def test_delete_removes_exactly_the_named_resources(topology: Topology) -> None:
    files = {f"{ISTIO}/app.yaml": f"{DR}---\n{reviews_to('v1')}"}
    plan = plan_delete(files, [Input("x.yaml", reviews_to("whatever"))], topology)
    assert plan.ok and lines(plan) == ["virtualservice.networking.istio.io/reviews deleted"]
    assert plan.writes == {f"{ISTIO}/app.yaml": DR}

    only = {f"{ISTIO}/vs.yaml": "# just this\n" + reviews_to("v1"), f"{ISTIO}/dr.yaml": DR}
    plan = plan_delete(only, [Input("-", reviews_to("v1"))], topology)
    assert plan.writes == {f"{ISTIO}/vs.yaml": None}  # nothing left: the file goes

    missing = plan_delete({f"{ISTIO}/dr.yaml": DR}, [Input("-", reviews_to("v1"))], topology)
    assert lines(missing) == ["virtualservice.networking.istio.io/reviews not found"] and missing.writes == {}


def test_deleting_what_a_route_needs_is_refused(topology: Topology) -> None:
    reviews_dr = DR.split("---")[1]  # the reviews DestinationRule with subsets v1..v3
    assert "name: reviews" in reviews_dr
    files = {f"{ISTIO}/dr.yaml": DR, f"{ISTIO}/vs.yaml": reviews_to("v2")}
    plan = plan_delete(files, [Input("-", reviews_dr)], topology)
    assert not plan.ok and plan.writes == {} and plan.refused[0].code == "KIA1107"


def test_delete_by_kind_and_name(topology: Topology) -> None:
    from sandbox.operator.apply import plan_delete_keys

    files = {f"{ISTIO}/app.yaml": f"{DR}---\n{reviews_to('v1')}"}
    plan = plan_delete_keys(files, [("VirtualService", "default", "reviews"), ("Gateway", "default", "x")], topology)
    assert lines(plan) == [
        "virtualservice.networking.istio.io/reviews deleted",
        "gateway.networking.istio.io/x not found",
    ]
    assert plan.writes == {f"{ISTIO}/app.yaml": DR}
