from __future__ import annotations

from collections.abc import Sequence

import pytest
from factories import reviews_to

from sandbox.control.store import ConfigStore, FileState
from sandbox.mesh.diagnostics import Diagnostic, Severity
from sandbox.mesh.state import MeshState
from sandbox.mesh.topology import parse_compose

COMPOSE = """
services:
  reviews-v1:
    image: reviews
    labels: {app: reviews, version: v1}
    expose: ["9080"]
  reviews-v2:
    image: reviews
    labels: {app: reviews, version: v2}
    expose: ["9080"]
"""


DR = """apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
spec:
  host: reviews
  subsets:
  - name: v1
    labels: {version: v1}
  - name: v2
    labels: {version: v2}
"""


def unknown_subsets(state: MeshState) -> Sequence[Diagnostic]:
    """A one-rule analyzer (KIA1107) with the analyzer's interface, independent of the real one."""
    found = []
    for vs in state.virtual_services:
        for i, rule in enumerate(vs.spec.http):
            for j, entry in enumerate(rule.route):
                dest = entry.destination
                host = state.resolve(dest.host, vs.namespace)
                subsets = {s.name for dr in state.destination_rules_by_host.get(host, ()) for s in dr.spec.subsets}
                if dest.subset and dest.subset not in subsets:
                    path = f"spec/http[{i}]/route[{j}]/destination"
                    line, col = vs.origin.position(path)
                    found.append(
                        Diagnostic(
                            "KIA1107", Severity.WARNING, "Subset not found", vs.origin.file, line, col, path, vs.ref
                        )
                    )
    return found


def subset_of(state: MeshState) -> str | None:
    (vs,) = state.virtual_services
    return vs.spec.http[0].route[0].destination.subset


@pytest.fixture
def store() -> ConfigStore:
    s = ConfigStore(parse_compose(COMPOSE, "compose.yaml"), analyzer=unknown_subsets)
    assert s.apply({"istio/dr.yaml": DR, "istio/vs.yaml": reviews_to("v1")}, now=1.0)
    return s


def test_initial_files_apply(store: ConfigStore) -> None:
    assert subset_of(store.state) == "v1"
    assert {s.state for s in store.statuses.values()} == {FileState.OK}
    assert store.status("istio/vs.yaml").resources == ("VirtualService/default/reviews",)  # type: ignore[union-attr]


def test_bad_yaml_is_rejected_with_file_and_line_and_the_last_good_rules_stay(store: ConfigStore) -> None:
    generation = store.generation
    broken = reviews_to("v2").replace("  http:\n", "  http:\n  - route: [\n")
    assert not store.apply({"istio/vs.yaml": broken}, now=2.0)
    status = store.status("istio/vs.yaml")
    assert status is not None and status.state is FileState.REJECTED
    (error,) = status.errors
    assert (error.code, error.file) == ("SBX001", "istio/vs.yaml") and error.line >= 7
    assert status.last_good == 1.0 and status.changed == 2.0
    assert status.resources == ("VirtualService/default/reviews",)  # still in force
    assert subset_of(store.state) == "v1" and store.generation == generation

    assert store.apply({"istio/vs.yaml": reviews_to("v2")}, now=3.0)  # the fix applies
    assert subset_of(store.state) == "v2"
    assert store.status("istio/vs.yaml") == store.statuses["istio/vs.yaml"]
    assert store.statuses["istio/vs.yaml"].state is FileState.OK and store.generation == generation + 1


def test_an_unknown_subset_is_rejected_by_the_analyzer_and_the_old_route_keeps_serving(store: ConfigStore) -> None:
    assert not store.apply({"istio/vs.yaml": reviews_to("v3")}, now=2.0)
    status = store.statuses["istio/vs.yaml"]
    assert status.state is FileState.REJECTED
    (error,) = status.diagnostics  # a blocking warning: Kiali rates it a warning, traffic would get 503 NR
    assert (error.code, error.file, error.line, error.path) == (
        "KIA1107",
        "istio/vs.yaml",
        9,
        "spec/http[0]/route[0]/destination",
    )
    assert subset_of(store.state) == "v1"


def test_a_change_elsewhere_that_breaks_a_route_is_rejected_too(store: ConfigStore) -> None:
    only_v2 = DR.replace("  - name: v1\n    labels: {version: v1}\n", "")
    assert not store.apply({"istio/dr.yaml": only_v2}, now=2.0)  # would strand the VS's subset v1
    status = store.statuses["istio/dr.yaml"]
    assert status.state is FileState.REJECTED and status.diagnostics[-1].file == "istio/vs.yaml"
    # Moving the route first unblocks the DestinationRule: rejected files are retried.
    assert store.apply({"istio/vs.yaml": reviews_to("v2")}, now=3.0)
    assert store.statuses["istio/dr.yaml"].state is FileState.OK
    (dr,) = store.state.destination_rules
    assert [s.name for s in dr.spec.subsets] == ["v2"]


def test_two_changes_that_need_each_other_apply_in_one_batch(store: ConfigStore) -> None:
    with_v3 = DR + "  - name: v3\n    labels: {version: v3}\n"
    assert store.apply({"istio/vs.yaml": reviews_to("v3"), "istio/dr.yaml": with_v3}, now=2.0)
    assert subset_of(store.state) == "v3"
    assert {s.state for s in store.statuses.values()} == {FileState.OK}


def test_deleting_a_file_removes_its_resources(store: ConfigStore) -> None:
    assert store.apply({"istio/vs.yaml": None}, now=2.0)
    assert store.state.virtual_services == () and len(store.state.destination_rules) == 1
    assert "istio/vs.yaml" not in store.statuses
    assert not store.apply({"istio/never-existed.yaml": None}, now=3.0)


def test_deleting_a_rejected_file_removes_its_last_good_resources(store: ConfigStore) -> None:
    store.apply({"istio/vs.yaml": "kind: [\n"}, now=2.0)
    assert store.apply({"istio/vs.yaml": None}, now=3.0)
    assert store.state.virtual_services == ()


def test_a_resource_in_two_files_stays_with_the_first_and_the_second_gets_sbx009(store: ConfigStore) -> None:
    copy = reviews_to("v2") + "---\n" + reviews_to("v2", name="other")
    assert not store.apply({"istio/a-copy.yaml": copy}, now=2.0)  # sorts before vs.yaml, still second
    status = store.statuses["istio/a-copy.yaml"]
    assert status.state is FileState.REJECTED
    (dup,) = status.errors
    assert (dup.code, dup.file, dup.line) == ("SBX009", "istio/a-copy.yaml", 4)
    assert "istio/vs.yaml:1" in dup.message
    assert subset_of(store.state) == "v1" and len(store.state.virtual_services) == 1  # nothing of the copy

    # The first owner goes away: the second file is retried and takes over.
    assert store.apply({"istio/vs.yaml": None}, now=3.0)
    assert store.statuses["istio/a-copy.yaml"].state is FileState.OK
    assert sorted(vs.name for vs in store.state.virtual_services) == ["other", "reviews"]


def test_other_files_still_apply_while_one_is_rejected(store: ConfigStore) -> None:
    store.apply({"istio/vs.yaml": "{{{"}, now=2.0)
    gw = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec:\n  servers: []\n"
    assert store.apply({"istio/gw.yaml": gw}, now=3.0)
    assert [g.name for g in store.state.gateways] == ["gw"] and subset_of(store.state) == "v1"


def test_warnings_do_not_reject_but_are_reported(store: ConfigStore) -> None:
    assert store.apply({"istio/vs.yaml": reviews_to("v2").replace("  hosts:", "  hostz: [x]\n  hosts:")}, 2.0)
    status = store.statuses["istio/vs.yaml"]
    assert status.state is FileState.OK and [d.code for d in status.diagnostics] == ["SBX002"]


def test_an_unchanged_text_does_not_bump_the_generation(store: ConfigStore) -> None:
    generation = store.generation
    assert not store.apply({"istio/vs.yaml": reviews_to("v1")}, now=2.0)
    assert store.generation == generation and store.statuses["istio/vs.yaml"].last_good == 2.0


def test_a_compose_change_adds_endpoints_and_unblocks_a_route_to_the_new_version(store: ConfigStore) -> None:
    to_v3 = reviews_to("v3")
    with_v3 = DR + "  - name: v3\n    labels: {version: v3}\n"
    store.apply({"istio/dr.yaml": with_v3}, now=2.0)
    grown = parse_compose(COMPOSE + "  reviews-v3:\n    image: r\n    labels: {app: reviews, version: v3}\n", "c.yaml")
    generation = store.generation
    assert store.set_topology(grown, now=3.0)
    assert store.generation > generation
    assert [w.name for w in store.state.topology.workloads if w.app == "reviews"] == [
        "reviews-v1",
        "reviews-v2",
        "reviews-v3",
    ]
    assert store.apply({"istio/vs.yaml": to_v3}, now=4.0) and subset_of(store.state) == "v3"
    assert not store.set_topology(grown, now=5.0)  # same topology: nothing to push


def test_a_broken_compose_file_keeps_the_last_good_topology(store: ConfigStore) -> None:
    before = store.state.topology
    assert not store.set_topology(parse_compose("services: [\n", "compose.yaml"), now=2.0)
    assert store.state.topology is before
    assert store.topology_status.state is FileState.REJECTED
    assert store.topology_status.errors[0].code == "SBX001"


def test_the_default_analyzer_rejects_an_unknown_subset() -> None:
    from sandbox.mesh.analysis import analyze
    from sandbox.mesh.loader import load_text

    probe = MeshState(load_text(DR + "---\n" + reviews_to("v9"), "p.yaml").resources, parse_compose(COMPOSE, "c"))
    if not any(d.code == "KIA1107" for d in analyze(probe)):
        pytest.skip("the analyzer does not check subsets yet")
    s = ConfigStore(parse_compose(COMPOSE, "compose.yaml"))
    assert s.apply({"dr.yaml": DR, "vs.yaml": reviews_to("v1")}, now=1.0)
    assert not s.apply({"vs.yaml": reviews_to("v9")}, now=2.0)
    assert s.statuses["vs.yaml"].state is FileState.REJECTED and subset_of(s.state) == "v1"


def test_a_crashing_analyzer_does_not_freeze_the_config(caplog: pytest.LogCaptureFixture) -> None:
    def broken(state: MeshState) -> Sequence[Diagnostic]:
        raise RuntimeError("checker bug")

    s = ConfigStore(parse_compose(COMPOSE, "compose.yaml"), analyzer=broken)
    assert s.apply({"dr.yaml": DR, "vs.yaml": reviews_to("v1")}, now=1.0)
    assert s.apply({"vs.yaml": reviews_to("v2")}, now=2.0) and subset_of(s.state) == "v2"
    assert not s.apply({"vs.yaml": "{"}, now=3.0)  # the loader still rejects what does not parse
    assert "checker bug" in caplog.text


def test_a_clean_batch_is_accepted_with_one_analysis_and_a_bad_file_in_it_is_judged_alone() -> None:
    calls = 0

    def counting(state: MeshState) -> Sequence[Diagnostic]:
        nonlocal calls
        calls += 1
        return unknown_subsets(state)

    s = ConfigStore(parse_compose(COMPOSE, "compose.yaml"), analyzer=counting)
    many = {f"istio/vs{i:02}.yaml": reviews_to("v2", name=f"r{i}") for i in range(30)}
    assert s.apply({"istio/dr.yaml": DR, **many}, now=1.0)
    assert calls <= 2 and len(s.state.virtual_services) == 30  # not one analysis per file

    calls = 0
    bad = {"istio/vs05.yaml": reviews_to("v7", name="r5")}
    edits = {f"istio/vs{i:02}.yaml": reviews_to("v1", name=f"r{i}") for i in (1, 2)}
    assert s.apply({**edits, **bad, "istio/broken.yaml": "{"}, now=2.0)
    statuses = s.statuses
    assert [n for n, st in statuses.items() if st.state is FileState.REJECTED] == [
        "istio/broken.yaml",
        "istio/vs05.yaml",
    ]
    assert [d.code for d in statuses["istio/vs05.yaml"].diagnostics] == ["KIA1107"]
    by_name = {vs.name: vs.spec.http[0].route[0].destination.subset for vs in s.state.virtual_services}
    assert (by_name["r1"], by_name["r2"], by_name["r5"]) == ("v1", "v1", "v2")  # r5 keeps its last good subset
    assert calls <= 5


def test_a_batch_whose_trouble_lands_in_another_file_is_judged_file_by_file(store: ConfigStore) -> None:
    only_v2 = DR.replace("  - name: v1\n    labels: {version: v1}\n", "")
    gw = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec:\n  servers: []\n"
    assert store.apply({"istio/dr.yaml": only_v2, "istio/gw.yaml": gw}, now=2.0)
    assert store.statuses["istio/dr.yaml"].state is FileState.REJECTED  # it would strand vs.yaml's subset v1
    assert store.statuses["istio/gw.yaml"].state is FileState.OK and len(store.state.gateways) == 1
