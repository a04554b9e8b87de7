"""A workload's ports from the Services that select it (import direction).

The sandbox's mesh port is both the service port and the port the app listens on; Kubernetes lets
a Service's `port` differ from the container's `targetPort`. The mesh keeps the service port (rules
name it) and says so when the two differ; `x-sandbox.ports` keeps every port, target included, so an
export writes the Service as it was.
"""

from __future__ import annotations

from typing import Any

from sandbox.kube.kservices import KubePort, KubeService
from sandbox.kube.objects import ADAPTED
from sandbox.kube.pods import PodWorkload
from sandbox.mesh.diagnostics import Diagnostic, Severity


def mesh_ports(pod: PodWorkload, selecting: list[KubeService], out: list[Diagnostic]) -> dict[str, Any]:
    """`port` and, when it says more than `[{name: http, port: P}]`, `ports` for x-sandbox."""
    obj = pod.obj
    service = selecting[0] if selecting else None
    chosen = service.mesh_port if service else None
    if service is None or chosen is None:
        if not pod.container_ports:
            message = "no Service selects it and its container declares no port: nothing can reach it in the mesh"
            out.append(obj.diagnostic(ADAPTED, Severity.WARNING, message, "spec/template/spec/containers"))
            return {}
        return {"port": next(iter(pod.container_ports))}
    ports = []
    for p in service.ports:
        target = _target(p, pod)
        entry: dict[str, Any] = {"name": p.name or "", "port": p.port}
        if target is not None and target != p.port:
            entry["targetPort"] = target
        ports.append(entry)
        if p is chosen and target is not None and target != p.port:
            message = (
                f"Service {service.obj.name} sends port {p.port} to container port {target}; in the sandbox the "
                f"mesh port is also the app's port, so the app must listen on {p.port}"
            )
            out.append(obj.diagnostic(ADAPTED, Severity.WARNING, message, "spec/template/spec/containers"))
        if target is None:
            message = f"Service {service.obj.name} targets port '{p.target}', which no container port is named"
            out.append(service.obj.diagnostic(ADAPTED, Severity.WARNING, message, "spec/ports"))
    settings: dict[str, Any] = {"port": chosen.port}
    if ports != [{"name": "http", "port": chosen.port}]:
        settings["ports"] = ports
    return settings


def _target(port: KubePort, pod: PodWorkload) -> int | None:
    if port.target is None:
        return port.port
    if isinstance(port.target, int):
        return port.target
    if port.target.isdigit():
        return int(port.target)
    return next((number for number, name in pod.container_ports.items() if name == port.target), None)
