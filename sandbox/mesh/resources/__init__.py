"""Frozen dataclasses for the Istio APIs, in Istio's vocabulary, and the registry of kinds."""

from __future__ import annotations

from sandbox.mesh.resources.destinationrule import DestinationRuleSpec, Subset, TrafficPolicy
from sandbox.mesh.resources.gateway import (
    GatewaySpec,
    ServiceEntrySpec,
    SidecarSpec,
    WorkloadEntrySpec,
)
from sandbox.mesh.resources.meta import KindInfo, ObjectMeta, Origin, Resource
from sandbox.mesh.resources.security import (
    AuthorizationPolicySpec,
    PeerAuthenticationSpec,
    RequestAuthenticationSpec,
)
from sandbox.mesh.resources.telemetry import EnvoyFilterSpec, TelemetrySpec
from sandbox.mesh.resources.virtualservice import HTTPRoute, VirtualServiceSpec

NETWORKING = "networking.istio.io"
SECURITY = "security.istio.io"
TELEMETRY = "telemetry.istio.io"
_NET_VERSIONS = ("v1", "v1beta1", "v1alpha3")
_SEC_VERSIONS = ("v1", "v1beta1")

KINDS: dict[str, KindInfo] = {
    k.kind: k
    for k in (
        KindInfo("VirtualService", NETWORKING, _NET_VERSIONS, VirtualServiceSpec, ("vs",), "virtualservices"),
        KindInfo("DestinationRule", NETWORKING, _NET_VERSIONS, DestinationRuleSpec, ("dr",), "destinationrules"),
        KindInfo("Gateway", NETWORKING, _NET_VERSIONS, GatewaySpec, ("gw",), "gateways"),
        KindInfo("ServiceEntry", NETWORKING, _NET_VERSIONS, ServiceEntrySpec, ("se",), "serviceentries"),
        KindInfo("Sidecar", NETWORKING, _NET_VERSIONS, SidecarSpec, ("sidecar",), "sidecars"),
        KindInfo("WorkloadEntry", NETWORKING, _NET_VERSIONS, WorkloadEntrySpec, ("we",), "workloadentries"),
        KindInfo("PeerAuthentication", SECURITY, _SEC_VERSIONS, PeerAuthenticationSpec, ("pa",), "peerauthentications"),
        KindInfo(
            "RequestAuthentication",
            SECURITY,
            _SEC_VERSIONS,
            RequestAuthenticationSpec,
            ("ra",),
            "requestauthentications",
        ),
        KindInfo(
            "AuthorizationPolicy", SECURITY, _SEC_VERSIONS, AuthorizationPolicySpec, ("ap",), "authorizationpolicies"
        ),
        KindInfo("Telemetry", TELEMETRY, ("v1", "v1alpha1"), TelemetrySpec, ("telemetry",), "telemetries"),
        KindInfo("EnvoyFilter", NETWORKING, ("v1alpha3",), EnvoyFilterSpec, ("ef",), "envoyfilters"),
    )
}


def register(info: KindInfo) -> None:
    """Add a kind (the legacy APIs register themselves this way)."""
    KINDS[info.kind] = info


def lookup_kind(name: str) -> KindInfo | None:
    """A kind by its name, plural or short name, case-insensitively (`vs`, `virtualservices`)."""
    lowered = name.lower()
    for info in KINDS.values():
        if lowered in (info.kind.lower(), info.plural, *info.short_names):
            return info
    return None


__all__ = [
    "KINDS",
    "AuthorizationPolicySpec",
    "DestinationRuleSpec",
    "EnvoyFilterSpec",
    "GatewaySpec",
    "HTTPRoute",
    "KindInfo",
    "ObjectMeta",
    "Origin",
    "PeerAuthenticationSpec",
    "RequestAuthenticationSpec",
    "Resource",
    "ServiceEntrySpec",
    "SidecarSpec",
    "Subset",
    "TelemetrySpec",
    "TrafficPolicy",
    "VirtualServiceSpec",
    "WorkloadEntrySpec",
    "lookup_kind",
    "register",
]
