"""`sandbox render` and `sandbox inject` as a user runs them (no engine needed)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from sandbox.cli import app
from sandbox.mesh.yamlsrc import parse_documents

COMPOSE = """
services:
  web:
    image: sandbox:latest
    labels: {app: web, version: v1}
    x-sandbox: {port: 8000}
"""


def project(tmp_path: Path, text: str = COMPOSE) -> Path:
    (tmp_path / "istio").mkdir()
    (tmp_path / "compose.yaml").write_text(text)
    return tmp_path / "compose.yaml"


def test_render_writes_the_project_into_the_output_directory(tmp_path: Path) -> None:
    compose = project(tmp_path)
    result = CliRunner().invoke(app, ["render", "-f", str(compose), "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    written = (tmp_path / "out" / "docker-compose.yaml").read_text()
    assert "network_mode: service:web-proxy" in written
    assert (tmp_path / "out" / "prometheus.yml").is_file()
    assert (tmp_path / "out" / "docker-compose.yaml").stat().st_mode & 0o077 == 0  # it holds tokens
    assert "docker compose -p" in result.output


def test_inject_prints_the_meshed_compose_file(tmp_path: Path) -> None:
    compose = project(tmp_path)
    result = CliRunner().invoke(app, ["inject", "-f", str(compose), "--tracing", "off"])
    assert result.exit_code == 0, result.output
    documents, problems = parse_documents(result.stdout, "stdout")
    assert not problems
    services = documents[0].data["services"]
    assert services["web"]["network_mode"] == "service:web-proxy"
    assert len(services["web-proxy"]["environment"]["SANDBOX_TOKEN"]) == 64  # minted from the mesh secret
    assert "--zipkin" not in services["web-proxy"]["command"]


def test_a_compose_file_with_errors_is_reported_not_rendered(tmp_path: Path) -> None:
    compose = project(tmp_path, COMPOSE.replace("version: v1", "version: ''"))
    result = CliRunner().invoke(app, ["inject", "-f", str(compose)])
    assert result.exit_code == 1
    assert "SBX301" in result.stderr and "compose.yaml" in result.stderr


def test_unusable_arguments_exit_2(tmp_path: Path) -> None:
    compose = project(tmp_path)
    assert CliRunner().invoke(app, ["render", "-f", str(compose), "--tracing", "zipkin"]).exit_code == 2
    assert CliRunner().invoke(app, ["inject", "-f", str(tmp_path / "missing.yaml")]).exit_code == 2
