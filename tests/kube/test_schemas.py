"""The exported manifests against Kubernetes' own OpenAPI schemas, and the Istio YAML against
models generated from Istio's CRD schemas, both from maintained PyPI packages (the `test` extra).

kubernetes-validate ships the JSON schemas of each Kubernetes release (`-strict`: no unknown
field). No PyPI package ships Istio's CRD YAML itself; cloudcoil-models-istio ships pydantic models
generated from Istio's CRD OpenAPI schemas. Pydantic ignores a field its model lacks, so a resource
must also dump back exactly as it was read: a field the schema does not have fails that comparison.
"""

from __future__ import annotations

import importlib
from typing import Any

import kubernetes_validate
import pytest
from packaging.version import Version

from sandbox.kube.export import Exported
from tests.kube.kube_helpers import SAMPLES, export_dir, objects
from tests.kube.test_export import COMPOSE, _export

KUBERNETES = kubernetes_validate.latest_version()


def _kubernetes_objects(exported: Exported) -> list[dict[str, Any]]:
    """Every manifest but the Istio YAML and kustomization.yaml (Kustomize's file, not an API object)."""
    manifests = {name: text for name, text in exported.files.items() if not name.startswith("istio/")}
    manifests.pop("kustomization.yaml")
    return [obj for text in manifests.values() for obj in objects(text)]


def _kube_problems(obj: dict[str, Any]) -> str | None:
    try:
        kubernetes_validate.validate(obj, KUBERNETES, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return f"{obj['kind']}/{obj['metadata'].get('name')}: {exc.message}"
    return None


def _istio_model(obj: dict[str, Any]) -> Any:
    group, version = obj["apiVersion"].split("/")
    module = importlib.import_module(f"cloudcoil.models.istio.{group.split('.')[0]}.{version}")
    return getattr(module, obj["kind"])


def _istio_problems(obj: dict[str, Any]) -> str | None:
    try:
        model = _istio_model(obj).model_validate(obj)
    except ValueError as exc:  # pydantic's ValidationError
        return str(exc)
    back = model.model_dump(by_alias=True, exclude_unset=True, mode="json")
    return None if back == obj else f"fields the CRD schema does not have: {back} != {obj}"


def test_the_kubernetes_release_is_a_current_one() -> None:
    assert Version(KUBERNETES) >= Version("1.33")


@pytest.mark.parametrize(
    "exported", [export_dir(SAMPLES / "bookinfo"), export_dir(SAMPLES / "httpbin"), _export(COMPOSE)]
)
def test_exported_manifests_validate_against_the_kubernetes_schema(exported: Exported) -> None:
    manifests = _kubernetes_objects(exported)
    assert {obj["kind"] for obj in manifests} >= {"Deployment", "Service", "ServiceAccount", "Namespace"}
    assert [problem for problem in map(_kube_problems, manifests) if problem] == []


def test_the_kubernetes_schema_check_can_fail() -> None:
    [deployment, *_] = (o for o in _kubernetes_objects(export_dir(SAMPLES / "httpbin")) if o["kind"] == "Deployment")
    deployment["spec"]["replicas"] = "two"
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = {"always": True}
    assert _kube_problems(deployment)
    deployment = {**deployment, "spec": {**deployment["spec"], "replica": 2}}  # a typo: strict schemas reject it
    deployment["spec"].pop("replicas")
    deployment["spec"]["template"]["spec"]["containers"][0].pop("imagePullPolicy")
    assert "replica" in (_kube_problems(deployment) or "")


@pytest.mark.parametrize("sample", ["bookinfo", "httpbin"])
def test_exported_istio_yaml_validates_against_istios_crd_schemas(sample: str) -> None:
    exported = export_dir(SAMPLES / sample)
    resources = [obj for name, text in exported.files.items() if name.startswith("istio/") for obj in objects(text)]
    assert resources and all(r["metadata"]["namespace"] == "default" for r in resources)
    assert [problem for problem in map(_istio_problems, resources) if problem] == []


def test_the_istio_schema_check_can_fail() -> None:
    exported = export_dir(SAMPLES / "bookinfo")
    [gateway, service] = objects(exported.files["istio/bookinfo-gateway.yaml"])
    gateway["spec"]["servers"][0]["port"]["number"] = "eighty"
    assert _istio_problems(gateway)
    service["spec"]["http"][0]["timeoutt"] = "1s"  # a field Istio's schema does not have
    assert "does not have" in (_istio_problems(service) or "")
