"""Kubernetes manifests as a mesh: `sandbox import kubernetes`.

Reads multi-document YAML as `kubectl apply` takes it (Kustomize's and Helm's rendered output
included): each Deployment and StatefulSet becomes a Compose service labelled app/version with
`x-sandbox` (port, ports, namespace, serviceAccount, replicas, inject), and the Istio resources found
beside them go to `istio/`, one file per source file. What has no counterpart is reported per
object with its file and line (pods.py, kservices.py); nothing is dropped without a word.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from sandbox.kube.kservices import KubeService, namespace_injection, read_account, read_namespace, read_service
from sandbox.kube.objects import ADAPTED, KIND_LEFT_OUT, UNUSABLE, KubeObject, read_objects
from sandbox.kube.pods import PodWorkload, pod_workload
from sandbox.kube.ports import mesh_ports
from sandbox.mesh import legacy  # noqa: F401 - importing it registers the legacy kinds in KINDS
from sandbox.mesh.diagnostics import Diagnostic, Severity
from sandbox.mesh.loader import load_texts
from sandbox.mesh.resources import KINDS
from sandbox.mesh.topology import parse_compose
from sandbox.mesh.yamlsrc import dump_all_yaml, dump_yaml

PARSE_AND_KIND_CODES = ("SBX001", "SBX007", "SBX008", "SBX010")  # read_objects and _sort report these
WORKLOAD_KINDS = {("apps", "Deployment"), ("apps", "StatefulSet")}
# Istio's canonical service labels, in the order Istio reads them (pkg/model/labels: canonical service)
APP_LABELS = ("service.istio.io/canonical-name", "app.kubernetes.io/name")
VERSION_LABELS = ("service.istio.io/canonical-revision", "app.kubernetes.io/version")


@dataclass(frozen=True)
class Imported:
    compose: str
    istio_files: dict[str, str]  # file name in istio/ -> text
    diagnostics: tuple[Diagnostic, ...]

    @property
    def errors(self) -> tuple[Diagnostic, ...]:
        return tuple(d for d in self.diagnostics if d.severity is Severity.ERROR)


@dataclass
class _Found:
    workloads: list[KubeObject]
    services: list[KubeObject]
    accounts: list[KubeObject]
    namespaces: list[KubeObject]
    istio: dict[str, list[KubeObject]]  # source file -> its Istio resources


def import_manifests(sources: Sequence[tuple[str, str | bytes]], compose_file: str = "compose.yaml") -> Imported:
    """`sources` are (file name, text) pairs; the result holds no files when it has errors.
    `compose_file` names the result in the errors the sandbox finds in it (e.g. one service's
    workloads disagreeing on their port)."""
    out: list[Diagnostic] = []
    found = _Found([], [], [], [], {})
    for file, text in sources:
        objects, problems = read_objects(text, file)
        out.extend(problems)
        for obj in objects:
            _sort(obj, found, out)
    # The loader checks the Istio resources; the YAML itself and the kinds are reported above.
    out.extend(d for d in load_texts(list(sources)).diagnostics if not _said_already(d))
    pods = [pod for pod in (pod_workload(obj, out) for obj in found.workloads) if pod is not None]
    services = [s for s in (read_service(obj, out) for obj in found.services) if s is not None]
    for obj in found.accounts:
        read_account(obj, out)
    for obj in found.namespaces:
        read_namespace(obj, out)
    if not pods and not any(d.severity is Severity.ERROR for d in out):
        out.append(Diagnostic(UNUSABLE, Severity.ERROR, "no Deployment or StatefulSet to import", sources[0][0], 1, 1))
    compose = _compose(pods, services, found, [file for file, _ in sources], out)
    if pods:
        out.extend(d for d in parse_compose(compose, compose_file).diagnostics if d.severity is Severity.ERROR)
    if any(d.severity is Severity.ERROR for d in out):
        return Imported("", {}, tuple(out))
    return Imported(compose, _istio_files(found.istio), tuple(out))


def _said_already(d: Diagnostic) -> bool:
    """The YAML, the kinds and a missing apiVersion, kind or name are reported by read_objects and _sort."""
    return d.code in PARSE_AND_KIND_CODES or (d.code == "SBX006" and not d.resource)


def _sort(obj: KubeObject, found: _Found, out: list[Diagnostic]) -> None:
    api, kind = obj.api_version, obj.kind
    group = api.rpartition("/")[0]
    if group == "kustomize.config.k8s.io":  # Kustomize's own file (a directory `export` wrote has one)
        message = "a Kustomization is not applied: the files given are read as they are (for patches or "
        message += "generators, import the output of `kubectl kustomize DIR`)"
        out.append(obj.diagnostic(KIND_LEFT_OUT, Severity.INFO, message, "kind"))
        return
    if not api or not kind or not obj.name:
        missing = "apiVersion" if not api else "kind" if not kind else "metadata.name"
        out.append(obj.diagnostic(UNUSABLE, Severity.ERROR, f"an object without {missing}", ""))
        return
    info = KINDS.get(kind)
    if group.endswith("istio.io"):
        if info is not None and info.group == group:
            found.istio.setdefault(obj.file, []).append(obj)
        else:
            message = f"{kind} ({api}) is left out: the sandbox does not run this Istio API"
            out.append(obj.diagnostic(KIND_LEFT_OUT, Severity.WARNING, message, "kind"))
        return
    target = {
        ("", "Service"): found.services,
        ("", "ServiceAccount"): found.accounts,
        ("", "Namespace"): found.namespaces,
    }.get((group, kind), found.workloads if (group, kind) in WORKLOAD_KINDS else None)
    if target is None:
        message = (
            f"{kind} is left out: the sandbox imports Deployments, StatefulSets, Services, ServiceAccounts, "
            "Namespaces and Istio's resources"
        )
        out.append(obj.diagnostic(KIND_LEFT_OUT, Severity.WARNING, message, "kind"))
        return
    target.append(obj)


def _compose(
    pods: list[PodWorkload],
    services: list[KubeService],
    found: _Found,
    files: list[str],
    out: list[Diagnostic],
) -> str:
    injected = {obj.name: namespace_injection(obj) for obj in found.namespaces}
    used: set[KubeService] = set()
    names: set[str] = set()
    entries: dict[str, dict[str, Any]] = {}
    for pod in pods:
        obj = pod.obj
        selecting = [s for s in services if s.selects(obj.namespace, pod.labels)]
        used.update(selecting)
        labels = _mesh_labels(pod, selecting, out)
        settings: dict[str, Any] = mesh_ports(pod, selecting, out)
        if obj.namespace != "default":
            settings["namespace"] = obj.namespace
        settings["serviceAccount"] = pod.service_account
        if pod.replicas != 1:
            settings["replicas"] = pod.replicas
        inject = pod.inject if pod.inject is not None else injected.get(obj.namespace, True)
        if not inject:
            settings["inject"] = False
        if pod.inject is None and obj.namespace in injected and not inject:
            message = f"namespace {obj.namespace} is not labelled istio-injection=enabled: no sidecar, as in a cluster"
            out.append(obj.diagnostic(ADAPTED, Severity.INFO, message, "metadata/namespace"))
        if obj.kind == "StatefulSet":
            message = "a StatefulSet runs as a Compose service: no stable network identity, no ordered start"
            out.append(obj.diagnostic(ADAPTED, Severity.INFO, message, "kind"))
        entry = {**pod.compose, "labels": labels}
        if pod.container_ports:
            entry["expose"] = [str(p) for p in pod.container_ports]
        entry["x-sandbox"] = settings
        entries[_unique(obj, names, out)] = _ordered(entry)
    for service in services:
        if service not in used:
            message = "selects no imported Deployment or StatefulSet: left out"
            out.append(service.obj.diagnostic(KIND_LEFT_OUT, Severity.WARNING, message, "spec/selector"))
    accounts = {(pod.obj.namespace, pod.service_account) for pod in pods}
    for obj in found.accounts:
        if (obj.namespace, obj.name) not in accounts:
            message = "used by no imported workload: left out"
            out.append(obj.diagnostic(KIND_LEFT_OUT, Severity.INFO, message, "metadata/name"))
    header = "".join(f"#   {file}\n" for file in files)
    return (
        "# Imported from Kubernetes manifests by `sandbox import kubernetes`:\n"
        + header
        + "# Each Deployment or StatefulSet is a service labelled app/version: a workload of the mesh service\n"
        + "# named by `app`. x-sandbox holds what Compose cannot say (see sandbox's README, File formats).\n"
        + dump_yaml({"services": entries})
    )


def _mesh_labels(pod: PodWorkload, selecting: list[KubeService], out: list[Diagnostic]) -> dict[str, str]:
    """The pod's labels with `app` naming its Service and a `version` (Istio's canonical defaults)."""
    labels, obj = dict(pod.labels), pod.obj
    added = []
    if "app" not in labels:
        labels["app"] = next((labels[k] for k in APP_LABELS if labels.get(k)), obj.name)
        added.append(f"app={labels['app']}")
    if "version" not in labels:
        labels["version"] = next((labels[k] for k in VERSION_LABELS if labels.get(k)), "latest")
        added.append(f"version={labels['version']}")
    if added:
        message = f"labelled {', '.join(added)}: the sandbox names a workload's service and version by them"
        out.append(obj.diagnostic(ADAPTED, Severity.INFO, message, "spec/template/metadata/labels"))
    if selecting:
        service = selecting[0].obj.name
        if labels["app"] != service:
            message = f"labelled app={service} (was {labels['app']}): Service {service} selects it, and the sandbox "
            message += "names a workload's mesh service by its app label"
            out.append(obj.diagnostic(ADAPTED, Severity.INFO, message, "spec/template/metadata/labels"))
            labels["app"] = service
        if len(selecting) > 1:
            others = ", ".join(s.obj.name for s in selecting[1:])
            message = f"also selected by Service {others}: the sandbox gives a workload one mesh service ({service})"
            out.append(obj.diagnostic(ADAPTED, Severity.WARNING, message, "spec/template/metadata/labels"))
    return {"app": labels.pop("app"), "version": labels.pop("version"), **labels}


def _unique(obj: KubeObject, names: set[str], out: list[Diagnostic]) -> str:
    name = obj.name
    for candidate in (name, f"{name}-{obj.namespace}", f"{name}-{obj.namespace}-{obj.kind.lower()}"):
        if candidate not in names:
            break
    else:  # pragma: no cover - three objects of one kind, name and namespace: the loader's duplicates
        candidate = f"{name}-{len(names)}"
    if candidate != name:
        message = f"Compose service named {candidate}: another imported workload is already named {name}"
        out.append(obj.diagnostic(ADAPTED, Severity.WARNING, message, "metadata/name"))
    names.add(candidate)
    return candidate


def _ordered(entry: dict[str, Any]) -> dict[str, Any]:
    order = ("image", "labels", "entrypoint", "command", "working_dir", "environment", "expose", "pull_policy")
    return {key: entry[key] for key in (*order, "x-sandbox") if key in entry}


def _istio_files(istio: dict[str, list[KubeObject]]) -> dict[str, str]:
    files: dict[str, str] = {}
    for source, objects in istio.items():
        stem = PurePath(source).stem or "istio"
        name = f"{stem}.yaml"
        n = 2
        while name in files:
            name, n = f"{stem}-{n}.yaml", n + 1
        files[name] = f"# Istio resources from {source} (sandbox import kubernetes)\n" + dump_all_yaml(
            [obj.data for obj in objects]
        )
    return files
