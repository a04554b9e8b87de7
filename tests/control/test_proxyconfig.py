"""`sandbox proxy-config`: the offline view of one proxy's snapshot, in istioctl's shapes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sandbox.cli import app

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "bookinfo"
RULES = ("destination-rule-all.yaml", "virtual-service-reviews-test-v2.yaml", "bookinfo-gateway.yaml")


@pytest.fixture
def istio_dir(tmp_path: Path) -> Path:
    for name in RULES:
        shutil.copy(FIXTURES / name, tmp_path / name)
    return tmp_path


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["proxy-config", *args])
    return result.exit_code, result.stdout, result.stderr


def test_routes_table_shows_the_jason_rule(istio_dir: Path) -> None:
    code, out, _ = run(
        "productpage-v1", "routes", "--compose", str(FIXTURES / "compose.yaml"), "--istio", str(istio_dir)
    )
    assert code == 0
    lines = [line for line in out.splitlines() if line.startswith("9080  reviews.default.svc.cluster.local:9080")]
    assert len(lines) == 2
    assert "end-user=jason" in lines[0] and "outbound|9080|v2|reviews" in lines[0] and "reviews.default" in lines[0]
    assert "outbound|9080|v1|reviews" in lines[1]


def test_istioctl_argument_order_and_json(istio_dir: Path) -> None:
    code, out, _ = run(
        "clusters", "reviews-v1", "-c", str(FIXTURES / "compose.yaml"), "--istio", str(istio_dir), "-o", "json"
    )
    assert code == 0
    names = [c["name"] for c in json.loads(out)]
    assert "outbound|9080|v3|reviews.default.svc.cluster.local" in names and "PassthroughCluster" in names
    assert all("endpoints" not in c for c in json.loads(out))


def test_endpoints_and_gateway_views(istio_dir: Path) -> None:
    compose = str(FIXTURES / "compose.yaml")
    code, out, _ = run("istio-ingressgateway", "endpoints", "-c", compose, "--istio", str(istio_dir), "-o", "yaml")
    assert code == 0 and "address: reviews-v2:9080" in out
    code, out, _ = run("istio-ingressgateway", "-c", compose, "--istio", str(istio_dir))
    assert code == 0 and out.startswith("router istio-ingressgateway.istio-system") and "http.8080" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("nope",), "no workload with a sidecar named 'nope'"),
        (("productpage-v1", "secret"), "the section must be one of"),
        (("productpage-v1", "secrets"), "secrets exist only in a running sidecar"),
        (("productpage-v1", "-o", "xml"), "--output must be one of"),
    ],
)
def test_usage_errors_exit_2_without_a_traceback(istio_dir: Path, args: tuple[str, ...], message: str) -> None:
    code, out, err = run(*args, "-c", str(FIXTURES / "compose.yaml"), "--istio", str(istio_dir))
    assert code == 2 and message in err and "Traceback" not in out + err


def test_needs_the_files(istio_dir: Path) -> None:
    code, _, err = run("productpage-v1", "--istio", str(istio_dir))
    assert code == 2 and "--compose" in err


def test_broken_rule_file_is_reported_and_the_rest_still_shows(istio_dir: Path) -> None:
    (istio_dir / "broken.yaml").write_text("kind: VirtualService\nmetadata: {name: x}\nspec: [\n")
    code, out, err = run("productpage-v1", "routes", "-c", str(FIXTURES / "compose.yaml"), "--istio", str(istio_dir))
    assert code == 1 and "broken.yaml" in err and "SBX001" in err
    assert "outbound|9080|v2|reviews" in out


SECURITY = """\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: readers, namespace: default}
spec:
  selector: {matchLabels: {app: details}}
  rules: [{to: [{operation: {methods: [GET]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: default}
spec:
  action: DENY
  rules: [{to: [{operation: {notPaths: [/public*]}}], from: [{source: {notRequestPrincipals: ["*"]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: watch, namespace: default, annotations: {"istio.io/dry-run": "true"}}
spec:
  action: DENY
  rules: [{}]
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: istio-system}
spec:
  jwtRules:
  - issuer: testing@secure.istio.io
    jwksUri: https://example.com/jwks.json
    fromHeaders: [{name: x-token}]
"""


def test_authz_lists_the_policies_in_evaluation_order_and_the_jwt_providers(istio_dir: Path) -> None:
    (istio_dir / "security.yaml").write_text(SECURITY)
    code, out, _ = run("authz", "details-v1", "--compose", str(FIXTURES / "compose.yaml"), "--istio", str(istio_dir))
    assert code == 0
    rows = [line.split()[:3] for line in out.splitlines()[1:4]]
    assert rows == [
        ["DENY", "deny-admin.default", "1"],
        ["DENY", "watch.default", "1"],
        ["ALLOW", "readers.default", "1"],
    ]
    assert "dry run: logged, not enforced" in out.splitlines()[2]
    jwt = next(line for line in out.splitlines() if line.startswith("testing@secure.istio.io"))
    # Offline nothing fetches the jwksUri: the provider has no keys, so its tokens fail.
    assert (
        "https://example.com/jwks.json (no keys: tokens fail)" in jwt and "x-token" in jwt and "jwt.istio-system" in jwt
    )
    code, out, _ = run(
        "authz", "details-v1", "-o", "yaml", "--compose", str(FIXTURES / "compose.yaml"), "--istio", str(istio_dir)
    )
    assert "notRequestPrincipals:" in out and "notPaths:" in out  # the rules as written
    _, out, _ = run("authz", "ratings-v1", "--compose", str(FIXTURES / "compose.yaml"), "--istio", str(istio_dir))
    assert "readers" not in out  # its selector picks details only
