"""MeshState: the frozen, indexed view of everything (resources + topology) that consumers read."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from sandbox.mesh.names import resolve_host
from sandbox.mesh.resources import (
    AuthorizationPolicySpec,
    DestinationRuleSpec,
    GatewaySpec,
    PeerAuthenticationSpec,
    RequestAuthenticationSpec,
    Resource,
    ServiceEntrySpec,
    SidecarSpec,
    TelemetrySpec,
    VirtualServiceSpec,
    WorkloadEntrySpec,
)
from sandbox.mesh.topology import Topology, empty_topology


@dataclass(frozen=True)
class MeshState:
    resources: tuple[Resource[Any], ...] = ()
    topology: Topology = field(default_factory=empty_topology)

    @cached_property
    def by_kind(self) -> dict[str, tuple[Resource[Any], ...]]:
        groups: dict[str, list[Resource[Any]]] = defaultdict(list)
        for r in self.resources:
            groups[r.kind].append(r)
        return {k: tuple(v) for k, v in groups.items()}

    def of_kind(self, kind: str) -> tuple[Resource[Any], ...]:
        return self.by_kind.get(kind, ())

    @property
    def virtual_services(self) -> tuple[Resource[VirtualServiceSpec], ...]:
        return self.of_kind("VirtualService")

    @property
    def destination_rules(self) -> tuple[Resource[DestinationRuleSpec], ...]:
        return self.of_kind("DestinationRule")

    @property
    def gateways(self) -> tuple[Resource[GatewaySpec], ...]:
        return self.of_kind("Gateway")

    @property
    def service_entries(self) -> tuple[Resource[ServiceEntrySpec], ...]:
        return self.of_kind("ServiceEntry")

    @property
    def sidecars(self) -> tuple[Resource[SidecarSpec], ...]:
        return self.of_kind("Sidecar")

    @property
    def workload_entries(self) -> tuple[Resource[WorkloadEntrySpec], ...]:
        return self.of_kind("WorkloadEntry")

    @property
    def peer_authentications(self) -> tuple[Resource[PeerAuthenticationSpec], ...]:
        return self.of_kind("PeerAuthentication")

    @property
    def request_authentications(self) -> tuple[Resource[RequestAuthenticationSpec], ...]:
        return self.of_kind("RequestAuthentication")

    @property
    def authorization_policies(self) -> tuple[Resource[AuthorizationPolicySpec], ...]:
        return self.of_kind("AuthorizationPolicy")

    @property
    def telemetries(self) -> tuple[Resource[TelemetrySpec], ...]:
        return self.of_kind("Telemetry")

    @cached_property
    def namespaces(self) -> frozenset[str]:
        return self.topology.namespaces | {r.namespace for r in self.resources}

    @cached_property
    def service_hosts(self) -> frozenset[str]:
        """FQDNs of the mesh services the Compose file defines, and the egress gateway's."""
        return frozenset(s.fqdn for s in (*self.topology.services, *self.topology.gateway_services))

    def resolve(self, host: str, namespace: str) -> str:
        return resolve_host(host, namespace, self.namespaces)

    @cached_property
    def destination_rules_by_host(self) -> dict[str, tuple[Resource[DestinationRuleSpec], ...]]:
        """DestinationRules indexed by their resolved host (wildcards kept as written)."""
        index: dict[str, list[Resource[DestinationRuleSpec]]] = defaultdict(list)
        for dr in self.destination_rules:
            index[self.resolve(dr.spec.host, dr.namespace)].append(dr)
        return {k: tuple(v) for k, v in index.items()}
