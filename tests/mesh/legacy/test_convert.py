"""`sandbox convert` through typer's CliRunner: legacy documents replaced, modern ones as written."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from sandbox.cli import app
from sandbox.mesh.loader import load_text

MIXED = """\
# traffic rules stay as they are, comments included
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts: [reviews]   # short name
  http:
  - route:
    - destination: {host: reviews, subset: v1}
---
apiVersion: authentication.istio.io/v1alpha1
kind: MeshPolicy
metadata:
  name: default
spec:
  peers:
  - mtls:
...
---
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRole
metadata: {name: viewer, namespace: default}
spec:
  rules: [{services: ["reviews.default.svc.cluster.local"], methods: [GET]}]
"""

BINDING = """\
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRoleBinding
metadata: {name: viewer, namespace: default}
spec:
  subjects: [{user: "cluster.local/ns/default/sa/productpage"}]
  roleRef: {kind: ServiceRole, name: viewer}
"""


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_convert_replaces_legacy_documents_and_keeps_the_rest(runner: CliRunner, tmp_path: Path) -> None:
    source = tmp_path / "mesh.yaml"
    source.write_text(MIXED)
    result = runner.invoke(app, ["convert", str(source)])
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        MIXED.split("---\n")[0]
        + "---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n  name: default\n"
        "  namespace: istio-system\nspec:\n  mtls:\n    mode: STRICT\n"
    )
    # the role alone grants nothing (no binding): it is reported, and it vanishes from the output
    assert "SBX203" in result.stderr and "no ServiceRoleBinding refers to this ServiceRole" in result.stderr
    reloaded = load_text(result.stdout, "out.yaml")
    assert reloaded.diagnostics == ()


def test_files_are_converted_together_so_bindings_find_their_roles(runner: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(MIXED)
    (tmp_path / "b.yaml").write_text(BINDING)
    result = runner.invoke(app, ["convert", str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml")])
    assert result.exit_code == 0, result.output
    assert result.stdout.count("# Source: ") == 2
    assert result.stdout.endswith(
        "# Source: " + str(tmp_path / "b.yaml") + "\n"
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: viewer\n  namespace: default\n"
        "spec:\n  selector:\n    matchLabels:\n      app: reviews\n  rules:\n  - from:\n    - source:\n"
        "        principals:\n        - cluster.local/ns/default/sa/productpage\n    to:\n    - operation:\n"
        "        methods:\n        - GET\n  action: ALLOW\n"
    )
    assert "SBX202" in result.stderr and "no ClusterRbacConfig" in result.stderr


def test_a_file_with_errors_exits_1_and_reports_on_stderr(runner: CliRunner, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BINDING.replace("kind: ServiceRoleBinding", "kind: ServiceRoleBinding\n  oops: ["))
    result = runner.invoke(app, ["convert", str(bad)])
    assert result.exit_code == 1
    assert f"{bad}:" in result.stderr and "SBX001" in result.stderr


def test_a_legacy_document_that_does_not_load_is_kept_as_written(runner: CliRunner, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(MIXED.replace("spec:\n  peers:\n  - mtls:\n", "spec: mtls\n"))
    result = runner.invoke(app, ["convert", str(broken)])
    assert result.exit_code == 1 and "SBX003" in result.stderr
    assert "kind: MeshPolicy\nmetadata:\n  name: default\nspec: mtls\n" in result.stdout


def test_unusable_arguments_exit_2(runner: CliRunner, tmp_path: Path) -> None:
    assert runner.invoke(app, ["convert", str(tmp_path / "missing.yaml")]).exit_code == 2
    assert runner.invoke(app, ["convert"]).exit_code == 2


def test_stdin(runner: CliRunner) -> None:
    result = runner.invoke(app, ["convert", "-"], input=BINDING)
    assert result.exit_code == 0
    assert result.stdout == ""  # its ServiceRole is elsewhere: the binding alone grants nothing
    assert "<stdin>:" in result.stderr and "refers to ServiceRole default/viewer" in result.stderr
