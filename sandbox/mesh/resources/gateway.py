"""networking.istio.io Gateway, ServiceEntry, WorkloadEntry and Sidecar."""

from __future__ import annotations

from dataclasses import field
from enum import StrEnum

from sandbox.mesh.resources.common import WorkloadSelector, model
from sandbox.mesh.resources.destinationrule import ClientTLSSettings, ConnectionPoolSettings
from sandbox.mesh.resources.virtualservice import Destination


@model
class Port:
    number: int
    protocol: str | None = None
    name: str | None = None
    target_port: int | None = None


class ServerTLSMode(StrEnum):
    PASSTHROUGH = "PASSTHROUGH"
    SIMPLE = "SIMPLE"
    MUTUAL = "MUTUAL"
    AUTO_PASSTHROUGH = "AUTO_PASSTHROUGH"
    ISTIO_MUTUAL = "ISTIO_MUTUAL"
    OPTIONAL_MUTUAL = "OPTIONAL_MUTUAL"


class TLSProtocol(StrEnum):
    TLS_AUTO = "TLS_AUTO"
    TLSV1_0 = "TLSV1_0"
    TLSV1_1 = "TLSV1_1"
    TLSV1_2 = "TLSV1_2"
    TLSV1_3 = "TLSV1_3"


@model
class ServerTLSSettings:
    https_redirect: bool | None = None
    mode: ServerTLSMode | None = None
    server_certificate: str | None = None
    private_key: str | None = None
    ca_certificates: str | None = None
    ca_crl: str | None = None
    credential_name: str | None = None
    credential_names: tuple[str, ...] = ()
    subject_alt_names: tuple[str, ...] = ()
    verify_certificate_spki: tuple[str, ...] = ()
    verify_certificate_hash: tuple[str, ...] = ()
    min_protocol_version: TLSProtocol | None = None
    max_protocol_version: TLSProtocol | None = None
    cipher_suites: tuple[str, ...] = ()


@model
class Server:
    port: Port
    hosts: tuple[str, ...] = ()
    bind: str | None = None
    tls: ServerTLSSettings | None = None
    default_endpoint: str | None = None
    name: str | None = None


@model
class GatewaySpec:
    servers: tuple[Server, ...] = ()
    selector: dict[str, str] = field(default_factory=dict)


class Location(StrEnum):
    MESH_EXTERNAL = "MESH_EXTERNAL"
    MESH_INTERNAL = "MESH_INTERNAL"


class Resolution(StrEnum):
    NONE = "NONE"
    STATIC = "STATIC"
    DNS = "DNS"
    DNS_ROUND_ROBIN = "DNS_ROUND_ROBIN"
    DYNAMIC_DNS = "DYNAMIC_DNS"


@model
class WorkloadEntrySpec:
    address: str | None = None
    ports: dict[str, int] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    network: str | None = None
    locality: str | None = None
    weight: int | None = None
    service_account: str | None = None


@model
class ServiceEntrySpec:
    hosts: tuple[str, ...] = ()
    addresses: tuple[str, ...] = ()
    ports: tuple[Port, ...] = ()
    location: Location | None = None
    resolution: Resolution | None = None
    endpoints: tuple[WorkloadEntrySpec, ...] = ()
    workload_selector: WorkloadSelector | None = None
    export_to: tuple[str, ...] = ()
    subject_alt_names: tuple[str, ...] = ()


class OutboundTrafficPolicyMode(StrEnum):
    REGISTRY_ONLY = "REGISTRY_ONLY"
    ALLOW_ANY = "ALLOW_ANY"


@model
class OutboundTrafficPolicy:
    mode: OutboundTrafficPolicyMode | None = None
    egress_proxy: Destination | None = None


class CaptureMode(StrEnum):
    DEFAULT = "DEFAULT"
    IPTABLES = "IPTABLES"
    NONE = "NONE"


@model
class IstioIngressListener:
    port: Port
    bind: str | None = None
    capture_mode: CaptureMode | None = None
    default_endpoint: str | None = None
    tls: ServerTLSSettings | None = None
    connection_pool: ConnectionPoolSettings | None = None


@model
class IstioEgressListener:
    hosts: tuple[str, ...] = ()
    port: Port | None = None
    bind: str | None = None
    capture_mode: CaptureMode | None = None


@model
class SidecarSpec:
    workload_selector: WorkloadSelector | None = None
    ingress: tuple[IstioIngressListener, ...] = ()
    egress: tuple[IstioEgressListener, ...] = ()
    inbound_connection_pool: ConnectionPoolSettings | None = None
    outbound_traffic_policy: OutboundTrafficPolicy | None = None


__all__ = ["ClientTLSSettings"]
