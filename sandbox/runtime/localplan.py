"""The local runtime's plan: every host process of a mesh, with its command line, environment,
ports, log file and readiness probe, worked out before anything starts (pure; ports come from an
injected allocator, so tests see stable numbers).

Per workload replica an app (x-sandbox.local.command) and its sidecar; the ingress and egress
gateways; the control plane; Prometheus when installed; the console when available. The app's command runs in
the compose file's directory (or x-sandbox.local.cwd, relative to it); a relative path among its
words that names a file there is made absolute, and a leading `python`/`python3` becomes the
Python running sandbox, so apps can import what sandbox's environment has (aiohttp, ...).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from sandbox.mesh.names import node_name
from sandbox.mesh.topology import EGRESS_GATEWAY, Interception, Topology, Workload
from sandbox.runtime.base import PROXY_SUFFIX, ComponentKind
from sandbox.runtime.consoletoken import TOKEN_ENV
from sandbox.runtime.project import ProxyRecord
from sandbox.runtime.supervisor import Probe, ProcessSpec

LOOPBACK = "127.0.0.1"
PYTHON_NAMES = ("python", "python3")
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
SCRAPE_INTERVAL = "5s"


@dataclass(frozen=True)
class Tools:
    """What the host offers, found by the caller (local.py) so the plan stays pure."""

    python: str  # sys.executable
    prometheus: str | None = None  # path of the prometheus binary, None when not installed
    console: bool = False  # `sandbox console` exists in this version
    zipkin: str | None = None  # a running Jaeger's Zipkin endpoint; None: the console collects spans
    jaeger_ui: str | None = None  # that Jaeger's query UI
    left_out: tuple[str, ...] = ()  # optional components the caller chose not to run ("prometheus", "console")
    console_port: int | None = None  # Kiali's 20001 when it was free; None: any free port
    console_token: str | None = None  # what the console asks of a browser that writes (consoletoken.py)


@dataclass(frozen=True)
class Paths:
    compose_file: Path
    istio_dir: Path
    ca_dir: Path
    logs_dir: Path
    run_dir: Path  # .sandbox/local: generated files (endpoints.json, prometheus.yml, ...)

    @property
    def endpoints_file(self) -> Path:
        return self.run_dir / "endpoints.json"

    @property
    def prometheus_config(self) -> Path:
        return self.run_dir / "prometheus.yml"

    @property
    def prometheus_data(self) -> Path:
        return self.run_dir / "prometheus-data"


@dataclass
class LocalPlan:
    specs: list[ProcessSpec] = field(default_factory=list)
    endpoints: dict[str, list[str]] = field(default_factory=dict)  # workload -> sidecar inbound per replica
    proxies: list[ProxyRecord] = field(default_factory=list)
    urls: dict[str, str | None] = field(default_factory=dict)
    control_plane: str = ""
    files: dict[str, str] = field(default_factory=dict)  # path -> text to write before starting
    warnings: list[str] = field(default_factory=list)
    stats_targets: list[tuple[str, str, str]] = field(default_factory=list)  # (node, workload, host:port)

    def spec(self, name: str) -> ProcessSpec:
        return next(s for s in self.specs if s.name == name)


Allocate = Callable[[], int]
TokenFor = Callable[[Workload], str]


def clean_env(base: Mapping[str, str]) -> dict[str, str]:
    """The caller's environment without proxy settings (a sidecar must reach the control plane and
    apps must use their own sidecar, not a corporate proxy), unbuffered for timely logs."""
    env = {k: v for k, v in base.items() if k.upper() not in PROXY_VARIABLES}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def app_command(command: tuple[str, ...], directory: Path, python: str) -> tuple[str, ...]:
    words = list(command)
    if words and words[0] in PYTHON_NAMES:
        words[0] = python
    for i, word in enumerate(words):
        if word and not word.startswith("-") and not Path(word).is_absolute() and (directory / word).exists():
            words[i] = str((directory / word).resolve())
    return tuple(words)


def build(
    topology: Topology,
    paths: Paths,
    tools: Tools,
    base_env: Mapping[str, str],
    allocate: Allocate,
    token_for: TokenFor,
) -> LocalPlan:
    plan = LocalPlan()
    env = clean_env(base_env)
    sandbox: tuple[str, ...] = (tools.python, "-m", "sandbox")
    directory = paths.compose_file.parent

    cp_port = allocate()
    plan.control_plane = f"http://{LOOPBACK}:{cp_port}"
    plan.specs.append(
        ProcessSpec(
            "controlplane",
            ComponentKind.CONTROL_PLANE,
            (
                *sandbox,
                "controlplane",
                *("--istio", str(paths.istio_dir), "--compose", str(paths.compose_file)),
                *("--state-dir", str(paths.ca_dir), "--bind", LOOPBACK, "--port", str(cp_port)),
                *("--endpoints", str(paths.endpoints_file)),
            ),
            env,
            str(directory),
            str(paths.logs_dir / "controlplane.log"),
            Probe("http", LOOPBACK, cp_port, "/ready"),
            f"{LOOPBACK}:{cp_port}",
        )
    )

    console_port = (tools.console_port or allocate()) if tools.console else None
    zipkin = tools.zipkin or (f"http://{LOOPBACK}:{console_port}/api/v2/spans" if console_port else None)

    for workload in topology.workloads:
        if workload.builtin:
            continue
        if workload.inject and workload.interception is Interception.IPTABLES:
            plan.warnings.append(
                f"workload '{workload.name}' asks for x-sandbox.interception: iptables; the local runtime captures "
                "its outbound traffic through HTTP_PROXY only (transparent capture needs --runtime compose)"
            )
        replicas = []
        for replica in range(workload.replicas):
            node = node_name(workload.name, replica, workload.replicas)
            app_port = allocate()
            app_env = {**env, "PORT": str(app_port)}
            if workload.inject:
                proxy, outbound, inbound = _sidecar(
                    plan, workload, node, replica, sandbox, env, paths, allocate, token_for, zipkin
                )
                plan.specs.append(_with_args(proxy, "--app-address", f"{LOOPBACK}:{app_port}"))
                proxy_url = f"http://{LOOPBACK}:{outbound}"
                no_proxy = "localhost,127.0.0.1"
                app_env |= {  # HTTPS_PROXY: the sidecar answers CONNECT with a tunnel under the egress rules
                    "HTTP_PROXY": proxy_url,
                    "http_proxy": proxy_url,
                    "HTTPS_PROXY": proxy_url,
                    "https_proxy": proxy_url,
                    "NO_PROXY": no_proxy,
                    "no_proxy": no_proxy,
                }
                replicas.append(f"{LOOPBACK}:{inbound}")
            else:
                replicas.append(f"{LOOPBACK}:{app_port}")
            local = workload.local
            app_env |= dict(local.env) if local else {}
            cwd = (directory / local.cwd).resolve() if local and local.cwd else directory
            plan.specs.append(
                ProcessSpec(
                    node,
                    ComponentKind.APP,
                    app_command(local.command if local else (), directory, tools.python),
                    app_env,
                    str(cwd),
                    str(paths.logs_dir / f"{node}.log"),
                    Probe("tcp", LOOPBACK, app_port),
                    f"{LOOPBACK}:{app_port}",
                    workload.name,
                )
            )
        plan.endpoints[workload.name] = replicas

    gateway = topology.ingress
    ingress = gateway.port or 8080
    spec, _, inbound = _sidecar(plan, gateway, gateway.name, 0, sandbox, env, paths, allocate, token_for, zipkin)
    # The gateway's HTTPS listener (Gateway port 443) on a free port, never a fixed one two meshes would share
    https = allocate()
    plan.specs.append(_with_args(spec, "--port-map", f"80={ingress}", "--port-map", f"443={https}"))
    plan.endpoints[gateway.name] = [f"{LOOPBACK}:{inbound}"]
    plan.urls["ingress"] = f"http://{LOOPBACK}:{ingress}"
    plan.urls["https"] = f"https://{LOOPBACK}:{https}"
    egress = topology.workload(EGRESS_GATEWAY)
    if egress is not None and egress.builtin:
        _egress_gateway(plan, egress, sandbox, env, paths, allocate, token_for, zipkin)

    plan.urls["prometheus"] = None
    if tools.prometheus:
        port = allocate()
        plan.files[str(paths.prometheus_config)] = prometheus_config(plan.stats_targets, f"{LOOPBACK}:{cp_port}")
        plan.specs.append(
            ProcessSpec(
                "prometheus",
                ComponentKind.PROMETHEUS,
                (
                    tools.prometheus,
                    f"--config.file={paths.prometheus_config}",
                    f"--storage.tsdb.path={paths.prometheus_data}",
                    f"--web.listen-address={LOOPBACK}:{port}",
                    *("--storage.tsdb.retention.time=1d", "--log.level=warn"),
                ),
                env,
                str(paths.run_dir),
                str(paths.logs_dir / "prometheus.log"),
                Probe("http", LOOPBACK, port, "/-/ready"),
                f"{LOOPBACK}:{port}",
            )
        )
        plan.urls["prometheus"] = f"http://{LOOPBACK}:{port}"
    elif "prometheus" not in tools.left_out:
        plan.warnings.append(
            "Prometheus is not installed, so metrics are off (the console's graph stays empty): "
            "install it (apt-get install prometheus, or brew install prometheus) and run `sandbox up` again"
        )

    plan.urls["console"] = None
    plan.urls["tracing"] = tools.jaeger_ui
    if console_port is not None:
        argv = (*sandbox, "console", "--control-plane", plan.control_plane, "--port", str(console_port))
        argv += ("--bind", LOOPBACK, "--file", str(paths.compose_file), "--istio", str(paths.istio_dir))
        if plan.urls["prometheus"]:
            argv += ("--prometheus", str(plan.urls["prometheus"]))
        if tools.jaeger_ui:
            argv += ("--tracing", tools.jaeger_ui)
        plan.specs.append(
            ProcessSpec(
                "console",
                ComponentKind.CONSOLE,
                argv,
                {**env, TOKEN_ENV: tools.console_token} if tools.console_token else env,
                str(directory),
                str(paths.logs_dir / "console.log"),
                Probe("http", LOOPBACK, console_port, "/healthz/ready"),
                f"{LOOPBACK}:{console_port}",
            )
        )
        plan.urls["console"] = f"http://{LOOPBACK}:{console_port}"
        plan.urls["tracing"] = tools.jaeger_ui or plan.urls["console"]
    plan.files[str(paths.endpoints_file)] = json.dumps(plan.endpoints, indent=2, sort_keys=True) + "\n"
    return plan


def _sidecar(
    plan: LocalPlan,
    workload: Workload,
    node: str,
    replica: int,
    sandbox: tuple[str, ...],
    env: dict[str, str],
    paths: Paths,
    allocate: Allocate,
    token_for: TokenFor,
    zipkin: str | None,
) -> tuple[ProcessSpec, int, int]:
    """A sidecar's spec (the ingress gateway's too) with its outbound and inbound ports."""
    outbound, inbound, admin, stats, ready = (allocate() for _ in range(5))
    argv = (*sandbox, "proxy", "--control-plane", plan.control_plane, "--node", node)
    argv += ("--workload", workload.name, "--namespace", workload.namespace)
    argv += ("--service-account", workload.service_account, "--bind", LOOPBACK)
    argv += ("--outbound-port", str(outbound), "--inbound-port", str(inbound), "--admin-port", str(admin))
    argv += ("--stats-port", str(stats), "--ready-port", str(ready))
    if zipkin:
        argv += ("--zipkin", zipkin)
    outbound_url = "" if workload.builtin else f"http://{LOOPBACK}:{outbound}"  # a gateway has no outbound listener
    admin_url = f"http://{LOOPBACK}:{admin}"
    plan.proxies.append(ProxyRecord(node, workload.name, workload.namespace, replica, admin_url, outbound_url))
    plan.stats_targets.append((node, workload.name, f"{LOOPBACK}:{stats}"))
    component = node if workload.builtin else node + PROXY_SUFFIX
    spec = ProcessSpec(
        component,
        ComponentKind.GATEWAY if workload.builtin else ComponentKind.SIDECAR,
        argv,
        {**env, "SANDBOX_TOKEN": token_for(workload)},
        str(paths.compose_file.parent),
        str(paths.logs_dir / f"{component}.log"),
        Probe("http", LOOPBACK, ready, "/healthz/ready"),
        f"{LOOPBACK}:{workload.port or 80}" if workload.builtin else f"{LOOPBACK}:{inbound}",
        workload.name,
    )
    return spec, outbound, inbound


def _egress_gateway(
    plan: LocalPlan,
    egress: Workload,
    sandbox: tuple[str, ...],
    env: dict[str, str],
    paths: Paths,
    allocate: Allocate,
    token_for: TokenFor,
    zipkin: str | None,
) -> None:
    """The egress gateway: a listener port per Service port (80, 443), each allocated here and
    named in the endpoints file as `istio-egressgateway:<port>`, where sidecars send its traffic."""
    bound = {p.port: allocate() for p in egress.ports}
    spec, _, inbound = _sidecar(plan, egress, egress.name, 0, sandbox, env, paths, allocate, token_for, zipkin)
    args = [arg for port, at in bound.items() for arg in ("--port-map", f"{port}={at}")]
    first = next(iter(bound.values()), inbound)
    plan.specs.append(replace(_with_args(spec, *args), address=f"{LOOPBACK}:{first}"))
    plan.endpoints[egress.name] = [f"{LOOPBACK}:{inbound}"]
    for port, at in bound.items():
        plan.endpoints[f"{egress.name}:{port}"] = [f"{LOOPBACK}:{at}"]


def _with_args(spec: ProcessSpec, *args: str) -> ProcessSpec:
    return replace(spec, argv=(*spec.argv, *args))


def prometheus_config(targets: list[tuple[str, str, str]], control_plane: str) -> str:
    """prometheus.yml scraping every sidecar's /stats/prometheus and the control plane's /metrics."""
    from sandbox.mesh.yamlsrc import dump_yaml

    config = {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
        "scrape_configs": [
            {
                "job_name": "envoy-stats",  # Istio's job name for sidecar metrics
                "metrics_path": "/stats/prometheus",
                "static_configs": [
                    {"targets": [address], "labels": {"pod": node, "workload": workload}}
                    for node, workload, address in targets
                ],
            },
            {"job_name": "istiod", "metrics_path": "/metrics", "static_configs": [{"targets": [control_plane]}]},
        ],
    }
    return "# Generated by sandbox up (local runtime); rewritten on every up.\n" + dump_yaml(config)
