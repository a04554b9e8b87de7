"""topology: a Compose file -> mesh services and workloads; x-sandbox settings; SBX3xx diagnostics."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox.mesh.diagnostics import Severity
from sandbox.mesh.topology import (
    DEFAULT_INGRESS_PORT,
    Interception,
    OutboundMode,
    empty_topology,
    load_compose,
    parse_compose,
)

COMPOSE = """\
x-sandbox:
  ingress: {port: 9090}
  trustDomain: example.org
  outboundTrafficPolicy: {mode: REGISTRY_ONLY}
services:
  productpage:
    image: bookinfo/productpage:1.18
    labels: [app=productpage, version=v1]
    ports: ["9080:9080"]
    x-sandbox:
      serviceAccount: bookinfo-productpage
      local:
        command: [python, -m, productpage]
        env: {LOG: debug}
        cwd: apps
  reviews-v1:
    image: bookinfo/reviews:1.18
    labels:
      app: reviews
      version: v1
    expose: ["9080"]
  reviews-v2:
    labels: {app: reviews, version: v2, team: blue}
    x-sandbox:
      port: 9080
      namespace: default
      replicas: 3
      inject: false
      interception: iptables
  ratings:
    labels: {app: ratings, version: v1}
    x-sandbox: {port: 9080, namespace: backend}
  postgres:
    image: postgres:16
  redis:
    image: redis
    labels: {tier: cache}
"""


def test_a_service_labelled_app_and_version_is_a_workload_of_the_app() -> None:
    topology = parse_compose(COMPOSE, "compose.yaml")
    assert topology.diagnostics == ()
    names = [w.name for w in topology.workloads]
    assert names[:4] == ["productpage", "reviews-v1", "reviews-v2", "ratings"]
    assert names[4:] == ["istio-ingressgateway", "istio-egressgateway"]  # the built-in gateways
    reviews_v2 = topology.workload("reviews-v2")
    assert reviews_v2 is not None
    assert (reviews_v2.app, reviews_v2.version, reviews_v2.fqdn) == (
        "reviews",
        "v2",
        "reviews.default.svc.cluster.local",
    )
    assert reviews_v2.labels == {"app": "reviews", "version": "v2", "team": "blue"}


def test_labels_as_a_list_work_like_labels_as_a_map() -> None:
    topology = parse_compose(COMPOSE, "compose.yaml")
    productpage = topology.workload("productpage")
    assert productpage is not None
    assert productpage.labels == {"app": "productpage", "version": "v1"}


def test_services_without_mesh_labels_stay_outside_the_mesh() -> None:
    topology = parse_compose(COMPOSE, "compose.yaml")
    assert topology.plain_services == ("postgres", "redis")
    assert topology.workload("postgres") is None


def test_the_x_sandbox_keys_of_a_service() -> None:
    topology = parse_compose(COMPOSE, "compose.yaml")
    productpage, reviews_v1, reviews_v2, ratings = (
        topology.workload(n) for n in ("productpage", "reviews-v1", "reviews-v2", "ratings")
    )
    assert productpage and reviews_v1 and reviews_v2 and ratings
    # defaults: port from Compose, namespace default, service account = app, 1 replica, injected, HTTP_PROXY
    assert (reviews_v1.port, reviews_v1.namespace, reviews_v1.service_account) == (9080, "default", "reviews")
    assert (reviews_v1.replicas, reviews_v1.inject, reviews_v1.interception) == (1, True, Interception.PROXY)
    assert reviews_v1.image == "bookinfo/reviews:1.18" and reviews_v1.local is None
    # each key of x-sandbox
    assert productpage.port == 9080  # from `ports: ["9080:9080"]`
    assert productpage.service_account == "bookinfo-productpage"
    assert productpage.local is not None
    assert productpage.local.command == ("python", "-m", "productpage")
    assert (productpage.local.env, productpage.local.cwd) == ({"LOG": "debug"}, "apps")
    assert (reviews_v2.port, reviews_v2.replicas, reviews_v2.inject) == (9080, 3, False)
    assert reviews_v2.interception is Interception.IPTABLES
    assert (ratings.namespace, ratings.fqdn) == ("backend", "ratings.backend.svc.cluster.local")


@pytest.mark.parametrize(
    ("ports", "port"),
    [
        ('ports: ["8000:8080"]', 8080),  # the container side counts
        ('ports: ["127.0.0.1:8000:8080/tcp"]', 8080),
        ("ports: [{target: 7070, published: 80}]", 7070),
        ('expose: ["5000"]', 5000),
        ("ports: [8080]", 8080),
        ('x-sandbox: {port: 1234}\n    ports: ["8000:8080"]', 1234),  # x-sandbox wins
    ],
)
def test_the_port_comes_from_x_sandbox_or_compose(ports: str, port: int) -> None:
    topology = parse_compose(f"services:\n  a:\n    labels: {{app: a, version: v1}}\n    {ports}\n", "c.yaml")
    workload = topology.workload("a")
    assert workload is not None and workload.port == port
    assert topology.diagnostics == ()


def test_the_mesh_wide_x_sandbox_settings() -> None:
    topology = parse_compose(COMPOSE, "compose.yaml")
    settings = topology.settings
    assert settings.ingress_port == 9090
    assert settings.trust_domain_or_default == "example.org"
    assert settings.outbound_mode is OutboundMode.REGISTRY_ONLY
    gateway = topology.workload("istio-ingressgateway")
    assert gateway is not None and gateway.builtin
    assert (gateway.namespace, gateway.port) == ("istio-system", 9090)
    assert gateway.labels == {"istio": "ingressgateway", "app": "istio-ingressgateway"}


def test_the_egress_gateway_is_built_in_with_istios_service_ports() -> None:
    topology = parse_compose(COMPOSE, "compose.yaml")
    gateway = topology.workload("istio-egressgateway")
    assert gateway is not None and gateway.builtin and gateway.port is None
    assert (gateway.namespace, gateway.service_account) == ("istio-system", "istio-egressgateway-service-account")
    assert gateway.labels == {"istio": "egressgateway", "app": "istio-egressgateway"}
    # the demo profile's Service: 80 -> 8080 and 443 -> 8443; sidecars route to it, not to the ingress
    assert [(p.name, p.port, gateway.target_port(p.port)) for p in gateway.ports] == [
        ("http2", 80, 8080),
        ("https", 443, 8443),
    ]
    (service,) = topology.gateway_services
    assert (service.fqdn, service.workloads) == ("istio-egressgateway.istio-system.svc.cluster.local", (gateway.name,))
    assert all(s.name != "istio-egressgateway" for s in topology.services)  # not a Compose service


@pytest.mark.parametrize(("port", "valid"), [(1, True), (65535, True), (0, False), (65536, False)])
def test_ports_at_the_edges_of_the_range(port: int, valid: bool) -> None:
    text = f"x-sandbox: {{ingress: {{port: {port}}}}}\nservices:\n  a:\n    labels: {{app: a, version: v1}}\n"
    topology = parse_compose(text + f"    ports: ['9080']\n    x-sandbox: {{port: {port}}}\n", "compose.yaml")
    workload = topology.workload("a")
    assert workload is not None
    assert (workload.port, topology.settings.ingress_port) == ((port, port) if valid else (None, DEFAULT_INGRESS_PORT))
    assert [d.code for d in topology.diagnostics] == ([] if valid else ["SBX306", "SBX306"])


def test_defaults_without_settings() -> None:
    for topology in (parse_compose("services: {}\n", "c.yaml"), empty_topology()):
        assert topology.settings.ingress_port == DEFAULT_INGRESS_PORT
        assert topology.settings.trust_domain_or_default == "cluster.local"
        assert topology.settings.outbound_mode is OutboundMode.ALLOW_ANY
        assert [w.name for w in topology.workloads] == ["istio-ingressgateway", "istio-egressgateway"]
        assert topology.namespaces == {"istio-system"}


def test_services_group_workloads_by_app_and_namespace() -> None:
    topology = parse_compose(COMPOSE, "compose.yaml")
    assert [(s.name, s.namespace, s.port, s.workloads) for s in topology.services] == [
        ("productpage", "default", 9080, ("productpage",)),
        ("ratings", "backend", 9080, ("ratings",)),
        ("reviews", "default", 9080, ("reviews-v1", "reviews-v2")),
    ]
    assert topology.service("reviews.default.svc.cluster.local") is not None
    assert topology.service("reviews.backend.svc.cluster.local") is None
    assert topology.namespaces == {"default", "backend", "istio-system"}


def test_workload_selectors_match_labels() -> None:
    topology = parse_compose(COMPOSE, "compose.yaml")
    reviews_v2 = topology.workload("reviews-v2")
    assert reviews_v2 is not None
    assert reviews_v2.matches({"app": "reviews"}) and reviews_v2.matches({"app": "reviews", "team": "blue"})
    assert not reviews_v2.matches({"app": "reviews", "version": "v1"})
    assert not reviews_v2.matches({})  # an empty selector selects nothing here: the caller decides what it means


def test_a_workload_remembers_its_lines() -> None:
    topology = parse_compose(COMPOSE, "compose.yaml")
    reviews_v2 = topology.workload("reviews-v2")
    assert reviews_v2 is not None
    assert (reviews_v2.origin.file, reviews_v2.origin.line) == ("compose.yaml", 22)
    assert reviews_v2.origin.position("x-sandbox/replicas") == (27, 7)


@pytest.mark.parametrize(
    ("services", "code", "severity", "line", "path", "message"),
    [
        (
            "  a:\n    labels: {app: a}\n",
            "SBX301", Severity.ERROR, 3, "services/a/labels",
            "service 'a' has label 'app' but no 'version' label: a mesh workload needs both",
        ),
        (
            "  a:\n    labels: [version=v1]\n",
            "SBX301", Severity.ERROR, 3, "services/a/labels",
            "service 'a' has label 'version' but no 'app' label: a mesh workload needs both",
        ),
        (
            "  a:\n    labels: {app: a, version: v1}\n",
            "SBX302", Severity.WARNING, 2, "services/a",
            "workload 'a' has no port (set x-sandbox.port): nothing can reach it through the mesh",
        ),
        (
            "  a:\n    labels: {app: a, version: v1}\n    x-sandbox: {port: 80, replicas: -1}\n",
            "SBX303", Severity.ERROR, 4, "services/a/x-sandbox/replicas", "replicas must be 0 or more, got -1",
        ),
        (
            "  a1:\n    labels: {app: a, version: v1}\n    x-sandbox: {port: 80}\n"
            "  a2:\n    labels: {app: a, version: v2}\n    x-sandbox: {port: 81}\n",
            "SBX304", Severity.ERROR, 5, "services/a2",
            "workloads of service 'a' disagree on the port (80, 81): one mesh service has one port",
        ),
        (
            "  a1:\n    labels: {app: a, version: v1}\n    x-sandbox: {port: 80}\n"
            "  a2:\n    labels: {app: a, version: v1}\n    x-sandbox: {port: 80}\n",
            "SBX305", Severity.WARNING, 5, "services/a2",
            "workloads 'a1' and 'a2' are both a v1: use x-sandbox.replicas for copies of one version",
        ),
        (
            "  a:\n    labels: {app: a, version: v1}\n    x-sandbox: {port: 70000}\n",
            "SBX306", Severity.ERROR, 4, "services/a/x-sandbox/port",
            "x-sandbox.port must be between 1 and 65535, got 70000",
        ),
        (
            "  a:\n    labels: {app: a, version: v1}\n    ports: ['80']\n    x-sandbox:\n      port: 0\n",
            "SBX306", Severity.ERROR, 6, "services/a/x-sandbox/port",
            "x-sandbox.port must be between 1 and 65535, got 0",
        ),
        (
            "  a:\n    labels: {app: a, version: v1}\n    x-sandbox: {prot: 80}\n",
            "SBX002", Severity.WARNING, 4, "services/a/x-sandbox/prot",
            "unknown field 'prot' in WorkloadSettings; did you mean 'port'?",
        ),
        (
            "  a:\n    labels: {app: a, version: v1}\n    x-sandbox:\n      port: http\n",
            "SBX003", Severity.ERROR, 5, "services/a/x-sandbox/port", "port: expected an integer, got a string",
        ),
        (
            "  a:\n    labels: {app: a, version: v1}\n    x-sandbox: {port: 1, interception: iptable}\n",
            "SBX005", Severity.ERROR, 4, "services/a/x-sandbox/interception",
            "interception: 'iptable' is not a valid Interception; did you mean 'iptables'?",
        ),
        (
            "  a:\n    labels: {app: a, version: v1}\n    x-sandbox: {port: 1, local: {command: python app.py}}\n",
            "SBX003", Severity.ERROR, 4, "services/a/x-sandbox/local/command", "command: expected a list, got a string",
        ),
    ],
)  # fmt: skip
def test_compose_problems(services: str, code: str, severity: Severity, line: int, path: str, message: str) -> None:
    topology = parse_compose("services:\n" + services, "compose.yaml")
    found = [(d.code, d.severity, d.file, d.line, d.path, d.message) for d in topology.diagnostics]
    assert [f for f in found if f[0] == code] == [(code, severity, "compose.yaml", line, path, message)]
    assert {f[0] for f in found} <= {code, "SBX302"}  # a misspelt or wrong port also means no port


@pytest.mark.parametrize(
    ("settings", "code", "path", "message"),
    [
        ("trustdomain: a", "SBX002", "x-sandbox/trustdomain",
         "unknown field 'trustdomain' in MeshSettings; did you mean 'trustDomain'?"),
        ("ingress: {port: x}", "SBX003", "x-sandbox/ingress/port", "port: expected an integer, got a string"),
        ("ingress: {port: 65536}", "SBX306", "x-sandbox/ingress/port",
         "x-sandbox.ingress.port must be between 1 and 65535, got 65536"),
        ("ingress: {port: -80}", "SBX306", "x-sandbox/ingress/port",
         "x-sandbox.ingress.port must be between 1 and 65535, got -80"),
        ("outboundTrafficPolicy: {mode: registry_only}", "SBX005", "x-sandbox/outboundTrafficPolicy/mode",
         "mode: 'registry_only' is not a valid OutboundMode; did you mean 'REGISTRY_ONLY'?"),
    ],
)  # fmt: skip
def test_mesh_settings_problems(settings: str, code: str, path: str, message: str) -> None:
    topology = parse_compose(f"x-sandbox: {{{settings}}}\nservices: {{}}\n", "compose.yaml")
    assert [(d.code, d.line, d.path, d.message) for d in topology.diagnostics] == [(code, 1, path, message)]


@pytest.mark.parametrize(
    ("text", "code", "message"),
    [
        ("- a\n", "SBX300", "a compose file must be a map with 'services'"),
        ("", "SBX300", "a compose file must be a map with 'services'"),
        ("version: '3'\n", "SBX300", "the compose file has no 'services' map"),
        ("services: [a, b]\n", "SBX300", "the compose file has no 'services' map"),
        ("services: {a: [\n", "SBX001", "invalid YAML"),
    ],
)
def test_a_file_that_is_not_a_compose_file(text: str, code: str, message: str) -> None:
    topology = parse_compose(text, "compose.yaml")
    (diag,) = topology.diagnostics
    assert (diag.code, diag.severity, diag.file) == (code, Severity.ERROR, "compose.yaml")
    assert message in diag.message and diag.line >= 1
    assert topology.services == ()


def test_load_compose_reads_a_file_and_reports_a_missing_one(tmp_path: Path) -> None:
    path = tmp_path / "compose.yaml"
    path.write_text(COMPOSE)
    assert [w.name for w in load_compose(path).workloads][:2] == ["productpage", "reviews-v1"]
    missing = load_compose(tmp_path / "nope.yaml")
    (diag,) = missing.diagnostics
    assert (diag.code, diag.file) == ("SBX300", str(tmp_path / "nope.yaml"))
    assert diag.message.startswith("cannot read compose file")


def test_x_sandbox_ports_keep_a_services_named_ports_and_give_the_mesh_port() -> None:
    text = "services:\n  a:\n    labels: {app: a, version: v1}\n"
    text += "    x-sandbox: {ports: [{name: http-web, port: 80, targetPort: 8080}, {name: grpc, port: 9090}]}\n"
    topology = parse_compose(text, "compose.yaml")
    assert topology.diagnostics == ()
    [workload] = [w for w in topology.workloads if not w.builtin]
    assert workload.port == 80  # the first of ports, when x-sandbox.port is not given
    assert [(p.name, p.port, p.target_port) for p in workload.ports] == [("http-web", 80, 8080), ("grpc", 9090, None)]
    assert topology.services[0].ports == workload.ports


@pytest.mark.parametrize(
    ("settings", "code", "line", "path"),
    [
        ("{port: 81, ports: [{name: http, port: 80}]}", "SBX307", 4, "services/a/x-sandbox/port"),
        ("{ports: [{name: http, port: 80, targetPort: 0}]}", "SBX306", 4, "services/a/x-sandbox/ports[0]/targetPort"),
        ("{ports: [{name: http}]}", "SBX006", 4, "services/a/x-sandbox/ports[0]"),
    ],
)
def test_x_sandbox_ports_problems_name_their_line(settings: str, code: str, line: int, path: str) -> None:
    topology = parse_compose(
        f"services:\n  a:\n    labels: {{app: a, version: v1}}\n    x-sandbox: {settings}\n", "c.yaml"
    )
    assert [(d.code, d.line, d.path) for d in topology.diagnostics if d.severity == "error"] == [(code, line, path)]


def test_workloads_of_one_service_must_agree_on_x_sandbox_ports() -> None:
    text = "services:\n"
    for version, name in (("v1", "http"), ("v2", "http-web")):
        text += f"  a-{version}:\n    labels: {{app: a, version: {version}}}\n"
        text += f"    x-sandbox: {{ports: [{{name: {name}, port: 80}}]}}\n"
    topology = parse_compose(text, "c.yaml")
    assert [(d.code, d.path) for d in topology.diagnostics] == [("SBX304", "services/a-v2")]
