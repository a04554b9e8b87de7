"""`sandbox.kube.export`: what a Compose mesh becomes as Kubernetes manifests."""

from __future__ import annotations

from pathlib import Path

import yaml

from sandbox.kube.export import export_mesh
from sandbox.kube.istio_copy import copy_with_namespaces
from tests.kube.kube_helpers import SAMPLES, by_kind, export_dir, objects


def _export(compose: str, istio: dict[str, str] | None = None, project: str = "shop"):
    sources = [(name, f"istio/{name}", text) for name, text in (istio or {}).items()]
    return export_mesh(compose, "compose.yaml", sources, project)


def test_bookinfo_becomes_deployments_services_accounts_and_an_injected_namespace() -> None:
    exported = export_dir(SAMPLES / "bookinfo")
    assert exported.errors == ()
    kinds = by_kind(exported)
    deployments = {d["metadata"]["name"]: d for d in kinds["Deployment"]}
    assert sorted(deployments) == [
        "details-v1",
        "productpage-v1",
        "ratings-v1",
        "reviews-v1",
        "reviews-v2",
        "reviews-v3",
    ]
    reviews = deployments["reviews-v2"]
    assert reviews["metadata"]["namespace"] == "default"
    assert reviews["spec"]["replicas"] == 1
    assert reviews["spec"]["selector"] == {"matchLabels": {"app": "reviews", "version": "v2"}}
    pod = reviews["spec"]["template"]
    assert pod["metadata"]["labels"] == {"app": "reviews", "version": "v2"}
    assert pod["spec"]["serviceAccountName"] == "bookinfo-reviews"
    [container] = pod["spec"]["containers"]
    assert container == {
        "name": "reviews",
        "image": "sandbox:latest",
        "args": ["python3", "apps/reviews.py", "v2"],  # Compose's command replaces CMD, as args does
        "workingDir": "/app",
        "env": [{"name": "HOST", "value": "0.0.0.0"}],
        "ports": [{"containerPort": 9080}],
    }
    services = {s["metadata"]["name"]: s for s in kinds["Service"]}
    assert sorted(services) == ["details", "productpage", "ratings", "reviews"]
    assert services["reviews"]["spec"] == {
        "ports": [{"name": "http", "port": 9080, "targetPort": 9080}],  # Istio's protocol prefix
        "selector": {"app": "reviews"},
    }
    accounts = sorted(a["metadata"]["name"] for a in kinds["ServiceAccount"])
    assert accounts == ["bookinfo-details", "bookinfo-productpage", "bookinfo-ratings", "bookinfo-reviews"]
    assert kinds["Namespace"] == [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": "default", "labels": {"istio-injection": "enabled"}},
        }
    ]


def test_the_kustomization_lists_every_file_written() -> None:
    exported = export_dir(SAMPLES / "httpbin")
    kustomization = yaml.safe_load(exported.files["kustomization.yaml"])
    assert kustomization["kind"] == "Kustomization"
    assert sorted(kustomization["resources"]) == sorted(name for name in exported.files if name != "kustomization.yaml")
    assert "istio/httpbin-gateway.yaml" in kustomization["resources"]


def test_the_istio_yaml_is_copied_as_written_with_the_implicit_namespace_added() -> None:
    original = (SAMPLES / "bookinfo/istio/bookinfo-gateway.yaml").read_text()
    copied = export_dir(SAMPLES / "bookinfo").files["istio/bookinfo-gateway.yaml"]
    added = [line for line in copied.splitlines() if line not in original.splitlines()]
    assert added == ["  namespace: default", "  namespace: default"]  # one per resource, nothing else changed
    assert [line for line in copied.splitlines() if line not in added] == original.splitlines()  # comments kept


def test_a_namespace_given_is_kept_and_a_flow_style_metadata_is_rewritten() -> None:
    text = (
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: a\n  namespace: shop\n"
        "spec: {host: a}\n---\n# flow style\napiVersion: networking.istio.io/v1\nkind: DestinationRule\n"
        "metadata: {name: b}\nspec: {host: b}\n"
    )
    copied = copy_with_namespaces(text, "rules.yaml")
    assert [(o["metadata"]["name"], o["metadata"]["namespace"]) for o in objects(copied.text)] == [
        ("a", "shop"),
        ("b", "default"),
    ]
    assert copied.namespaces == {"shop", "default"}
    assert [d.code for d in copied.diagnostics] == ["SBX603"]  # the rewrite (and loss of comments) is said


COMPOSE = """\
x-sandbox: {trustDomain: shop.local}
services:
  api-v1:
    build: ./api
    labels: {app: api, version: v1, tier: backend}
    entrypoint: /bin/api
    command: --listen :8080 --greeting "hello $$USER"
    environment: [MODE=prod, FROM_HOST]
    ports: ["18080:8080"]
    healthcheck: {test: ["CMD", "true"]}
    pull_policy: always
    x-sandbox:
      namespace: shop
      serviceAccount: api-sa
      replicas: 3
      ports: [{name: http-api, port: 80, targetPort: 8080}, {name: grpc, port: 9090}]
  legacy-client:
    image: curlimages/curl:8.8.0
    labels: {app: legacy-client, version: v1}
    x-sandbox: {inject: false, port: 8000}
  db:
    image: postgres:16
volumes:
  data: {}
"""


def test_every_field_of_a_workload_and_what_has_no_counterpart_is_reported_with_its_line() -> None:
    exported = _export(COMPOSE)
    assert exported.errors == ()
    kinds = by_kind(exported)
    api = next(d for d in kinds["Deployment"] if d["metadata"]["name"] == "api-v1")
    assert api["metadata"]["namespace"] == "shop"
    assert api["spec"]["replicas"] == 3
    pod = api["spec"]["template"]
    assert pod["metadata"]["labels"] == {"app": "api", "version": "v1", "tier": "backend"}
    assert pod["spec"]["serviceAccountName"] == "api-sa"
    [container] = pod["spec"]["containers"]
    assert container["image"] == "shop-api-v1"  # the name Compose gives the image it builds
    assert container["imagePullPolicy"] == "Always"
    assert container["command"] == ["/bin/api"]
    assert container["args"] == ["--listen", ":8080", "--greeting", "hello $USER"]  # Compose's $$ is a literal $
    assert container["env"] == [{"name": "MODE", "value": "prod"}]
    assert container["ports"] == [{"containerPort": 8080}, {"containerPort": 9090}]
    service = next(s for s in kinds["Service"] if s["metadata"]["name"] == "api")
    assert service["metadata"]["namespace"] == "shop"
    assert service["spec"]["ports"] == [
        {"name": "http-api", "port": 80, "targetPort": 8080},
        {"name": "grpc", "port": 9090, "targetPort": 9090},
    ]
    client = next(d for d in kinds["Deployment"] if d["metadata"]["name"] == "legacy-client")
    assert client["spec"]["template"]["metadata"]["labels"]["sidecar.istio.io/inject"] == "false"
    assert sorted(n["metadata"]["name"] for n in kinds["Namespace"]) == ["default", "shop"]
    said = {(d.code, d.line, d.path) for d in exported.diagnostics}
    assert ("SBX604", 4, "services/api-v1/build") in said  # built locally: must be pushed
    assert ("SBX600", 8, "services/api-v1/environment[1]") in said  # FROM_HOST comes from the host
    assert ("SBX600", 9, "services/api-v1/ports[0]") in said  # the host port
    assert ("SBX600", 10, "services/api-v1/healthcheck") in said
    assert ("SBX600", 21, "services/db") in said  # not a mesh workload
    assert ("SBX600", 23, "volumes") in said  # Compose's top-level volumes
    assert ("SBX600", 1, "x-sandbox/trustDomain") in said  # part of Istio's installation in a cluster
    build = next(d for d in exported.diagnostics if d.code == "SBX604")
    assert "push shop-api-v1" in build.message and "./api" in build.message


def test_a_locally_built_image_is_named_in_a_comment_above_its_deployment() -> None:
    text = _export(COMPOSE).files["deployments.yaml"]
    comment, _, rest = text.partition("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: api-v1\n")
    assert rest
    assert "# api-v1: image shop-api-v1 is built by Compose from ./api (Dockerfile) (build:).\n" in comment
    assert "# Push it to a registry the cluster pulls from" in comment


def test_names_kubernetes_rejects_are_errors_and_nothing_is_exported() -> None:
    exported = _export("services:\n  Reviews_V1:\n    image: r\n    labels: {app: Reviews, version: v1}\n")
    assert exported.files == {}
    assert {(d.code, d.path) for d in exported.errors} == {
        ("SBX605", "services/Reviews_V1"),
        ("SBX605", "services/Reviews_V1/labels"),
        ("SBX605", "services/Reviews_V1/x-sandbox"),  # the service account defaults to the app label
    }


def test_input_errors_are_returned_and_nothing_is_exported() -> None:
    bad_compose = _export("services:\n  a:\n    labels: {app: a}\n")
    assert bad_compose.files == {} and [d.code for d in bad_compose.errors] == ["SBX301"]
    bad_istio = _export(
        "services:\n  a:\n    image: a\n    labels: {app: a, version: v1}\n    x-sandbox: {port: 80}\n",
        {"vs.yaml": "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: a}\nspec: {http: 3}\n"},
    )
    assert bad_istio.files == {} and bad_istio.errors and bad_istio.errors[0].file == "istio/vs.yaml"


def test_a_mesh_service_without_a_port_gets_no_service_and_says_so() -> None:
    exported = _export("services:\n  worker:\n    image: w\n    labels: {app: worker, version: v1}\n")
    assert "Service" not in by_kind(exported)
    assert any(d.code == "SBX600" and "no port" in d.message for d in exported.diagnostics)


def test_a_port_name_without_an_istio_protocol_prefix_is_a_warning() -> None:
    compose = "services:\n  a:\n    image: a\n    labels: {app: a, version: v1}\n"
    compose += "    x-sandbox: {ports: [{name: web, port: 80}]}\n"
    exported = _export(compose)
    assert [(d.code, d.severity) for d in exported.diagnostics] == [("SBX603", "warning")]
    assert "no Istio protocol prefix" in exported.diagnostics[0].message


def test_written_out_files_reload_as_the_same_data(tmp_path: Path) -> None:
    for name, text in export_dir(SAMPLES / "httpbin").files.items():
        assert objects(text), name  # every file holds at least one object and parses


def test_secrets_are_named_with_the_command_that_creates_them_and_never_exported() -> None:
    compose = (
        "x-sandbox:\n  secrets:\n    bookinfo-credential: ./certs/bookinfo\n"
        "services:\n  a:\n    image: a\n    labels: {app: a, version: v1}\n    x-sandbox: {port: 80}\n"
    )
    exported = _export(compose)
    [said] = [d for d in exported.diagnostics if d.path == "x-sandbox/secrets/bookinfo-credential"]
    assert (said.code, said.severity, said.line) == ("SBX600", "warning", 3)
    assert "kubectl create -n istio-system secret generic bookinfo-credential" in said.message
    assert not any("certs/bookinfo" in text or "kind: Secret" in text for text in exported.files.values())
