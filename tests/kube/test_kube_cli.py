"""`sandbox export kubernetes` and `sandbox import kubernetes`: files, reports on stderr, exit codes."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from sandbox.cli import app
from tests.kube.kube_helpers import SAMPLES, UPSTREAM_BOOKINFO

BUILT = """\
services:
  api-v1:
    build: ./api
    labels: {app: api, version: v1}
    volumes: ["./data:/data"]
    x-sandbox: {port: 8080}
"""


def _run(*args: str, stdin: str | None = None):
    return CliRunner().invoke(app, list(args), input=stdin)


def test_export_writes_the_manifests_and_says_how_to_apply_them(tmp_path: Path) -> None:
    out = tmp_path / "k8s"
    result = _run("export", "kubernetes", "-f", str(SAMPLES / "bookinfo/compose.yaml"), "-o", str(out))
    assert result.exit_code == 0, result.output
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == [
        "deployments.yaml",
        "istio/bookinfo-gateway.yaml",
        "kustomization.yaml",
        "namespaces.yaml",
        "serviceaccounts.yaml",
        "services.yaml",
    ]
    assert f"kubectl apply -k {out}" in result.stdout
    # the sample's `volumes` mount of its apps is named on stderr with its line
    assert "compose.yaml:20:5: warning SBX600 'volumes' of workload 'productpage-v1'" in result.stderr


def test_export_names_a_locally_built_image_in_its_output(tmp_path: Path) -> None:
    project = tmp_path / "shop"
    project.mkdir()
    (project / "compose.yaml").write_text(BUILT)
    result = _run("export", "kubernetes", "-f", str(project / "compose.yaml"), "-o", str(tmp_path / "k8s"))
    assert result.exit_code == 0, result.output
    assert "Images Compose builds from a local Dockerfile" in result.stdout
    assert "push shop-api-v1 to a registry the cluster pulls from" in result.stdout
    assert "compose.yaml:3:5: warning SBX604" in result.stderr
    assert (
        "# api-v1: image shop-api-v1 is built by Compose from ./api" in (tmp_path / "k8s/deployments.yaml").read_text()
    )
    assert "compose.yaml:5:5: warning SBX600 'volumes'" in result.stderr


def test_export_refuses_to_overwrite_without_force_and_fails_on_bad_input(tmp_path: Path) -> None:
    compose = str(SAMPLES / "httpbin/compose.yaml")
    assert _run("export", "kubernetes", "-f", compose, "-o", str(tmp_path)).exit_code == 0
    again = _run("export", "kubernetes", "-f", compose, "-o", str(tmp_path))
    assert again.exit_code == 2 and "use --force" in again.stderr
    assert _run("export", "kubernetes", "-f", compose, "-o", str(tmp_path), "--force").exit_code == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("services:\n  a:\n    labels: {app: a}\n")
    failed = _run("export", "kubernetes", "-f", str(bad), "-o", str(tmp_path / "none"))
    assert failed.exit_code == 1 and "SBX301" in failed.stderr
    assert not (tmp_path / "none").exists()
    missing = _run("export", "kubernetes", "-f", str(tmp_path / "nope.yaml"), "-o", str(tmp_path / "none"))
    assert missing.exit_code == 2
    assert _run("export", "kubernetes", "-f", compose, "-o", str(bad)).exit_code == 2  # not a directory


def test_import_writes_compose_and_istio_and_reports_on_stderr(tmp_path: Path) -> None:
    manifests = tmp_path / "m.yaml"
    manifests.write_text(
        UPSTREAM_BOOKINFO.read_text()
        + "---\n"
        + (SAMPLES / "bookinfo/istio/bookinfo-gateway.yaml").read_text()
        + "---\n"
        + (SAMPLES / "bookinfo/networking/destination-rule-all.yaml").read_text()
    )
    out = tmp_path / "mesh" / "compose.yaml"
    result = _run("import", "kubernetes", str(manifests), "-o", str(out))
    assert result.exit_code == 0, result.output
    assert out.is_file() and sorted(p.name for p in (out.parent / "istio").iterdir()) == ["m.yaml"]
    assert f"{manifests}:189:7: warning SBX600 volumes left out" in result.stderr
    assert "[Deployment/default/reviews-v1 spec/template/spec/volumes]" in result.stderr
    analyzed = _run("analyze", str(out.parent / "istio"), "--compose", str(out))
    assert analyzed.exit_code == 0, analyzed.output
    again = _run("import", "kubernetes", str(manifests), "-o", str(out))
    assert again.exit_code == 2 and "would overwrite" in again.stderr


def test_import_reads_helm_output_from_stdin(tmp_path: Path) -> None:
    out = tmp_path / "compose.yaml"
    result = _run("import", "kubernetes", "-", "-o", str(out), stdin=UPSTREAM_BOOKINFO.read_text())
    assert result.exit_code == 0, result.output
    assert "<stdin>:189:7: warning SBX600" in result.stderr
    assert "reviews-v3:" in out.read_text()


def test_import_exit_codes_for_bad_manifests_and_bad_arguments(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: a}\nspec: {template: {spec: {}}}\n")
    out = tmp_path / "compose.yaml"
    failed = _run("import", "kubernetes", str(bad), "-o", str(out))
    assert failed.exit_code == 1 and "SBX602 Deployment has no app container" in failed.stderr
    assert not out.exists()
    assert _run("import", "kubernetes", str(tmp_path / "nope.yaml")).exit_code == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _run("import", "kubernetes", str(empty)).exit_code == 2
