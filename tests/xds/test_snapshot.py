"""ProxySnapshot: canonical JSON, content version, round trip, and clear errors on bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox.control.compile import compile as compile_snapshot
from sandbox.mesh.loader import load_paths
from sandbox.mesh.state import MeshState
from sandbox.mesh.topology import load_compose
from sandbox.xds.canonical import canonical_json
from sandbox.xds.snapshot import ProxySnapshot, content_version

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "bookinfo"
ROOT = Path(__file__).resolve().parents[2]


def bookinfo(*rules: str, proxy: str = "productpage-v1") -> ProxySnapshot:
    loaded = load_paths([FIXTURES / r for r in rules])
    assert not loaded.errors
    return compile_snapshot(MeshState(loaded.resources, load_compose(FIXTURES / "compose.yaml")), proxy)


RULE_SETS = [
    (),
    ("destination-rule-all.yaml", "virtual-service-all-v1.yaml"),
    ("destination-rule-all.yaml", "virtual-service-reviews-80-20.yaml", "virtual-service-ratings-test-delay.yaml"),
]


@pytest.mark.parametrize("rules", RULE_SETS)
def test_json_round_trip_is_lossless(rules: tuple[str, ...]) -> None:
    for proxy in ("productpage-v1", "istio-ingressgateway"):
        snap = bookinfo(*rules, "bookinfo-gateway.yaml", proxy=proxy)
        again = ProxySnapshot.from_json(snap.to_json())
        assert again == snap
        assert again.to_json() == snap.to_json()
        assert content_version(again) == snap.version


def test_json_is_canonical() -> None:
    text = bookinfo("destination-rule-all.yaml").to_json()
    assert text == json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert "\n" not in text and ": " not in text


def test_version_is_a_content_hash() -> None:
    snap = bookinfo("destination-rule-all.yaml", "virtual-service-all-v1.yaml")
    assert len(snap.version) == 16 and int(snap.version, 16) >= 0
    assert json.loads(snap.to_json())["version"] == snap.version
    assert bookinfo("destination-rule-all.yaml", "virtual-service-all-v1.yaml").version == snap.version


def test_version_is_stable_across_processes() -> None:
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from tests.xds.test_snapshot import bookinfo;"
        "print(bookinfo('destination-rule-all.yaml', 'virtual-service-reviews-80-20.yaml').version)"
    )
    versions = set()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", script, str(ROOT)], capture_output=True, text=True, env=env, cwd=ROOT, check=True
        )
        versions.add(out.stdout.strip())
    assert versions == {bookinfo("destination-rule-all.yaml", "virtual-service-reviews-80-20.yaml").version}


def test_version_changes_when_routing_changes() -> None:
    versions = {
        bookinfo("destination-rule-all.yaml").version,
        bookinfo("destination-rule-all.yaml", "virtual-service-reviews-v3.yaml").version,
        bookinfo("destination-rule-all.yaml", "virtual-service-reviews-50-v3.yaml").version,
        bookinfo("destination-rule-all.yaml", "virtual-service-reviews-80-20.yaml").version,
        bookinfo("destination-rule-all.yaml", "virtual-service-reviews-test-v2.yaml").version,
    }
    assert len(versions) == 5


def test_each_proxy_gets_its_own_snapshot() -> None:
    a = bookinfo("destination-rule-all.yaml", proxy="reviews-v1")
    b = bookinfo("destination-rule-all.yaml", proxy="reviews-v2")
    assert a.version != b.version  # identity differs
    assert a.route_configs == b.route_configs and a.clusters == b.clusters  # same routing view


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "not JSON"),
        ("[]", "snapshot: expected an object"),
        ('{"identity": {}}', "snapshot.identity"),
        ('{"identity": 3}', "snapshot.identity: expected an object"),
        ('{"bogus": 1}', "unknown field"),
    ],
)
def test_from_json_rejects_malformed_input_with_a_path(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ProxySnapshot.from_json(text)


def test_from_json_rejects_a_wrong_type_deep_inside() -> None:
    data = bookinfo("destination-rule-all.yaml").to_data()
    data["clusters"][0]["traffic_policy"]["connection_pool"]["max_connections"] = "many"
    with pytest.raises(ValueError, match=r"snapshot\.clusters\[0\]\.traffic_policy\.connection_pool\.max_connections"):
        ProxySnapshot.from_data(data)


def test_cluster_lookup() -> None:
    snap = bookinfo("destination-rule-all.yaml")
    found = snap.cluster("outbound|9080|v1|reviews.default.svc.cluster.local")
    assert found is not None and found.subset == "v1"
    assert snap.cluster("outbound|9080|v9|reviews.default.svc.cluster.local") is None
    assert snap.route_config(9080) is not None and snap.route_config(1) is None


def test_the_wire_form_leaves_defaults_out_and_decodes_to_the_same_snapshot() -> None:
    snap = bookinfo("destination-rule-all.yaml")
    text = snap.to_json()
    assert len(text) < len(canonical_json(snap.to_data())) / 2  # most of a snapshot is defaults
    assert '"max_connections"' not in text  # Istio's MaxUint32 default, on every cluster
    assert ProxySnapshot.from_json(text) == snap
    assert json.loads(text)["version"] == snap.version == content_version(snap)
