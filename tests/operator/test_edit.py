"""Applying, deleting and putting rules back through the library calls the CLI uses, on a real
Istio directory (files in, files out; no mesh needed)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from sandbox.operator.apply import Input, write
from sandbox.operator.edit import checkpoint, istio_files, plan_change, plan_restore

BOOKINFO = Path(__file__).parent.parent / "fixtures" / "bookinfo"
VS = """# reviews, routed by version
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts: [reviews]
  http:
  - route:
    - destination:
        host: reviews
        subset: {subset}
"""


@pytest.fixture
def istio(tmp_path: Path) -> Path:
    directory = tmp_path / "istio"
    directory.mkdir()
    shutil.copy(BOOKINFO / "destination-rule-all.yaml", directory / "dr.yaml")
    (directory / "app.yaml").write_text("# the app's routes\n" + VS.format(subset="v1") + "---\n# end\n")
    return directory


COMPOSE = BOOKINFO / "compose.yaml"


def apply(istio: Path, text: str) -> None:
    plan = plan_change(istio, COMPOSE, [Input("-", text)])
    assert plan.ok, [d.format() for d in plan.refused]
    write(plan)


def test_plan_change_is_what_apply_and_delete_do(istio: Path) -> None:
    plan = plan_change(istio, COMPOSE, [Input("-", VS.format(subset="v2"))])
    assert [c.line for c in plan.changes] == ["virtualservice.networking.istio.io/reviews configured"]
    refused = plan_change(istio, COMPOSE, [Input("-", VS.format(subset="v9"))])
    assert not refused.ok and refused.refused[0].code == "KIA1107"  # a subset no DestinationRule defines
    deleting = plan_change(istio, COMPOSE, [], keys=[("VirtualService", "default", "reviews")])
    assert [c.action for c in deleting.changes] == ["deleted"]


def test_restore_puts_back_exactly_what_was_written(istio: Path) -> None:
    before = istio_files(istio)
    saved = checkpoint(istio)
    apply(istio, VS.format(subset="v3"))
    apply(istio, VS.format(subset="v2").replace("name: reviews", "name: reviews-canary"))
    assert istio_files(istio) != before
    plan = plan_restore(saved, COMPOSE)
    assert plan.ok and sorted(c.line for c in plan.changes) == [
        "virtualservice.networking.istio.io/reviews configured",
        "virtualservice.networking.istio.io/reviews-canary deleted",
    ]
    write(plan)
    assert istio_files(istio) == before  # byte for byte, comments included; the added file is gone


def test_restore_of_some_keys_leaves_the_other_changes(istio: Path) -> None:
    saved = checkpoint(istio)
    apply(istio, VS.format(subset="v3"))
    apply(istio, VS.format(subset="v2").replace("name: reviews", "name: reviews-canary"))
    write(plan_restore(saved, COMPOSE, {("VirtualService", "default", "reviews")}))
    now = checkpoint(istio).documents
    assert now[("VirtualService", "default", "reviews")] == saved.documents[("VirtualService", "default", "reviews")]
    assert ("VirtualService", "default", "reviews-canary") in now


def test_a_deleted_resource_comes_back_into_its_file(istio: Path) -> None:
    before = istio_files(istio)
    saved = checkpoint(istio)
    write(plan_change(istio, COMPOSE, [], keys=[("DestinationRule", "default", "ratings")]))
    write(plan_restore(saved, COMPOSE))
    assert checkpoint(istio).documents == saved.documents
    assert set(istio_files(istio)) == set(before)


def test_nothing_changed_is_an_empty_plan(istio: Path) -> None:
    plan = plan_restore(checkpoint(istio), COMPOSE)
    assert plan.ok and plan.changes == () and plan.writes == {}
