"""Which mutual-TLS mode a workload's inbound port is in, by Istio's PeerAuthentication rules. Pure.

Precedence (Istio's authn policy applier): the root namespace's selector-less policy is the mesh's,
a namespace's selector-less policy overrides it there, and a policy whose selector picks the
workload overrides both (the oldest first, here the first in file order); `portLevelMtls` of that
workload policy overrides it for one port. A mode that is UNSET (or absent) inherits from the level
above; with nothing set anywhere the mode is PERMISSIVE. Shared by the control plane (what the
sidecar enforces), the analyzer and the console (what they show).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sandbox.mesh.names import labels_match
from sandbox.mesh.resources import Resource
from sandbox.mesh.resources.security import MTLSMode, PeerAuthenticationSpec
from sandbox.mesh.state import MeshState
from sandbox.mesh.topology import Workload

ROOT_NAMESPACE = "istio-system"


@dataclass(frozen=True)
class PeerMode:
    mode: MTLSMode  # STRICT, PERMISSIVE or DISABLE
    source: str = ""  # the PeerAuthentication that decided it (Kind/namespace/name), "" for the default
    level: str = "default"  # default, mesh, namespace, workload or port


def _mode(value: Any) -> MTLSMode | None:
    return None if value is None or value is MTLSMode.UNSET else value


def _selector(pa: Resource[PeerAuthenticationSpec]) -> dict[str, str]:
    return pa.spec.selector.match_labels if pa.spec.selector is not None else {}


def workload_policy(
    state: MeshState, namespace: str, labels: Mapping[str, str]
) -> Resource[PeerAuthenticationSpec] | None:
    """The workload-level PeerAuthentication that selects these labels (the first one)."""
    for pa in state.peer_authentications:
        selector = _selector(pa)
        if pa.namespace == namespace and selector and labels_match(selector, labels):
            return pa
    return None


def peer_mode(state: MeshState, namespace: str, labels: Mapping[str, str], port: int | None = None) -> PeerMode:
    """The mTLS mode in force for the workload (and, when given, its inbound `port`)."""
    result = PeerMode(MTLSMode.PERMISSIVE)
    levels: list[tuple[str, Resource[PeerAuthenticationSpec] | None]] = [
        ("mesh", _selectorless(state, ROOT_NAMESPACE)),
        ("namespace", _selectorless(state, namespace) if namespace != ROOT_NAMESPACE else None),
        ("workload", workload_policy(state, namespace, labels)),
    ]
    for level, pa in levels:
        if pa is None:
            continue
        mode = _mode(pa.spec.mtls.mode if pa.spec.mtls is not None else None)
        if mode is not None:
            result = PeerMode(mode, pa.ref, level)
        if level == "workload" and port is not None:
            at_port = pa.spec.port_level_mtls.get(str(port))
            port_mode = _mode(at_port.mode if at_port is not None else None)
            if port_mode is not None:
                result = PeerMode(port_mode, pa.ref, "port")
    return result


def _selectorless(state: MeshState, namespace: str) -> Resource[PeerAuthenticationSpec] | None:
    return next((pa for pa in state.peer_authentications if pa.namespace == namespace and not _selector(pa)), None)


def inbound_mode(state: MeshState, workload: Workload) -> PeerMode | None:
    """The mode the workload's sidecar enforces on its inbound listener (its `x-sandbox.port`, as
    the control plane compiles it); None where nothing is enforced: a gateway, a workload without a
    sidecar or without a port."""
    if workload.builtin or not workload.inject or workload.port is None:
        return None
    return peer_mode(state, workload.namespace, workload.labels, workload.port)
