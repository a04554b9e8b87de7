"""The mesh's applications, workloads and services as Kiali lists and details them. Pure: the
Compose topology, the sidecars' sync rows, the resources in force and the health maps in; the
JSON of Kiali's `/api/namespaces/NS/apps|workloads|services[/NAME]` out (its field names, plus the
few the sandbox adds: a workload's sidecars with their sync state and admin URL).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sandbox.console.health import NA, WorkloadStatus
from sandbox.mesh.names import resolve_host, service_fqdn
from sandbox.mesh.topology import Topology, Workload

CLUSTER = "Kubernetes"  # Istio's default cluster id, as the metrics label it
ISTIO_KINDS = ("VirtualService", "DestinationRule", "Gateway", "ServiceEntry", "Sidecar")


@dataclass(frozen=True)
class ProxyRow:
    """One sidecar: where it is (mesh record) and what the control plane says of it (/debug/syncz)."""

    node: str
    workload: str
    namespace: str
    state: str = "DISCONNECTED"  # SYNCED, STALE, NACK, DISCONNECTED, UNKNOWN
    connected: bool = False
    version_acked: str = ""
    since_last_ack: float | None = None
    nack_reason: str = ""
    admin: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.node,
            "workload": self.workload,
            "namespace": self.namespace,
            "status": self.state,
            "connected": self.connected,
            "versionAcked": self.version_acked,
            "sinceLastAck": self.since_last_ack,
            "nackReason": self.nack_reason,
            "admin": self.admin,
        }


def namespaces_of(topology: Topology, resources: Iterable[Mapping[str, Any]] = ()) -> list[str]:
    found = set(topology.namespaces) | {str(r.get("namespace")) for r in resources if r.get("namespace")}
    return sorted(found)


def workload_status(workload: Workload, proxies: Sequence[ProxyRow]) -> WorkloadStatus:
    """Replicas as Kiali counts pods: a sidecar the mesh record lists is a current replica, a
    connected one is available, a SYNCED one a synced proxy; without a sidecar, -1 synced."""
    mine = [p for p in proxies if p.workload == workload.name and p.namespace == workload.namespace]
    if not workload.inject:
        return WorkloadStatus(workload.name, workload.replicas, workload.replicas, workload.replicas, -1)
    current = len(mine) or 0
    available = sum(p.connected for p in mine)
    synced = sum(p.state == "SYNCED" for p in mine)
    return WorkloadStatus(workload.name, workload.replicas, current, available, synced)


def _ns(name: str) -> dict[str, str]:
    return {"name": name, "cluster": CLUSTER}


def _health_status(health: Mapping[str, Any] | None) -> str:
    return str(((health or {}).get("status") or {}).get("status", NA))


def app_names(topology: Topology, namespace: str) -> list[str]:
    return sorted({w.app for w in topology.workloads if w.namespace == namespace})


def app_list(topology: Topology, namespace: str, health: Mapping[str, Any]) -> dict[str, Any]:
    apps = []
    for name in app_names(topology, namespace):
        workloads = [w for w in topology.workloads if w.namespace == namespace and w.app == name]
        apps.append(
            {
                "name": name,
                "namespace": namespace,
                "cluster": CLUSTER,
                "istioSidecar": all(w.inject for w in workloads),
                "labels": {"app": name, "version": ",".join(sorted({w.version for w in workloads if w.version}))},
                "versions": sorted({w.version for w in workloads if w.version}),
                "workloads": [w.name for w in workloads],
                "health": health.get(name),
                "healthStatus": _health_status(health.get(name)),
            }
        )
    return {"namespace": _ns(namespace), "cluster": CLUSTER, "applications": apps}


def workload_json(w: Workload, proxies: Sequence[ProxyRow], health: Mapping[str, Any] | None) -> dict[str, Any]:
    pods = [p for p in proxies if p.workload == w.name and p.namespace == w.namespace]
    status = workload_status(w, proxies)
    return {
        "name": w.name,
        "namespace": w.namespace,
        "cluster": CLUSTER,
        "type": "Deployment",
        "appLabel": bool(w.app),
        "versionLabel": bool(w.version),
        "labels": dict(w.labels),
        "istioSidecar": w.inject,
        "serviceAccountNames": [w.service_account],
        "replicas": w.replicas,
        "availableReplicas": status.available,
        "podCount": status.current,
        "port": w.port,
        "pods": [p.to_json() for p in sorted(pods, key=lambda p: p.node)],
        "health": health,
        "healthStatus": _health_status(health),
    }


def workload_list(
    topology: Topology, namespace: str, proxies: Sequence[ProxyRow], health: Mapping[str, Any]
) -> dict[str, Any]:
    workloads = [w for w in topology.workloads if w.namespace == namespace]
    return {
        "namespace": _ns(namespace),
        "workloads": [workload_json(w, proxies, health.get(w.name)) for w in sorted(workloads, key=lambda w: w.name)],
    }


def _references(resources: Iterable[Mapping[str, Any]], fqdn: str, namespaces: Iterable[str]) -> list[dict[str, str]]:
    """The Istio objects that name a service's host: VirtualServices by hosts/destinations,
    DestinationRules by host (what Kiali's service details list under Istio Config)."""
    known = set(namespaces)
    found = []
    for r in resources:
        manifest, ns = r.get("manifest") or {}, str(r.get("namespace", ""))
        spec = manifest.get("spec") or {}
        hosts: list[str] = []
        if r.get("kind") == "VirtualService":
            hosts = [str(h) for h in spec.get("hosts") or ()]
            for section in ("http", "tcp", "tls"):
                for route in spec.get(section) or ():
                    for d in (route or {}).get("route") or ():
                        hosts.append(str(((d or {}).get("destination") or {}).get("host", "")))
        elif r.get("kind") == "DestinationRule":
            hosts = [str(spec.get("host", ""))]
        if any(resolve_host(h, ns, known) == fqdn for h in hosts if h):
            found.append({"objectType": str(r.get("kind")), "name": str(r.get("name")), "namespace": ns})
    return found


def service_list(
    topology: Topology,
    namespace: str,
    health: Mapping[str, Any],
    resources: Sequence[Mapping[str, Any]],
    validations: Mapping[tuple[str, str, str], Mapping[str, Any]],
) -> dict[str, Any]:
    services = []
    namespaces = namespaces_of(topology, resources)
    for s in sorted((s for s in topology.services if s.namespace == namespace), key=lambda s: s.name):
        refs = _references(resources, s.fqdn, namespaces)
        checks = [
            validations[(r["objectType"], r["namespace"], r["name"])]
            for r in refs
            if (r["objectType"], r["namespace"], r["name"]) in validations
        ]
        services.append(
            {
                "name": s.name,
                "namespace": namespace,
                "cluster": CLUSTER,
                "istioSidecar": all(w.inject for w in topology.workloads if w.name in s.workloads),
                "labels": {"app": s.name},
                "selector": {"app": s.name},
                "ports": [{"name": "http", "protocol": "TCP", "port": s.port}] if s.port else [],
                "istioReferences": refs,
                "validations": checks,
                "health": health.get(s.name),
                "healthStatus": _health_status(health.get(s.name)),
            }
        )
    return {"namespace": _ns(namespace), "services": services}


def service_details(
    topology: Topology,
    namespace: str,
    name: str,
    proxies: Sequence[ProxyRow],
    endpoints: Sequence[Mapping[str, str]],
    resources: Sequence[Mapping[str, Any]],
    health: Mapping[str, Any] | None,
) -> dict[str, Any] | None:
    service = next((s for s in topology.services if s.namespace == namespace and s.name == name), None)
    if service is None:
        return None
    namespaces = namespaces_of(topology, resources)
    workloads = [w for w in topology.workloads if w.name in service.workloads and w.namespace == namespace]
    refs = _references(resources, service.fqdn, namespaces)
    return {
        "service": {
            "name": name,
            "namespace": namespace,
            "cluster": CLUSTER,
            "type": "ClusterIP",
            "labels": {"app": name},
            "selectors": {"app": name},
            "ports": [{"name": "http", "protocol": "TCP", "port": service.port}] if service.port else [],
            "host": service.fqdn,
        },
        "endpoints": [dict(e) for e in endpoints],
        "workloads": [workload_json(w, proxies, None) for w in workloads],
        "virtualServices": [r for r in refs if r["objectType"] == "VirtualService"],
        "destinationRules": [r for r in refs if r["objectType"] == "DestinationRule"],
        "istioReferences": refs,
        "health": health,
        "healthStatus": _health_status(health),
    }


def app_details(
    topology: Topology, namespace: str, name: str, proxies: Sequence[ProxyRow], health: Mapping[str, Any] | None
) -> dict[str, Any] | None:
    workloads = [w for w in topology.workloads if w.namespace == namespace and w.app == name]
    if not workloads:
        return None
    return {
        "namespace": _ns(namespace),
        "name": name,
        "cluster": CLUSTER,
        "workloads": [
            {
                "workloadName": w.name,
                "istioSidecar": w.inject,
                "labels": dict(w.labels),
                "serviceAccountNames": [w.service_account],
                "healthStatus": workload_status(w, proxies).status(),
            }
            for w in sorted(workloads, key=lambda w: w.name)
        ],
        "serviceNames": sorted({s.name for s in topology.services if s.namespace == namespace and s.name == name}),
        "health": health,
        "healthStatus": _health_status(health),
    }


def config_for_workload(
    workload: Workload, resources: Sequence[Mapping[str, Any]], namespaces: Iterable[str]
) -> list[dict[str, str]]:
    """The Istio objects that apply to a workload: those naming its service's host, and the
    selector-based ones whose labels it carries (or that have no selector in its namespace)."""
    refs = _references(resources, service_fqdn(workload.app, workload.namespace), namespaces)
    for r in resources:
        if r.get("kind") in ("VirtualService", "DestinationRule"):
            continue
        spec = (r.get("manifest") or {}).get("spec") or {}
        selector = (
            (spec.get("selector") or {}).get("matchLabels") if r.get("kind") != "Gateway" else spec.get("selector")
        )
        selector = selector or (spec.get("workloadSelector") or {}).get("labels")
        if selector and all(workload.labels.get(k) == v for k, v in selector.items()):
            refs.append(
                {"objectType": str(r.get("kind")), "name": str(r.get("name")), "namespace": str(r.get("namespace"))}
            )
    return refs
