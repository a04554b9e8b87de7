"""The local runtime's plan: every process, its ports, environment and probe, before anything runs."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from sandbox.mesh.topology import Workload, parse_compose
from sandbox.runtime.base import ComponentKind
from sandbox.runtime.localplan import LocalPlan, Paths, Tools, app_command, build, clean_env

COMPOSE = """
services:
  web:
    labels: {app: web, version: v1}
    x-sandbox:
      port: 8000
      local: {command: [python3, apps/web.py, --flag], env: {MODE: demo}, cwd: apps}
  api-v1:
    labels: {app: api, version: v1}
    x-sandbox: {port: 9000, replicas: 2, local: {command: [./api]}}
  legacy:
    labels: {app: legacy, version: v1}
    x-sandbox: {port: 7000, inject: false, local: {command: [/usr/bin/legacy]}}
x-sandbox:
  ingress: {port: 18080}
"""


def make_plan(tmp_path: Path, tools: Tools | None = None) -> LocalPlan:
    (tmp_path / "apps").mkdir(exist_ok=True)
    (tmp_path / "apps" / "web.py").write_text("")
    (tmp_path / "api").write_text("")
    compose = tmp_path / "compose.yaml"
    topology = parse_compose(COMPOSE, str(compose))
    paths = Paths(compose, tmp_path / "istio", tmp_path / "ca", tmp_path / "logs", tmp_path / "run")
    ports = itertools.count(20000)
    env = {"HOME": "/home/me", "HTTP_PROXY": "http://corp:3128", "https_proxy": "http://corp:3128"}

    def token(w: Workload) -> str:
        return f"token-{w.name}"

    return build(topology, paths, tools or Tools("/venv/bin/python"), env, lambda: next(ports), token)


def test_every_replica_gets_an_app_and_a_sidecar_and_the_mesh_its_parts(tmp_path: Path) -> None:
    plan = make_plan(tmp_path, Tools("/venv/bin/python", prometheus="/usr/bin/prometheus", console=True))
    names = [s.name for s in plan.specs]
    assert names[0] == "controlplane"  # started first, the rest wait for it
    assert set(names) == {
        "controlplane",
        "web",
        "web.proxy",
        "api-v1-1",
        "api-v1-1.proxy",
        "api-v1-2",
        "api-v1-2.proxy",
        "legacy",  # inject: false, so no sidecar
        "istio-ingressgateway",
        "istio-egressgateway",  # always, as in Istio's demo profile
        "prometheus",
        "console",
    }
    ports = [s.probe.port for s in plan.specs if s.probe]
    assert len(ports) == len(set(ports))
    nodes = [p.node for p in plan.proxies]
    assert nodes == ["web", "api-v1-1", "api-v1-2", "istio-ingressgateway", "istio-egressgateway"]
    https = plan.spec("istio-ingressgateway").argv[-1].removeprefix("443=")  # Gateway port 443: a free port
    assert plan.urls == {
        "ingress": "http://127.0.0.1:18080",
        "https": f"https://127.0.0.1:{https}",
        "prometheus": plan.urls["prometheus"],
        "console": plan.urls["console"],
        "tracing": plan.urls["console"],  # the console's built-in collector answers Jaeger's API
    }
    assert plan.warnings == []


def test_the_app_talks_through_its_own_sidecar(tmp_path: Path) -> None:
    plan = make_plan(tmp_path)
    web, proxy = plan.spec("web"), plan.spec("web.proxy")
    outbound = proxy.argv[proxy.argv.index("--outbound-port") + 1]
    assert web.env["HTTP_PROXY"] == web.env["http_proxy"] == f"http://127.0.0.1:{outbound}"
    # HTTPS too: the sidecar tunnels CONNECT, so egress rules cover the app's HTTPS
    assert web.env["HTTPS_PROXY"] == web.env["https_proxy"] == f"http://127.0.0.1:{outbound}"
    assert web.env["NO_PROXY"] == web.env["no_proxy"] == "localhost,127.0.0.1"
    assert proxy.argv[proxy.argv.index("--app-address") + 1] == f"127.0.0.1:{web.env['PORT']}"
    assert web.probe is not None and web.probe.kind == "tcp" and str(web.probe.port) == web.env["PORT"]
    assert web.env["MODE"] == "demo" and web.cwd == str(tmp_path / "apps")
    assert "HTTP_PROXY" not in proxy.env and "https_proxy" not in proxy.env  # never the caller's proxy
    assert proxy.env["SANDBOX_TOKEN"] == "token-web"
    assert "https_proxy" not in plan.spec("legacy").env and "HTTP_PROXY" not in plan.spec("legacy").env


def test_commands_resolve_against_the_compose_directory_with_sandboxs_python(tmp_path: Path) -> None:
    plan = make_plan(tmp_path)
    assert plan.spec("web").argv == ("/venv/bin/python", str(tmp_path / "apps" / "web.py"), "--flag")
    assert plan.spec("api-v1-2").argv == (str(tmp_path / "api"),)
    assert plan.spec("api-v1-2").cwd == str(tmp_path)
    assert plan.spec("legacy").argv == ("/usr/bin/legacy",)


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (("python", "x.py"), ("/py", "X")),
        (("python3", "-m", "http.server"), ("/py", "-m", "http.server")),
        (("python3.11", "x.py"), ("python3.11", "X")),  # only the plain names are replaced
        (("node", "missing.js"), ("node", "missing.js")),
    ],
)
def test_app_command(tmp_path: Path, command: tuple[str, ...], expected: tuple[str, ...]) -> None:
    (tmp_path / "x.py").write_text("")
    resolved = app_command(command, tmp_path, "/py")
    assert resolved == tuple(str(tmp_path / "x.py") if word == "X" else word for word in expected)


def test_the_endpoints_file_lists_each_replicas_inbound_listener(tmp_path: Path) -> None:
    plan = make_plan(tmp_path)
    endpoints = json.loads(plan.files[str(tmp_path / "run" / "endpoints.json")])
    for node in ("api-v1-1", "api-v1-2"):
        proxy = plan.spec(node + ".proxy")
        assert f"127.0.0.1:{proxy.argv[proxy.argv.index('--inbound-port') + 1]}" in endpoints["api-v1"]
    assert endpoints["legacy"] == [plan.spec("legacy").address]  # no sidecar: straight to the app
    cp = plan.spec("controlplane")
    assert cp.argv[cp.argv.index("--endpoints") + 1] == str(tmp_path / "run" / "endpoints.json")


def test_the_gateway_listens_on_the_ingress_port(tmp_path: Path) -> None:
    gateway = make_plan(tmp_path).spec("istio-ingressgateway")
    assert gateway.kind is ComponentKind.GATEWAY
    https = [a for a in gateway.argv if a.startswith("443=")]
    assert "80=18080" in gateway.argv and len(https) == 1 and int(https[0][4:]) > 0  # an allocated, free port
    assert gateway.argv[gateway.argv.index("--namespace") + 1] == "istio-system"


def test_the_egress_gateway_listens_where_the_endpoints_file_sends_sidecars(tmp_path: Path) -> None:
    plan = make_plan(tmp_path)
    egress = plan.spec("istio-egressgateway")
    assert egress.kind is ComponentKind.GATEWAY
    assert egress.argv[egress.argv.index("--service-account") + 1] == "istio-egressgateway-service-account"
    maps = [egress.argv[i + 1] for i, word in enumerate(egress.argv) if word == "--port-map"]
    bound = dict(m.split("=") for m in maps)
    assert set(bound) == {"80", "443"} and len(set(bound.values())) == 2 and "0" not in bound.values()
    endpoints = json.loads(plan.files[str(tmp_path / "run" / "endpoints.json")])
    for port, at in bound.items():  # each Service port of the gateway at the listener that serves it
        assert endpoints[f"istio-egressgateway:{port}"] == [f"127.0.0.1:{at}"]
    assert egress.address == f"127.0.0.1:{bound['80']}"
    taken = [s.probe.port for s in plan.specs if s.probe] + [int(at) for at in bound.values()]
    assert len(taken) == len(set(taken))


def test_without_prometheus_metrics_are_off_with_a_warning(tmp_path: Path) -> None:
    plan = make_plan(tmp_path)
    assert plan.urls["prometheus"] is None and "prometheus" not in [s.name for s in plan.specs]
    assert "apt-get install prometheus" in plan.warnings[0]
    assert plan.urls["console"] is None and plan.urls["tracing"] is None


def test_prometheus_left_out_by_choice_is_no_warning(tmp_path: Path) -> None:
    plan = make_plan(tmp_path, Tools("/py", left_out=("prometheus", "console")))
    assert plan.urls["prometheus"] is None and plan.warnings == []


def test_the_record_has_each_sidecars_outbound_listener(tmp_path: Path) -> None:
    plan = make_plan(tmp_path)
    proxies = {p.node: p for p in plan.proxies}
    web = plan.spec("web.proxy")
    assert proxies["web"].outbound == f"http://127.0.0.1:{web.argv[web.argv.index('--outbound-port') + 1]}"
    assert proxies["istio-ingressgateway"].outbound == ""  # a gateway routes from its own listeners only


def test_prometheus_scrapes_every_sidecar_and_the_control_plane(tmp_path: Path) -> None:
    from sandbox.mesh.yamlsrc import parse_documents

    plan = make_plan(tmp_path, Tools("/py", prometheus="/usr/bin/prometheus"))
    text = plan.files[str(tmp_path / "run" / "prometheus.yml")]
    [document], problems = parse_documents(text, "prometheus.yml")
    assert problems == []
    jobs = {job["job_name"]: job for job in document.data["scrape_configs"]}
    targets = {c["labels"]["pod"]: c["targets"][0] for c in jobs["envoy-stats"]["static_configs"]}
    assert set(targets) == {"web", "api-v1-1", "api-v1-2", "istio-ingressgateway", "istio-egressgateway"}
    proxy = plan.spec("web.proxy")
    assert targets["web"] == f"127.0.0.1:{proxy.argv[proxy.argv.index('--stats-port') + 1]}"
    assert jobs["envoy-stats"]["metrics_path"] == "/stats/prometheus"
    assert jobs["istiod"]["static_configs"][0]["targets"] == [plan.spec("controlplane").address]


def test_clean_env_drops_proxy_settings_in_any_case() -> None:
    env = clean_env({"PATH": "/bin", "http_proxy": "x", "No_Proxy": "y", "ALL_PROXY": "z"})
    assert env == {"PATH": "/bin", "PYTHONUNBUFFERED": "1"}


def test_transparent_interception_is_a_warning_on_the_local_runtime(tmp_path: Path) -> None:
    compose = COMPOSE.replace(
        "x-sandbox: {port: 9000, replicas: 2,", "x-sandbox: {port: 9000, replicas: 2, interception: iptables,"
    )
    (tmp_path / "api").write_text("")
    topology = parse_compose(compose, str(tmp_path / "compose.yaml"))
    paths = Paths(tmp_path / "compose.yaml", tmp_path / "istio", tmp_path / "ca", tmp_path / "logs", tmp_path / "run")
    ports = itertools.count(30000)
    plan = build(topology, paths, Tools("/py", prometheus="/p"), {}, lambda: next(ports), lambda w: "t")
    assert plan.warnings == [
        "workload 'api-v1' asks for x-sandbox.interception: iptables; the local runtime captures its outbound "
        "traffic through HTTP_PROXY only (transparent capture needs --runtime compose)"
    ]
    assert plan.spec("api-v1-1").env["HTTP_PROXY"].startswith("http://127.0.0.1:")


def test_the_console_takes_kialis_port_when_it_was_free(tmp_path: Path) -> None:
    fixed = make_plan(tmp_path, Tools("/py", console=True, console_port=20001))
    assert fixed.urls["console"] == "http://127.0.0.1:20001"
    argv = fixed.spec("console").argv
    assert argv[argv.index("--port") + 1] == "20001"
    assert fixed.spec("console").probe is not None and fixed.spec("console").probe.port == 20001
    # a sidecar sends its spans to the console's collector at that address
    assert "http://127.0.0.1:20001/api/v2/spans" in fixed.spec("web.proxy").argv
    taken = make_plan(tmp_path, Tools("/py", console=True))  # 20001 was taken: the allocator's next port
    assert taken.urls["console"] == f"http://127.0.0.1:{taken.spec('console').probe.port}"  # type: ignore[union-attr]


def test_the_console_gets_the_meshs_token_in_its_environment_and_edits_the_istio_directory(tmp_path: Path) -> None:
    plan = make_plan(tmp_path, Tools("/py", console=True, console_token="secret-token"))
    console = plan.spec("console")
    assert console.env["SANDBOX_CONSOLE_TOKEN"] == "secret-token"
    assert "secret-token" not in " ".join(console.argv)  # a command line is public to every local user
    assert console.argv[console.argv.index("--istio") + 1] == str(tmp_path / "istio")
    assert all("SANDBOX_CONSOLE_TOKEN" not in s.env for s in plan.specs if s.name != "console")
