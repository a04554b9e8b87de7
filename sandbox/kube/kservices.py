"""Kubernetes Services, ServiceAccounts and Namespaces as the sandbox reads them (import direction).

A Service with a selector is a mesh service: the workloads it selects get its name as their `app`
label and its ports as `x-sandbox.port`/`ports`. The mesh port is the first port Istio reads as
HTTP by its name (`http`, `http2`, `grpc`, `grpc-web`, with or without a suffix), else the first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sandbox.kube.names import HTTP_PROTOCOLS, INJECTION_LABEL, port_protocol
from sandbox.kube.objects import KIND_LEFT_OUT, LEFT_OUT, SERVER_FIELDS, KubeObject, left_out, mapping, sequence
from sandbox.mesh.diagnostics import Diagnostic, Severity, join_path

METADATA = {"name": True, "namespace": True, "labels": True, "annotations": True, **SERVER_FIELDS}
SERVICE = {
    "apiVersion": True,
    "kind": True,
    "status": True,
    "metadata": METADATA,
    # type, clusterIP and sessionAffinity are read below; the rest kubectl fills in with defaults
    "spec": dict.fromkeys(("ports", "selector", "type", "clusterIP", "sessionAffinity"), True)
    | dict.fromkeys(("clusterIPs", "ipFamilies", "ipFamilyPolicy", "internalTrafficPolicy"), True),
}
PORT = dict.fromkeys(("name", "port", "targetPort", "protocol"), True)
ACCOUNT = {"apiVersion": True, "kind": True, "metadata": METADATA}
NAMESPACE = {"apiVersion": True, "kind": True, "status": True, "metadata": METADATA, "spec": True}
OWN_LABELS = ("app", "service")  # what `export` puts on a Service


@dataclass(frozen=True)
class KubePort:
    name: str | None
    port: int
    target: int | str | None  # a number, a container port's name, or None (= port)


@dataclass(frozen=True, eq=False)  # identity: one per Service object read
class KubeService:
    obj: KubeObject
    selector: dict[str, str]
    ports: tuple[KubePort, ...]

    def selects(self, namespace: str, labels: dict[str, str]) -> bool:
        return self.obj.namespace == namespace and all(labels.get(k) == v for k, v in self.selector.items())

    @property
    def mesh_port(self) -> KubePort | None:
        http = [p for p in self.ports if port_protocol(p.name) in HTTP_PROTOCOLS]
        return next(iter(http or self.ports), None)


def read_service(obj: KubeObject, out: list[Diagnostic]) -> KubeService | None:
    spec = mapping(obj.data.get("spec"))
    selector = {str(k): str(v) for k, v in mapping(spec.get("selector")).items()}
    kind = spec.get("type", "ClusterIP")
    if not selector or kind == "ExternalName":
        why = "an ExternalName Service" if kind == "ExternalName" else "a Service without a selector"
        message = f"{why} does not front imported workloads: left out (a ServiceEntry tells the mesh of a host)"
        out.append(obj.diagnostic(KIND_LEFT_OUT, Severity.WARNING, message, "spec"))
        return None
    if kind not in ("ClusterIP", None):
        message = f"type {kind} left out: the sandbox reaches services from outside through its ingress gateway"
        out.append(obj.diagnostic(LEFT_OUT, Severity.WARNING, message, "spec/type"))
    if spec.get("sessionAffinity") not in (None, "None"):
        message = "sessionAffinity left out: a DestinationRule's consistentHash load balancer does this in a mesh"
        out.append(obj.diagnostic(LEFT_OUT, Severity.WARNING, message, "spec/sessionAffinity"))
    ports = []
    for i, entry in enumerate(sequence(spec.get("ports"))):
        port = _port(obj, mapping(entry), join_path("spec/ports", i), out)
        if port is not None:
            ports.append(port)
    _report(obj, SERVICE, out)
    return KubeService(obj, selector, tuple(ports))


def _port(obj: KubeObject, entry: dict[str, Any], path: str, out: list[Diagnostic]) -> KubePort | None:
    number = entry.get("port")
    if not isinstance(number, int):
        return None
    if str(entry.get("protocol", "TCP")).upper() != "TCP":
        message = f"{entry.get('protocol')} port {number} left out: the sandbox's mesh carries TCP"
        out.append(obj.diagnostic(LEFT_OUT, Severity.WARNING, message, join_path(path, "protocol")))
        return None
    for key in left_out(entry, PORT):
        message = f"{key} of port {number} left out: it has no counterpart in the sandbox"
        out.append(obj.diagnostic(LEFT_OUT, Severity.WARNING, message, join_path(path, key)))
    target = entry.get("targetPort")
    name = entry.get("name")
    return KubePort(str(name) if name is not None else None, number, target if isinstance(target, int | str) else None)


def read_account(obj: KubeObject, out: list[Diagnostic]) -> None:
    _report(obj, ACCOUNT, out)


def namespace_injection(obj: KubeObject) -> bool:
    """Whether Istio injects sidecars into this Namespace's pods (by label; a revision label counts)."""
    labels = mapping(obj.metadata.get("labels"))
    return labels.get(INJECTION_LABEL) == "enabled" or (
        "istio.io/rev" in labels and labels.get(INJECTION_LABEL) != "disabled"
    )


def read_namespace(obj: KubeObject, out: list[Diagnostic]) -> None:
    _report(obj, NAMESPACE, out, skip=(INJECTION_LABEL, "istio.io/rev", "kubernetes.io/metadata.name"))


def _report(
    obj: KubeObject, handled: dict[str, Any], out: list[Diagnostic], skip: tuple[str, ...] = OWN_LABELS
) -> None:
    for path in left_out(obj.data, handled):
        message = f"{path.rsplit('/', 1)[-1]} left out: it has no counterpart in the sandbox"
        out.append(obj.diagnostic(LEFT_OUT, Severity.WARNING, message, path))
    labels = [k for k in mapping(obj.metadata.get("labels")) if k not in skip]
    if labels:
        message = f"{obj.kind} labels left out ({', '.join(map(str, labels))}): the sandbox does not model them"
        out.append(obj.diagnostic(LEFT_OUT, Severity.INFO, message, "metadata/labels"))
    notes = list(mapping(obj.metadata.get("annotations")))
    if notes:
        message = f"{obj.kind} annotations left out ({', '.join(map(str, notes))})"
        out.append(obj.diagnostic(LEFT_OUT, Severity.INFO, message, "metadata/annotations"))
