"""The service registry one proxy sees: Compose mesh services plus visible ServiceEntries.

Istio builds routes and clusters from one registry whatever a host's origin (Kubernetes Services
or ServiceEntries); so does compile. Reference: docs/reference/istio-semantics.md §1.4.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from sandbox.mesh.names import labels_match
from sandbox.mesh.peerauth import peer_mode
from sandbox.mesh.resources import Resource, ServiceEntrySpec
from sandbox.mesh.resources.gateway import Port, Resolution
from sandbox.mesh.resources.security import MTLSMode
from sandbox.mesh.state import MeshState
from sandbox.mesh.topology import Service, Workload
from sandbox.xds import snapshot as snap

EndpointResolver = Callable[[Workload, int, int], str]
"""(workload, replica index, service port) -> "host:port" the client sidecar connects to."""

HTTP_PROTOCOLS = frozenset({"HTTP", "HTTP2", "GRPC", "GRPC-WEB"})


def visible_to(export_to: tuple[str, ...], own_namespace: str, client_namespace: str) -> bool:
    """exportTo: empty or `*` -> everyone; `.` -> the resource's namespace; `~` -> nobody."""
    if not export_to or "*" in export_to:
        return True
    if "." in export_to and client_namespace == own_namespace:
        return True
    return client_namespace in export_to


@dataclass(frozen=True)
class RegistryService:
    """One host with its ports: a mesh service (`mesh`) or a ServiceEntry host (`entry`)."""

    fqdn: str
    namespace: str
    ports: tuple[int, ...]
    http_ports: tuple[int, ...]
    name: str = ""  # a mesh service's short name (for the domains Istio generates)
    mesh: Service | None = None
    entry: Resource[ServiceEntrySpec] | None = None
    entry_ports: dict[int, Port] = field(default_factory=dict, compare=False)

    @property
    def single_port(self) -> int | None:
        return self.ports[0] if len(self.ports) == 1 else None

    @property
    def resolution(self) -> str:
        spec = self.entry.spec if self.entry else None
        return (spec.resolution.value if spec and spec.resolution else "NONE") if spec else "MESH"

    def domains(self, port: int, proxy_namespace: str) -> tuple[str, ...]:
        """Istio's generateVirtualHostDomains: FQDN, name.ns.svc, name.ns, and the short name when
        the proxy shares the service's namespace; each also with `:port`. ServiceEntry hosts are
        used as written."""
        if self.mesh is None:
            return (self.fqdn, f"{self.fqdn}:{port}")
        names = [self.fqdn, f"{self.name}.{self.namespace}.svc", f"{self.name}.{self.namespace}"]
        if self.namespace == proxy_namespace:
            names.append(self.name)
        return tuple(d for n in names for d in (n, f"{n}:{port}"))


def build_registry(mesh: MeshState, proxy_namespace: str) -> list[RegistryService]:
    out: list[RegistryService] = []
    for s in mesh.topology.services:
        if s.port is not None:  # the Compose port is HTTP: the sandbox's data plane speaks HTTP/1.1
            out.append(RegistryService(s.fqdn, s.namespace, (s.port,), (s.port,), name=s.name, mesh=s))
    for s in mesh.topology.gateway_services:  # istio-egressgateway: every port of its Service
        http = tuple(p.port for p in s.ports if p.http)
        out.append(RegistryService(s.fqdn, s.namespace, tuple(p.port for p in s.ports), http, name=s.name, mesh=s))
    known = {s.fqdn for s in out}
    for se in mesh.service_entries:
        if not visible_to(se.spec.export_to, se.namespace, proxy_namespace) or not se.spec.ports:
            continue
        ports = {p.number: p for p in se.spec.ports}
        http = tuple(n for n, p in ports.items() if (p.protocol or "").upper() in HTTP_PROTOCOLS)
        for host in se.spec.hosts:
            fqdn = mesh.resolve(host, se.namespace)
            if fqdn.startswith("*") or fqdn in known:  # wildcard hosts need DYNAMIC_DNS; mesh services win
                continue
            known.add(fqdn)
            out.append(RegistryService(fqdn, se.namespace, tuple(ports), http, entry=se, entry_ports=ports))
    return out


def endpoints(
    mesh: MeshState, svc: RegistryService, port: int, selector: Mapping[str, str], resolver: EndpointResolver
) -> tuple[snap.Endpoint, ...]:
    """The endpoints of `svc` on `port` whose labels carry `selector` (a subset's labels)."""
    if svc.mesh is not None:
        return _workload_endpoints(mesh, svc.mesh.workloads, selector, resolver, port)
    assert svc.entry is not None
    spec = svc.entry.spec
    if spec.workload_selector is not None and spec.workload_selector.labels:
        names = tuple(
            w.name
            for w in mesh.topology.workloads
            if w.namespace == svc.namespace and not w.builtin and labels_match(spec.workload_selector.labels, w.labels)
        )
        return _workload_endpoints(mesh, names, selector, resolver, port)
    resolution = svc.resolution
    if resolution == Resolution.NONE.value:
        return ()  # ORIGINAL_DST: the proxy connects where the app was going
    declared = svc.entry_ports[port]
    out = []
    for i, we in enumerate(spec.endpoints):
        if not we.address or not labels_match(dict(selector), we.labels):
            continue
        target = we.ports.get(declared.name or "") or declared.target_port or port
        out.append(
            snap.Endpoint(
                address=f"{we.address}:{target}",
                workload=we.address,
                namespace=svc.namespace,
                service_account=we.service_account or "",
                labels=dict(we.labels),
                replica=i,
                sidecar=False,
            )
        )
    if not out and not spec.endpoints and resolution in ("DNS", "DNS_ROUND_ROBIN"):
        # DNS resolution with no endpoints: the host itself is resolved
        out.append(
            snap.Endpoint(
                address=f"{svc.fqdn}:{declared.target_port or port}",
                workload=svc.fqdn,
                namespace=svc.namespace,
                service_account="",
                sidecar=False,
            )
        )
    return tuple(out)


def _workload_endpoints(
    mesh: MeshState, names: tuple[str, ...], selector: Mapping[str, str], resolver: EndpointResolver, port: int
) -> tuple[snap.Endpoint, ...]:
    """Every replica of the named workloads, addressed at the workload's own port (its sidecar
    captures that port; for a mesh service it is also the service port); a gateway's at the
    service port `port`, which the resolver maps to the listener serving it."""
    out: list[snap.Endpoint] = []
    for name in names:
        workload = mesh.topology.workload(name)
        if workload is None or not labels_match(dict(selector), workload.labels):
            continue
        target = port if workload.builtin else workload.port
        if target is None:
            continue
        # auto mTLS: a sidecar (not a gateway: Istio labels only sidecars tlsMode=istio) accepts mutual
        # TLS unless its PeerAuthentication is DISABLE
        mtls = workload.inject and not workload.builtin
        if mtls and peer_mode(mesh, workload.namespace, workload.labels, target).mode is MTLSMode.DISABLE:
            mtls = False
        for replica in range(workload.replicas):
            out.append(
                snap.Endpoint(
                    address=resolver(workload, replica, target),
                    workload=workload.name,
                    namespace=workload.namespace,
                    service_account=workload.service_account,
                    labels=dict(workload.labels),
                    replica=replica,
                    sidecar=workload.inject,
                    mtls=mtls,
                )
            )
    return tuple(out)
