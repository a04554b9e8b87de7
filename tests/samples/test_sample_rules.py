"""Every rule file the samples ship analyzes clean against its compose file, and ours say what
upstream's say (tests/fixtures/bookinfo holds upstream's files)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from sandbox.cli import app
from sandbox.mesh.loader import load_paths
from sandbox.mesh.schema import encode
from sandbox.mesh.topology import load_compose

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "samples"
UPSTREAM = ROOT / "tests" / "fixtures" / "bookinfo"
BASE_RULES = {"bookinfo": "destination-rule-all.yaml", "httpbin": "destination-rule-subsets.yaml"}


# What a file is meant to be warned about: the seed talk's v1alpha1 RBAC files are removed APIs
# (translated, with SBX201), and the claim-routing task's VirtualService shares the sample's
# gateway with its `*` route (Kiali's KIA1106; the more specific host wins, as in Envoy).
EXPECTED = {
    "rbac-config-on.yaml": {"SBX201"},
    "rbac-details-reviews-policy.yaml": {"SBX201"},
    "rbac-productpage-policy.yaml": {"SBX201"},
    "rbac-ratings-policy.yaml": {"SBX201"},
    "virtual-service-claims.yaml": {"KIA1106"},
}


def rule_files() -> list[tuple[str, Path]]:
    return [(s, f) for s in sorted(BASE_RULES) for f in sorted((SAMPLES / s / "networking").glob("*.yaml"))]


def analyze(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["analyze", "--strict", *args])
    return result.exit_code, result.output


@pytest.mark.parametrize("sample", sorted(BASE_RULES))
def test_what_up_applies_is_clean(sample: str) -> None:
    directory = SAMPLES / sample
    assert analyze(str(directory / "istio"), "--compose", str(directory / "compose.yaml")) == (0, "")


@pytest.mark.parametrize(("sample", "path"), rule_files(), ids=lambda v: v.name if isinstance(v, Path) else v)
def test_each_task_rule_file_is_clean(sample: str, path: Path) -> None:
    """A file that defines DestinationRules replaces the base ones (as `kubectl apply` would), so it
    is analyzed on its own; the others with the base subsets."""
    directory = SAMPLES / sample
    files = [str(path)]
    if not any(r.kind == "DestinationRule" for r in load_paths([str(path)]).resources):
        files.insert(0, str(directory / "networking" / BASE_RULES[sample]))
    if path.name.startswith("rbac-") and path.name != "rbac-config-on.yaml":  # the talk turns RBAC on first
        files.insert(0, str(path.parent / "rbac-config-on.yaml"))
    code, output = analyze(*files, str(directory / "istio"), "--compose", str(directory / "compose.yaml"))
    expected = EXPECTED.get(path.name, set())
    codes = {line.split()[2] for line in output.splitlines() if " warning " in line or " error " in line}
    assert (code, codes) == ((1, expected) if expected else (0, set())), output
    assert " error " not in output


def test_the_mtls_migration_rules_are_clean_at_every_step() -> None:
    """The task applies its PeerAuthentications one after another, each on top of the others."""
    directory = SAMPLES / "mtls-migration"
    compose = str(directory / "compose.yaml")
    assert analyze(str(directory / "istio"), "--compose", compose) == (0, "")
    steps = [
        "peer-authentication-foo-strict.yaml",
        "peer-authentication-mesh-strict.yaml",
        "peer-authentication-httpbin-foo-disable.yaml",
        "peer-authentication-httpbin-bar-port-permissive.yaml",
    ]
    assert sorted(p.name for p in (directory / "security").glob("*.yaml")) == sorted(steps)
    for n in range(1, len(steps) + 1):
        files = [str(directory / "security" / name) for name in steps[:n]]
        assert analyze(str(directory / "istio"), *files, "--compose", compose) == (0, ""), steps[n - 1]


def test_bookinfo_ships_upstreams_task_files() -> None:
    names = {p.name for p in (SAMPLES / "bookinfo" / "networking").glob("*.yaml")}
    assert {
        "destination-rule-all.yaml",
        "destination-rule-all-mtls.yaml",
        "virtual-service-all-v1.yaml",
        "virtual-service-reviews-test-v2.yaml",
        "virtual-service-reviews-50-v3.yaml",
        "virtual-service-reviews-v3.yaml",
        "virtual-service-reviews-80-20.yaml",
        "virtual-service-reviews-90-10.yaml",
        "virtual-service-reviews-jason-v2-v3.yaml",
        "virtual-service-ratings-test-delay.yaml",
        "virtual-service-ratings-test-abort.yaml",
    } <= names


def specs(path: Path) -> dict[tuple[str, str], Any]:
    loaded = load_paths([str(path)])
    assert not loaded.diagnostics, [d.format() for d in loaded.diagnostics]
    return {(r.kind, r.name): encode(r.spec) for r in loaded.resources}


@pytest.mark.parametrize(
    "name", sorted(p.name for p in UPSTREAM.glob("virtual-service-*.yaml")), ids=lambda n: n.removesuffix(".yaml")
)
def test_virtual_services_match_upstream(name: str) -> None:
    assert specs(SAMPLES / "bookinfo" / "networking" / name) == specs(UPSTREAM / name)


def test_destination_rules_match_upstream_for_the_versions_we_run() -> None:
    """Upstream also names ratings v2/v2-mysql/v2-mysql-vm and details v2 (they need a database or
    Google Books); ours keeps the subsets of the versions the compose file runs, and all of those."""
    ours = specs(SAMPLES / "bookinfo/networking/destination-rule-all.yaml")
    upstream = specs(UPSTREAM / "destination-rule-all.yaml")
    running: dict[str, set[str]] = {}
    for w in load_compose(SAMPLES / "bookinfo/compose.yaml").workloads:
        running.setdefault(w.app, set()).add(w.version)
    assert ours.keys() == upstream.keys()
    for key, spec in ours.items():
        kept = [s for s in upstream[key]["subsets"] if s["labels"]["version"] in running[spec["host"]]]
        assert {s["labels"]["version"] for s in kept} == running[spec["host"]]
        assert spec == {**upstream[key], "subsets": kept}


def test_gateway_matches_upstream_but_for_the_port() -> None:
    ours, upstream = specs(SAMPLES / "bookinfo/istio/bookinfo-gateway.yaml"), specs(UPSTREAM / "bookinfo-gateway.yaml")
    assert ours[("VirtualService", "bookinfo")] == upstream[("VirtualService", "bookinfo")]
    gateway, theirs = ours[("Gateway", "bookinfo-gateway")], upstream[("Gateway", "bookinfo-gateway")]
    # upstream binds the gateway pod's container port 8080 (Kubernetes maps Service port 80 to it)
    assert theirs["servers"][0]["port"]["number"] == 8080 and gateway["servers"][0]["port"]["number"] == 80
    gateway["servers"][0]["port"]["number"] = 8080
    assert gateway == theirs
