"""The analyzer's label indexes answer exactly what a scan of every workload / policy would.

They exist so selector checks stay near-linear when one namespace holds hundreds of workloads
(benchmarks/analyze_bench.py --per-namespace 100000); these properties pin them to the scan they
replaced, on small label alphabets so selectors often overlap.
"""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox.mesh.analysis.index import LabelIndex
from sandbox.mesh.analysis.mtls import Policies
from sandbox.mesh.names import labels_match
from sandbox.mesh.resources.security import MTLSMode

PROPERTY = settings(max_examples=200, deadline=timedelta(seconds=2), derandomize=True, database=None)

labels = st.dictionaries(st.sampled_from(["app", "version", "team"]), st.sampled_from(["a", "b", "c"]), max_size=3)
modes = st.sampled_from([MTLSMode.STRICT, MTLSMode.PERMISSIVE, MTLSMode.DISABLE])


@PROPERTY
@given(items=st.lists(labels, max_size=12), selector=labels)
def test_label_index_selects_what_a_scan_selects(items: list[dict[str, str]], selector: dict[str, str]) -> None:
    index = LabelIndex(range(len(items)), lambda i: items[i])
    assert list(index.select(selector)) == [i for i, item in enumerate(items) if labels_match(selector, item)]


def test_label_index_needs_every_selector_label() -> None:
    items = [{"app": "reviews", "version": "v1"}, {"app": "reviews", "version": "v2"}, {"app": "ratings"}]
    index = LabelIndex(range(len(items)), lambda i: items[i])
    assert list(index.select({"app": "reviews", "version": "v2"})) == [1]
    assert list(index.select({"app": "reviews"})) == [0, 1]
    assert list(index.select({"app": "reviews", "version": "v3"})) == []
    assert list(index.select({})) == [0, 1, 2]


@PROPERTY
@given(
    workload_pa=st.dictionaries(st.sampled_from(["default", "other"]), st.lists(st.tuples(labels, modes), max_size=6)),
    namespace=st.sampled_from(["default", "other", "absent"]),
    selector=labels,
)
def test_workload_mode_is_the_first_policy_the_selector_covers(
    workload_pa: dict[str, list[tuple[dict[str, str], MTLSMode]]], namespace: str, selector: dict[str, str]
) -> None:
    policies = Policies({}, {}, workload_pa)
    scan = next((m for pa, m in workload_pa.get(namespace, ()) if labels_match(pa, selector)), None)
    assert policies.workload_mode(namespace, selector) is scan


def test_workload_mode_with_more_labels_than_subsets_are_tried() -> None:
    selector = {f"k{i}": "v" for i in range(12)}
    policies = Policies(
        {}, {}, {"default": [({"k3": "x"}, MTLSMode.DISABLE), ({"k3": "v", "k9": "v"}, MTLSMode.STRICT)]}
    )
    assert policies.workload_mode("default", selector) is MTLSMode.STRICT
