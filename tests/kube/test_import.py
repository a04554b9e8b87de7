"""`sandbox.kube.importer`: Kubernetes manifests into a Compose mesh, with every omission reported."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from sandbox.cli import app
from sandbox.kube.importer import Imported, import_manifests
from sandbox.mesh.topology import parse_compose
from tests.kube.kube_helpers import ROOT, SAMPLES, UPSTREAM_BOOKINFO
from tests.kube.test_roundtrip import mesh_view

HELM = ROOT / "tests/fixtures/kube/helm-shop.yaml"


def _import(*paths: Path) -> Imported:
    return import_manifests([(str(path), path.read_text()) for path in paths])


def _said(imported: Imported) -> set[tuple[str, int, str, str]]:
    return {(d.code, d.line, d.resource, d.path) for d in imported.diagnostics}


def test_the_upstream_fixture_keeps_istios_license_header() -> None:
    assert UPSTREAM_BOOKINFO.read_text().startswith(
        "# Copyright Istio Authors\n#\n#   Licensed under the Apache License"
    )


def test_istios_bookinfo_manifest_imports_into_the_samples_mesh() -> None:
    imported = _import(UPSTREAM_BOOKINFO)
    assert imported.errors == ()
    topology = parse_compose(imported.compose, "compose.yaml")
    sample = mesh_view(parse_compose((SAMPLES / "bookinfo/compose.yaml").read_text(), "sample.yaml"))
    assert mesh_view(topology) == sample  # same workloads, versions, service accounts and ports
    assert {w.name: w.image for w in topology.workloads if not w.builtin}["reviews-v2"] == (
        "docker.io/istio/examples-bookinfo-reviews-v2:1.20.1"
    )
    assert imported.istio_files == {}


def test_what_bookinfo_loses_is_reported_with_file_line_and_object() -> None:
    imported = _import(UPSTREAM_BOOKINFO)
    file = str(UPSTREAM_BOOKINFO)
    assert {d.file for d in imported.diagnostics} == {file}
    said = _said(imported)
    assert ("SBX600", 189, "Deployment/default/reviews-v1", "spec/template/spec/volumes") in said
    assert ("SBX600", 184, "Deployment/default/reviews-v1", "spec/template/spec/containers[0]/volumeMounts") in said
    assert ("SBX600", 332, "Deployment/default/productpage-v1", "spec/template/spec/volumes") in said
    annotations = next(d for d in imported.diagnostics if d.path == "spec/template/metadata/annotations")
    assert (annotations.line, annotations.resource) == (314, "Deployment/default/productpage-v1")
    assert "prometheus.io/scrape" in annotations.message
    assert ("SBX600", 50, "ServiceAccount/default/bookinfo-details", "metadata/labels") in said  # account: details


def test_the_imported_bookinfo_passes_analyze_with_each_of_istios_bookinfo_rules(tmp_path: Path) -> None:
    compose = tmp_path / "compose.yaml"
    result = CliRunner().invoke(app, ["import", "kubernetes", str(UPSTREAM_BOOKINFO), "-o", str(compose)])
    assert result.exit_code == 0, result.output
    runner = CliRunner()
    rules = sorted((SAMPLES / "bookinfo/networking").glob("*.yaml"))
    assert len(rules) >= 15
    for rule in rules:  # each task's file with the gateway, as `sandbox apply` would put them together
        args = ["analyze", str(rule), str(SAMPLES / "bookinfo/istio"), "-o", "json", "--compose"]
        ours = runner.invoke(app, [*args, str(compose)])
        theirs = runner.invoke(app, [*args, str(SAMPLES / "bookinfo/compose.yaml")])
        assert ours.exit_code == 0, (rule.name, ours.output)
        assert ours.output == theirs.output, rule.name  # the same findings as with the sample's compose file


def _service(imported: Imported, name: str) -> dict[str, Any]:
    services: dict[str, Any] = yaml.safe_load(imported.compose)["services"]
    return services[name]


def test_helm_output_imports_with_what_cannot_be_translated_reported_per_object() -> None:
    imported = _import(HELM)
    assert imported.errors == ()
    cart = _service(imported, "cart")
    assert cart["labels"] == {
        "app": "cart",  # Istio's canonical service: app.kubernetes.io/name
        "version": "1.4",  # app.kubernetes.io/version
        "app.kubernetes.io/name": "cart",
        "app.kubernetes.io/version": "1.4",
    }
    assert cart["command"] == ["--port", "8080", "--price", "$$5"]  # args; `$` escaped for Compose
    assert cart["environment"] == {"REGION": "eu"}
    assert cart["expose"] == ["8080", "9090"]
    assert cart["x-sandbox"] == {
        "port": 80,
        "ports": [{"name": "http-web", "port": 80, "targetPort": 8080}, {"name": "grpc", "port": 9090}],
        "namespace": "shop",
        "serviceAccount": "cart",
        "replicas": 2,
    }
    ledger = _service(imported, "ledger")
    assert ledger["x-sandbox"] == {"port": 7000, "namespace": "shop", "serviceAccount": "default", "inject": False}
    said = {(code, line, path) for code, line, _, path in _said(imported)}
    assert {
        ("SBX601", 19, "kind"),  # the ConfigMap
        ("SBX600", 74, "spec/template/spec/containers[0]/env[0]/valueFrom"),
        ("SBX600", 86, "spec/template/spec/containers[1]"),  # a second container
        ("SBX600", 65, "spec/template/spec/initContainers[0]"),
        ("SBX600", 82, "spec/template/spec/containers[0]/readinessProbe"),
        ("SBX600", 84, "spec/template/spec/containers[0]/resources"),
        ("SBX600", 110, "spec/volumeClaimTemplates"),
        ("SBX600", 33, "spec/type"),  # NodePort
        ("SBX603", 68, "spec/template/spec/containers"),  # port 80 -> container port 8080
    } <= said
    assert list(imported.istio_files) == ["helm-shop.yaml"]
    rule, telemetry = [d for d in yaml.safe_load_all(imported.istio_files["helm-shop.yaml"]) if d]
    assert (rule["kind"], rule["metadata"], rule["spec"]["host"]) == (
        "DestinationRule",
        {"name": "cart", "namespace": "shop"},
        "cart",
    )
    assert (telemetry["kind"], telemetry["spec"]) == ("Telemetry", {"tracing": [{"randomSamplingPercentage": 10.0}]})


def test_kubectls_list_output_imports_like_the_documents() -> None:
    documents = [d for d in yaml.safe_load_all(UPSTREAM_BOOKINFO.read_text()) if d]
    listed = yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": documents})
    imported = import_manifests([("list.yaml", listed)])
    assert imported.errors == ()
    assert mesh_view(parse_compose(imported.compose, "a.yaml")) == mesh_view(
        parse_compose(_import(UPSTREAM_BOOKINFO).compose, "b.yaml")
    )
    volumes = next(d for d in imported.diagnostics if d.path == "spec/template/spec/volumes")
    assert volumes.file == "list.yaml" and volumes.line > 1  # positions inside the List's items


def test_a_service_named_unlike_the_app_label_renames_the_mesh_service() -> None:
    text = """\
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: frontend}
  ports: [{name: http, port: 8080}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: frontend-v1}
spec:
  selector: {matchLabels: {app: frontend}}
  template:
    metadata: {labels: {app: frontend, version: v1}}
    spec:
      containers: [{name: f, image: f:1}]
"""
    imported = import_manifests([("web.yaml", text)])
    assert _service(imported, "frontend-v1")["labels"] == {"app": "web", "version": "v1"}
    assert _service(imported, "frontend-v1")["x-sandbox"] == {"port": 8080, "serviceAccount": "default"}
    [renamed] = [d for d in imported.diagnostics if d.code == "SBX603"]
    assert "labelled app=web (was frontend)" in renamed.message


@pytest.mark.parametrize(
    ("text", "code", "line"),
    [
        ("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: a\n", "SBX001", 4),  # where the flow map ends
        ("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: a}\nspec: {template: {spec: {}}}\n", "SBX602", 4),
        ("kind: Deployment\nmetadata: {name: a}\n", "SBX602", 1),
        ("- a list\n", "SBX602", 1),
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n", "SBX602", 1),  # no workload at all
    ],
)
def test_unusable_input_is_an_error_with_its_line_and_nothing_is_imported(text: str, code: str, line: int) -> None:
    imported = import_manifests([("bad.yaml", text)])
    assert imported.compose == "" and imported.istio_files == {}
    assert [(d.code, d.line) for d in imported.errors] == [(code, line)]


def test_an_istio_resource_with_an_error_stops_the_import() -> None:
    text = UPSTREAM_BOOKINFO.read_text() + (
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r}\nspec: {hosts: [r], http: 5}\n"
    )
    imported = import_manifests([("b.yaml", text)])
    assert imported.compose == ""
    assert [(d.code, d.resource) for d in imported.errors] == [("SBX003", "VirtualService/default/r")]


def test_hostile_values_anywhere_in_a_deployment_never_crash_the_import() -> None:
    base = next(d for d in yaml.safe_load_all(UPSTREAM_BOOKINFO.read_text()) if d and d["kind"] == "Deployment")
    service = next(d for d in yaml.safe_load_all(UPSTREAM_BOOKINFO.read_text()) if d and d["kind"] == "Service")

    def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
        return [prefix] + [p for key, child in children for p in paths(child, (*prefix, key))]

    def replaced(node: Any, path: tuple[Any, ...], value: Any) -> Any:
        if not path:
            return value
        copy = dict(node) if isinstance(node, dict) else list(node)
        copy[path[0]] = replaced(node[path[0]], path[1:], value)
        return copy

    for original in (base, service):
        for path in paths(original)[1:]:
            for value in (None, 7, "x", [], {}, [1, "y"], {"k": [None]}):
                text = yaml.safe_dump_all([replaced(original, path, value), base if original is service else service])
                imported = import_manifests([("f.yaml", text)])  # must not raise
                assert imported.compose or imported.errors, path
