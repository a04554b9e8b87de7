"""Preflight: every problem that stops `sandbox up` before anything starts, naming file and field."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from sandbox.mesh.topology import parse_compose
from sandbox.mesh.yamlsrc import parse_documents
from sandbox.runtime import hostports
from sandbox.runtime.preflight import (
    Inputs,
    check,
    check_runtime,
    duplicate_ports,
    local_commands,
    port_claims,
    published_ports,
    read_inputs,
    taken_ports,
)

WEB = """
services:
  web:
    labels: {app: web, version: v1}
    x-sandbox: {port: 8000, local: {command: [python, web.py]}}
"""

VS_TO_RATINGS = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings}
spec:
  hosts: [ratings]
  http:
  - route:
    - destination: {host: ratings}
"""


def inputs(tmp_path: Path, compose: str, rules: dict[str, str] | None = None) -> Inputs:
    (tmp_path / "compose.yaml").write_text(compose)
    (tmp_path / "istio").mkdir()
    for name, text in (rules or {}).items():
        (tmp_path / "istio" / name).write_text(text)
    return read_inputs(tmp_path / "compose.yaml", tmp_path / "istio")


@pytest.mark.parametrize(("runtime", "codes"), [("auto", []), ("local", []), ("compose", []), ("docker", ["SBX503"])])
def test_runtime_names(runtime: str, codes: list[str]) -> None:
    found = check_runtime(runtime)
    assert [d.code for d in found] == codes
    if found:
        assert found[0].path == "--runtime" and "auto, compose, local" in found[0].message


@pytest.mark.parametrize(
    ("entry", "ports"),
    [
        ("8080:80", [8080]),
        ("127.0.0.1:9000:80", [9000]),
        ("80", []),  # published on a random host port: no claim
        ("8000-8002:80-82", [8000, 8001, 8002]),
        ("5353:53/udp", []),
        ("5000:5000/tcp", [5000]),
        ({"published": 8443, "target": 443}, [8443]),
        ({"published": "7000", "target": 70, "protocol": "udp"}, []),
        ({"target": 80}, []),
        ("nonsense", []),
    ],
)
def test_published_ports(entry: object, ports: list[int]) -> None:
    assert published_ports(entry) == ports


@pytest.mark.parametrize(
    ("compose", "expected"),
    [
        # two services publish one host port: the second one is named with its line and path
        (
            "services:\n  a:\n    image: x\n    ports: ['9000:80']\n  b:\n    image: y\n    ports: ['9000:81']\n",
            [("SBX502", 7, "services/b/ports[0]", "'b' and by 'a'")],
        ),
        # a published port and the default ingress port
        (
            "services:\n  a:\n    image: x\n    ports: ['8080:80']\n",
            [("SBX502", 0, "", "'istio-ingressgateway' and by 'a'")],
        ),
        # moving the ingress away resolves it
        ("x-sandbox:\n  ingress: {port: 9090}\nservices:\n  a:\n    image: x\n    ports: ['8080:80']\n", []),
        # the ingress port set onto a published one: the setting's line is named
        (
            "x-sandbox:\n  ingress:\n    port: 7000\nservices:\n  a:\n    image: x\n    ports: ['7000:80']\n",
            [("SBX502", 3, "x-sandbox/ingress/port", "'istio-ingressgateway' and by 'a'")],
        ),
        ("services:\n  a:\n    image: x\n    ports: ['80', '8081:80']\n", []),
    ],
)
def test_two_services_claiming_one_host_port(compose: str, expected: list[tuple[str, int, str, str]]) -> None:
    topology = parse_compose(compose, "compose.yaml")
    documents, _ = parse_documents(compose, "compose.yaml")
    found = duplicate_ports(port_claims(documents[0], topology))
    assert [(d.code, d.line, d.path) for d in found] == [e[:3] for e in expected]
    for diagnostic, (*_, words) in zip(found, expected, strict=True):
        assert diagnostic.file == "compose.yaml" and words in diagnostic.message


def test_a_taken_port_names_the_port_the_holder_and_the_setting(tmp_path: Path) -> None:
    found = inputs(tmp_path, "x-sandbox:\n  ingress:\n    port: 8181\n" + WEB)
    holders = {8181: "pid 42 (nginx: master process)"}
    [problem] = taken_ports([found.ingress_claim], lambda port: holders.get(port))
    assert problem.code == "SBX504" and (problem.line, problem.path) == (3, "x-sandbox/ingress/port")
    assert "host port 8181" in problem.message and "pid 42 (nginx: master process)" in problem.message
    assert taken_ports([found.ingress_claim], lambda port: None) == []


def test_config_routing_to_a_service_without_labels_is_stopped(tmp_path: Path) -> None:
    found = inputs(tmp_path, WEB + "  ratings:\n    image: ratings\n", {"vs.yaml": VS_TO_RATINGS})
    problems = [d for d in check(found, "local") if d.code == "SBX501"]
    assert len(problems) == 1
    [problem] = problems
    assert problem.file.endswith("vs.yaml") and problem.line == 9
    assert problem.path == "spec/http[0]/route[0]/destination/host"
    assert "app: ratings" in problem.message and "version" in problem.message


def test_the_same_rule_is_fine_once_the_service_is_labelled(tmp_path: Path) -> None:
    labelled = WEB + "  ratings:\n    labels: {app: ratings, version: v1}\n    x-sandbox: {port: 9080}\n"
    found = inputs(tmp_path, labelled, {"vs.yaml": VS_TO_RATINGS})
    assert check(found, "local") == []


@pytest.mark.parametrize(
    ("rule", "code", "line"),
    [
        ("kind: VirtualService\n  bad: [\n", "SBX001", 2),  # YAML syntax
        (
            VS_TO_RATINGS.replace("destination: {host: ratings}", "destination: {host: web, port: {number: x}}"),
            "SBX003",
            9,
        ),
    ],
)
def test_errors_in_the_istio_dir_are_stopped_with_file_and_line(
    tmp_path: Path, rule: str, code: str, line: int
) -> None:
    found = inputs(tmp_path, WEB, {"bad.yaml": rule})
    problems = check(found, "local")
    assert any(d.code == code and d.file.endswith("bad.yaml") and d.line == line for d in problems), problems


def test_warnings_do_not_stop_up(tmp_path: Path) -> None:
    found = inputs(
        tmp_path, WEB + "  api:\n    labels: {app: api, version: v1}\n    x-sandbox: {local: {command: [x]}}\n"
    )
    assert any(d.code == "SBX302" for d in found.diagnostics)  # no port: a warning
    assert check(found, "local") == []


def test_a_missing_istio_dir_is_an_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text(WEB)
    found = read_inputs(tmp_path / "compose.yaml", tmp_path / "rules")
    [problem] = check(found, "local")
    assert problem.code == "SBX500" and str(tmp_path / "rules") in problem.message


@pytest.mark.parametrize(
    ("service", "codes"),
    [
        ("    x-sandbox: {port: 80, local: {command: [python, a.py]}}\n", []),
        ("    x-sandbox: {port: 80}\n", ["SBX505"]),
        ("    x-sandbox: {port: 80, replicas: 0}\n", []),
    ],
)
def test_the_local_runtime_needs_a_command(service: str, codes: list[str]) -> None:
    topology = parse_compose("services:\n  api:\n    labels: {app: api, version: v1}\n" + service, "c.yaml")
    found = local_commands(topology)
    assert [d.code for d in found] == codes
    if found:
        assert (found[0].file, found[0].line) == ("c.yaml", 2) and "x-sandbox/local/command" in found[0].path


TCP_TABLE = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1
   1: 0100007F:1F90 0100007F:D2C4 01 00000000:00000000 00:00000000 00000000     0        0 4243 1
   2: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 77 1
"""


@pytest.mark.parametrize(("port", "inodes"), [(8080, {4242}), (80, {77}), (81, set())])
def test_listening_inodes(port: int, inodes: set[int]) -> None:
    assert hostports.listening_inodes(TCP_TABLE, port) == inodes


def test_who_holds_a_real_listener_names_this_process() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        holder = hostports.who_holds(port)
        assert holder is not None
        if Path("/proc/net/tcp").exists():
            assert f"pid {os.getpid()} (" in holder
    assert hostports.who_holds(port) is None
