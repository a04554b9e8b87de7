"""The rendered Compose project: a golden file for a small mesh, and the rules it must keep.

Regenerate the golden files after a deliberate change with
`SANDBOX_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/runtime/test_render.py`, then review the diff.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import typer.main

from sandbox.cli import app
from sandbox.mesh.topology import parse_compose
from sandbox.mesh.yamlsrc import parse_documents
from sandbox.runtime.compose_render import Images, Rendered, RenderError, RenderOptions, render
from tests.conftest import require

GOLDEN = Path(__file__).parent / "golden" / "small-mesh"
SMALL = """
x-sandbox: {ingress: {port: 18080}}
services:
  web:
    image: sandbox:latest
    labels: {app: web, version: v1}
    environment: [UPSTREAM=http://api:9080/]
    ports: ["127.0.0.1:18000:8000"]
    hostname: web-host
    x-sandbox: {port: 8000}
  api-v1:
    image: sandbox:latest
    labels: {app: api, version: v1}
    x-sandbox: {port: 9080, serviceAccount: api}
"""


def render_text(text: str, directory: Path = GOLDEN, **options: Any) -> Rendered:
    topology = parse_compose(text, str(directory / "compose.yaml"))
    assert not [d for d in topology.diagnostics if d.severity == "error"]
    settings = RenderOptions(
        directory,
        directory / "compose.yaml",
        directory / "istio",
        directory / ".sandbox" / "state",
        directory / ".sandbox" / "compose",
        **options,
    )
    return render(text, topology, settings, lambda w: f"token-{w.name}")


def services(rendered: Rendered) -> dict[str, Any]:
    documents, problems = parse_documents(rendered.compose_text, "docker-compose.yaml")
    assert not problems
    result: dict[str, Any] = documents[0].data["services"]
    return result


@pytest.mark.parametrize("name", ["docker-compose.yaml", "prometheus.yml"])
def test_golden_small_mesh(name: str) -> None:
    rendered = render_text(
        (GOLDEN / "compose.yaml").read_text(),
        images=Images(prometheus="sandbox-base:offline", debian_prometheus=True),
        tracing="jaeger",
        console=True,
    )
    golden = GOLDEN / f"{name}.golden"
    text = rendered.files[name].replace(str(GOLDEN.resolve()), "$PROJECT")  # the checkout's place varies
    if os.environ.get("SANDBOX_UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text(), f"regenerate with SANDBOX_UPDATE_GOLDEN=1 and review {golden}"


def test_the_golden_file_is_a_compose_file_compose_accepts(tmp_path: Path) -> None:
    v1 = shutil.which("docker-compose")
    require(v1 is not None, "docker-compose is not installed")
    assert v1 is not None
    (tmp_path / "apps").mkdir()
    shutil.copy(GOLDEN / "compose.yaml", tmp_path / "compose.yaml")
    rendered = render_text((GOLDEN / "compose.yaml").read_text(), tmp_path)
    target = tmp_path / "out.yaml"
    target.write_text(rendered.compose_text)
    done = subprocess.run(
        [v1, "-p", "golden", "--project-directory", str(tmp_path), "-f", str(target), "config", "-q"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_the_app_joins_its_sidecar_which_takes_the_network_settings() -> None:
    found = services(render_text(SMALL))
    web, sidecar = found["web"], found["web-proxy"]
    assert web["network_mode"] == "service:web-proxy"
    for key in ("ports", "networks", "hostname"):
        assert key not in web
    assert "127.0.0.1:18000:8000" in sidecar["ports"]
    assert "127.0.0.1::15000" in sidecar["ports"]  # the admin port, on an ephemeral host port
    assert sidecar["hostname"] == "web-host"
    assert web["depends_on"]["web-proxy"] == {"condition": "service_healthy"}
    assert web["image"] == "sandbox:latest" and web["labels"] == {"app": "web", "version": "v1"}


def test_the_app_reaches_the_mesh_through_its_sidecar() -> None:
    web = services(render_text(SMALL))["web"]
    assert web["environment"]["UPSTREAM"] == "http://api:9080/"  # the list form became a map
    environment = web["environment"]
    assert environment["HTTP_PROXY"] == environment["http_proxy"] == "http://127.0.0.1:15001"
    assert environment["HTTPS_PROXY"] == environment["https_proxy"] == "http://127.0.0.1:15001"  # CONNECT tunnels
    assert "127.0.0.1" in environment["NO_PROXY"].split(",") and environment["no_proxy"] == environment["NO_PROXY"]


def test_the_sidecar_answers_for_its_node_and_its_service() -> None:
    sidecar = services(render_text(SMALL))["api-v1-proxy"]
    aliases = sidecar["networks"]["default"]["aliases"]
    assert aliases[0] == "api-v1"  # where the control plane's endpoint api-v1:15006 points
    assert "api" in aliases and "api.default.svc.cluster.local" in aliases


def test_sidecar_commands_use_options_the_cli_has() -> None:
    proxy_options = _options("proxy")
    found = services(render_text(SMALL))
    for name in ("web-proxy", "istio-ingressgateway", "istio-egressgateway"):
        command = found[name]["command"]
        assert command[:2] == ["sandbox", "proxy"]
        assert {arg for arg in command if arg.startswith("--")} <= proxy_options, name
    assert "--port-map" in found["istio-ingressgateway"]["command"]
    command = found["controlplane"]["command"]
    assert {arg for arg in command if arg.startswith("--")} <= _options("controlplane")
    assert command[command.index("--endpoint-port") + 1] == "15006"


def _options(command: str) -> set[str]:
    click_app = typer.main.get_command(app)
    params = click_app.commands[command].params  # type: ignore[attr-defined]
    return {opt for param in params for opt in param.opts if opt.startswith("--")}


def test_iptables_interception_adds_an_init_container_with_the_redirect_rules() -> None:
    text = SMALL.replace(
        "{port: 9080, serviceAccount: api}", "{port: 9080, serviceAccount: api, interception: iptables}"
    )
    found = services(render_text(text))
    init, app_ = found["api-v1-init"], found["api-v1"]
    assert init["network_mode"] == "service:api-v1-proxy"
    assert "NET_ADMIN" in init["cap_add"]
    script = init["command"][-1]
    assert "--dport 9080 -j REDIRECT --to-ports 15006" in script
    assert "--uid-owner 1337 -j RETURN" in script
    assert "-j REDIRECT --to-ports 15001" in script
    assert app_["depends_on"]["api-v1-init"] == {"condition": "service_completed_successfully"}
    assert "HTTP_PROXY" not in app_["environment"]  # transparent: the app is not told
    assert found["api-v1-proxy"]["user"] == "1337"  # the uid the rules let out


def test_replicas_get_a_sidecar_each_and_dependencies_fan_out() -> None:
    text = SMALL.replace("{port: 9080, serviceAccount: api}", "{port: 9080, serviceAccount: api, replicas: 2}")
    text = text.replace("    x-sandbox: {port: 8000}", "    depends_on: [api-v1]\n    x-sandbox: {port: 8000}")
    found = services(render_text(text))
    assert "api-v1" not in found
    assert found["api-v1-1"]["network_mode"] == "service:api-v1-1-proxy"
    assert found["api-v1-2"]["network_mode"] == "service:api-v1-2-proxy"
    assert {"api-v1-1", "api-v1-2"} <= set(found["web"]["depends_on"])


def test_sidecars_share_the_apps_profiles() -> None:
    text = SMALL.replace(
        "    x-sandbox: {port: 9080, serviceAccount: api}", "    profiles: [canary]\n    x-sandbox: {port: 9080}"
    )
    found = services(render_text(text))
    assert found["api-v1-proxy"]["profiles"] == ["canary"] == found["api-v1"]["profiles"]


def test_output_order_does_not_depend_on_the_input_order() -> None:
    lines = SMALL.splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.startswith("  api-v1:"))
    swapped = "".join(lines[:3] + lines[start:] + lines[3:start])
    assert swapped != SMALL
    assert render_text(swapped).compose_text == render_text(SMALL).compose_text


def test_prometheus_scrapes_every_sidecar_and_the_control_plane() -> None:
    text = render_text(SMALL).files["prometheus.yml"]
    for target in ("controlplane:15010", "web:15020", "api-v1:15020", "istio-ingressgateway:15020"):
        assert f'"{target}"' in text
    assert "metrics_path: /stats/prometheus" in text


def test_tracing_goes_where_it_is_told() -> None:
    assert "jaeger" in services(render_text(SMALL, tracing="jaeger"))
    quiet = services(render_text(SMALL, tracing=None))
    assert "jaeger" not in quiet and "--zipkin" not in quiet["web-proxy"]["command"]
    console = services(render_text(SMALL, tracing="console", console=True))
    assert "http://console:9411/api/v2/spans" in console["web-proxy"]["command"]
    assert console["console"]["command"][-2:] == ["--zipkin-port", "9411"]
    assert {a for a in console["console"]["command"] if a.startswith("--")} <= _options("console")


def test_the_console_is_published_on_kialis_port_when_up_found_it_free() -> None:
    assert services(render_text(SMALL, console=True))["console"]["ports"] == ["127.0.0.1::20001"]  # ephemeral
    fixed = services(render_text(SMALL, console=True, console_host_port=20001))
    assert fixed["console"]["ports"] == ["127.0.0.1:20001:20001"]


def test_a_service_name_sandbox_needs_is_refused() -> None:
    text = SMALL + "  web-proxy:\n    image: nginx\n"
    with pytest.raises(RenderError, match="web-proxy"):
        render_text(text)


def test_the_egress_gateway_answers_for_its_service_on_the_project_network() -> None:
    found = services(render_text(SMALL))
    egress = found["istio-egressgateway"]
    # no port map: the proxy's default (80 -> 8080, 443 -> 8443) is its Service's targetPorts
    assert "--port-map" not in egress["command"] and egress["user"] == "1337"
    assert egress["networks"]["default"]["aliases"] == ["istio-egressgateway.istio-system.svc.cluster.local"]
    assert egress["ports"] == ["127.0.0.1::15000"]  # nothing published but the admin port
    assert render_text(SMALL).services["istio-egressgateway"] == "gateway"


def test_secrets_are_mounted_in_every_proxy_where_the_control_plane_finds_them(tmp_path: Path) -> None:
    outside = tmp_path / "ca.crt"
    text = SMALL.replace(
        "x-sandbox: {ingress: {port: 18080}}",
        f"x-sandbox:\n  ingress: {{port: 18080}}\n  secrets:\n    a: ./certs/a\n    b: {{cacert: {outside}}}",
    )
    found = services(render_text(text))
    expected = [
        # at their host paths, where the control plane (its Compose file at its host path) resolves them
        {"type": "bind", "source": "./certs/a", "target": str((GOLDEN / "certs" / "a").resolve()), "read_only": True},
        {"type": "bind", "source": str(outside), "target": str(outside), "read_only": True},
    ]
    controlplane = found["controlplane"]["volumes"]
    assert [v for v in controlplane if v["source"] in ("./certs/a", str(outside))] == expected
    for name in ("istio-ingressgateway", "istio-egressgateway", "web-proxy", "api-v1-proxy"):
        assert found[name]["volumes"] == expected, name
    assert "volumes" not in found["web"]  # the app sees nothing of them
    assert "volumes" not in services(render_text(SMALL))["web-proxy"]


def test_the_console_writes_the_istio_directory_as_the_hosts_user_with_the_meshs_token() -> None:
    rendered = render_text(SMALL, console=True, console_token="secret-token", host_user="1000:1000")
    console = services(rendered)["console"]
    assert console["environment"] == {"SANDBOX_CONSOLE_TOKEN": "secret-token"}  # never on its command line
    assert "secret-token" not in " ".join(console["command"])
    assert console["user"] == "1000:1000"  # what it writes stays the user's
    istio = next(v for v in console["volumes"] if v["target"] == "/etc/istio/config")
    assert istio == {"type": "bind", "source": "./istio", "target": "/etc/istio/config"}  # writable
    assert (
        console["command"][console["command"].index("--istio") + 1] == "/etc/istio/config"
    )  # the control plane's path
    assert "SANDBOX_CONSOLE_TOKEN" not in rendered.compose_text.split("  console:")[0]
