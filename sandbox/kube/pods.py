"""A Deployment's or StatefulSet's pod template as a Compose service (the import direction).

The first container that is not Istio's injected `istio-proxy` is the app: `command` becomes
Compose's `entrypoint` and `args` its `command` (Compose's `$` is escaped as `$$`, since Kubernetes
substitutes nothing there but `$(VAR)`). Every field the sandbox cannot carry is reported with its
line, through `objects.left_out` over the tree of fields read here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sandbox.kube.names import INJECT_KEY
from sandbox.kube.objects import (
    ADAPTED,
    LEFT_OUT,
    SERVER_FIELDS,
    UNUSABLE,
    KubeObject,
    left_out,
    mapping,
    reason,
    sequence,
)
from sandbox.mesh.diagnostics import Diagnostic, Severity, join_path

POD = "spec/template/spec"
ISTIO_CONTAINERS = ("istio-proxy", "istio-init", "istio-validation")  # what istioctl kube-inject adds
PULL_POLICIES = {"Always": "always", "IfNotPresent": "missing", "Never": "never"}
CONTAINER: dict[str, Any] = dict.fromkeys(("name", "image", "imagePullPolicy", "command", "args", "workingDir"), True)
CONTAINER |= {"env": True, "ports": True}  # read entry by entry below
CONTAINER |= dict.fromkeys(("terminationMessagePath", "terminationMessagePolicy"), True)  # kubectl's defaults
WORKLOAD: dict[str, Any] = {
    "apiVersion": True,
    "kind": True,
    "status": True,
    "metadata": {"name": True, "namespace": True, "labels": True, "annotations": True, **SERVER_FIELDS},
    "spec": {
        "replicas": True,
        "selector": True,
        "serviceName": True,  # a StatefulSet's governing Service: the Services are imported anyway
        "template": {
            "metadata": {"labels": True, "annotations": True, "creationTimestamp": True},
            "spec": {"serviceAccountName": True, "serviceAccount": True, "containers": True, "initContainers": True},
        },
    },
}
SERVER_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration", "deployment.kubernetes.io/revision")


@dataclass
class PodWorkload:
    """What one Deployment or StatefulSet becomes; `app` may still change to its Service's name."""

    obj: KubeObject
    labels: dict[str, str]  # the pod's, without sidecar.istio.io/inject
    service_account: str
    replicas: int
    inject: bool | None  # the pod's own say; None: the namespace decides
    compose: dict[str, Any]  # image, entrypoint, command, working_dir, environment, pull_policy
    container_ports: dict[int, str | None] = field(default_factory=dict)  # port -> name


def pod_workload(obj: KubeObject, out: list[Diagnostic]) -> PodWorkload | None:
    spec = obj.data.get("spec")
    template = spec.get("template") if isinstance(spec, dict) else None
    pod = template.get("spec") if isinstance(template, dict) else None
    containers = pod.get("containers") if isinstance(pod, dict) else None
    apps = [
        (i, c)
        for i, c in enumerate(sequence(containers))
        if isinstance(c, dict) and c.get("name") not in ISTIO_CONTAINERS
    ]
    if not apps:
        out.append(obj.diagnostic(UNUSABLE, Severity.ERROR, f"{obj.kind} has no app container", POD))
        return None
    index, app = apps[0]
    where = join_path(join_path(POD, "containers"), index)
    if not isinstance(app.get("image"), str) or not app["image"]:
        out.append(obj.diagnostic(UNUSABLE, Severity.ERROR, "the app container has no image", where))
        return None
    assert isinstance(spec, dict) and isinstance(template, dict) and isinstance(pod, dict)
    meta = mapping(template.get("metadata"))
    labels = {str(k): str(v) for k, v in mapping(meta.get("labels")).items()}
    inject = _inject(labels.pop(INJECT_KEY, None), mapping(meta.get("annotations")).get(INJECT_KEY))
    account = pod.get("serviceAccountName") or pod.get("serviceAccount") or "default"  # Kubernetes' default
    replicas = spec.get("replicas")
    workload = PodWorkload(
        obj, labels, str(account), replicas if isinstance(replicas, int) else 1, inject, _compose(app, where, obj, out)
    )
    workload.container_ports = _ports(app, where, obj, out)
    _report_containers(obj, sequence(containers), index, out)
    _report_left_out(obj, labels, meta, app, where, out)
    return workload


def _inject(label: Any, annotation: Any) -> bool | None:
    said = label if label is not None else annotation
    return None if said is None else str(said).lower() == "true"


def _escaped(value: Any) -> str:
    return str(value).replace("$", "$$")  # Compose would substitute `$VAR` from the host's environment


def _compose(app: dict[str, Any], where: str, obj: KubeObject, out: list[Diagnostic]) -> dict[str, Any]:
    compose: dict[str, Any] = {"image": app["image"]}
    for key, target in (("command", "entrypoint"), ("args", "command")):
        if isinstance(app.get(key), list):
            compose[target] = [_escaped(word) for word in app[key]]
    if isinstance(app.get("workingDir"), str):
        compose["working_dir"] = app["workingDir"]
    env: dict[str, str] = {}
    for i, entry in enumerate(sequence(app.get("env"))):
        if not isinstance(entry, dict) or "name" not in entry:
            continue
        if "valueFrom" in entry:
            path = join_path(join_path(where, "env"), i)
            message = (
                f"environment variable {entry['name']} comes from valueFrom (a ConfigMap, Secret or field): left out"
            )
            out.append(obj.diagnostic(LEFT_OUT, Severity.WARNING, message, join_path(path, "valueFrom")))
            continue
        env[str(entry["name"])] = _escaped(entry.get("value", ""))
    if env:
        compose["environment"] = env
    policy = app.get("imagePullPolicy")
    if isinstance(policy, str) and policy in PULL_POLICIES:
        compose["pull_policy"] = PULL_POLICIES[policy]
    return compose


def _ports(app: dict[str, Any], where: str, obj: KubeObject, out: list[Diagnostic]) -> dict[int, str | None]:
    ports: dict[int, str | None] = {}
    for i, entry in enumerate(sequence(app.get("ports"))):
        path = join_path(join_path(where, "ports"), i)
        if not isinstance(entry, dict) or not isinstance(entry.get("containerPort"), int):
            continue
        if str(entry.get("protocol", "TCP")).upper() != "TCP":
            message = f"{entry.get('protocol')} port {entry['containerPort']} left out: the sandbox's mesh carries TCP"
            out.append(obj.diagnostic(LEFT_OUT, Severity.WARNING, message, join_path(path, "protocol")))
            continue
        if "hostPort" in entry:
            message = f"hostPort {entry['hostPort']} left out: publish ports through the ingress gateway"
            out.append(obj.diagnostic(LEFT_OUT, Severity.WARNING, message, join_path(path, "hostPort")))
        name = entry.get("name")
        ports[entry["containerPort"]] = str(name) if name is not None else None
    return ports


def _report_containers(obj: KubeObject, containers: list[Any], app: int, out: list[Diagnostic]) -> None:
    pod = obj.data["spec"]["template"]["spec"]
    groups = (("containers", containers), ("initContainers", sequence(pod.get("initContainers"))))
    for key, items in groups:
        for i, c in enumerate(items):
            if key == "containers" and i == app:
                continue
            name = c.get("name") if isinstance(c, dict) else None
            path = join_path(join_path(POD, key), i)
            if name in ISTIO_CONTAINERS:
                message = f"Istio's injected {name} container is left out: the sandbox adds its own sidecar"
                out.append(obj.diagnostic(ADAPTED, Severity.INFO, message, path))
            elif key == "initContainers":
                message = f"init container '{name}' is left out: the sandbox has no init containers"
                out.append(obj.diagnostic(LEFT_OUT, Severity.WARNING, message, path))
            else:
                message = f"container '{name}' is left out: the sandbox runs one app container per workload"
                out.append(obj.diagnostic(LEFT_OUT, Severity.WARNING, message, path))


def _report_left_out(
    obj: KubeObject,
    pod_labels: dict[str, str],
    pod_meta: dict[str, Any],
    app: dict[str, Any],
    where: str,
    out: list[Diagnostic],
) -> None:
    paths = [*left_out(obj.data, WORKLOAD), *left_out(app, CONTAINER, where)]
    for path in paths:
        key = path.rsplit("/", 1)[-1]
        out.append(obj.diagnostic(LEFT_OUT, Severity.WARNING, f"{key} left out: {reason(path)}", path))
    own = mapping(obj.metadata.get("labels"))
    extra = sorted(k for k, v in own.items() if pod_labels.get(str(k)) != str(v) and k != INJECT_KEY)
    if extra:
        message = f"{obj.kind} labels left out ({', '.join(extra)}): the sandbox keeps the pod's labels"
        out.append(obj.diagnostic(LEFT_OUT, Severity.INFO, message, "metadata/labels"))
    notes = [k for k in mapping(obj.metadata.get("annotations")) if k not in SERVER_ANNOTATIONS]
    if notes:
        message = f"{obj.kind} annotations left out ({', '.join(map(str, notes))})"
        out.append(obj.diagnostic(LEFT_OUT, Severity.INFO, message, "metadata/annotations"))
    pod_notes = [k for k in mapping(pod_meta.get("annotations")) if k != INJECT_KEY]
    if pod_notes:
        message = f"pod annotations left out ({', '.join(map(str, pod_notes))}): the sandbox does not read them"
        out.append(obj.diagnostic(LEFT_OUT, Severity.WARNING, message, "spec/template/metadata/annotations"))
