"""Kiali's mTLS consistency checks between PeerAuthentications and DestinationRules, as Kiali's
checkers decide them (business/checkers/destinationrules/*mtls*, peerauthentications/*):
KIA0204-KIA0208 on DestinationRules, KIA0401/0501/0505/0506 on PeerAuthentications.

Kiali reads the resources literally, and so does this module:
- mesh-wide means a DestinationRule whose `host` is written `*.local`, namespace-wide one whose
  host is `*.<its namespace>.svc.cluster.local`; a rule's mode is its top-level
  `trafficPolicy.tls.mode`, and a `tls` without a mode is DISABLE (the enum's zero value).
- a PeerAuthentication is namespace- or mesh-wide only without any `selector` (Kiali's
  PeerAuthnHasMTLSEnabled; even `selector: {}` makes it a workload policy); mesh-wide ones live in
  the root namespace `istio-system`; `mtls: {}` is UNSET.
- where Kiali takes the first match of a list (a namespace's PeerAuthentications, the
  DestinationRules), this takes the first in file order.
Auto mTLS is on (Istio's default, and the only mode the sidecars run), which turns KIA0205, KIA0206,
KIA0401 and KIA0501 off, as in Kiali; `Context.auto_mtls=False` shows them.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sandbox.mesh.analysis.context import Context
from sandbox.mesh.analysis.index import MESH_WIDE_HOST, ROOT_NAMESPACE, namespace_wide_host
from sandbox.mesh.names import DOMAIN_SUFFIX
from sandbox.mesh.resources import Resource

TLS_PATH = "spec/trafficPolicy/tls/mode"
MTLS_PATH = "spec/mtls"
ENABLING_PA = ("STRICT", "PERMISSIVE")
ENABLING_DR = ("ISTIO_MUTUAL", "MUTUAL")


def pa_mode(pa: Resource[Any]) -> str:
    """Kiali's PeerAuthnMTLSMode: "" without `mtls`, UNSET for `mtls: {}`."""
    mtls = pa.spec.mtls
    if mtls is None:
        return ""
    return mtls.mode.value if mtls.mode is not None else "UNSET"


def dr_mode(dr: Resource[Any]) -> str:
    """The top-level TLS mode: "" without `tls`, DISABLE for a `tls` without a mode."""
    policy = dr.spec.traffic_policy
    if policy is None or policy.tls is None:
        return ""
    return policy.tls.mode.value if policy.tls.mode is not None else "DISABLE"


@dataclass(frozen=True)
class Host:
    """Kiali's kubernetes.ParseHost: a short name is in the rule's namespace; an FQDN ending in
    svc.cluster.local is complete; anything else (`reviews.bookinfo`, `*.local`, an external host)
    is kept whole as the service, with no namespace."""

    service: str
    namespace: str = ""
    cluster: str = ""

    @classmethod
    def parse(cls, host: str, namespace: str) -> Host:
        parts = host.split(".")
        if len(parts) == 1:
            return cls(host, namespace, DOMAIN_SUFFIX)
        if len(parts) > 2 and ".".join(parts[2:]) == DOMAIN_SUFFIX:
            return cls(parts[0], parts[1], DOMAIN_SUFFIX)
        return cls(host)

    def __str__(self) -> str:
        return f"{self.service}.{self.namespace}.{self.cluster}" if self.cluster else self.service


@dataclass
class Wide:
    """The selector-less PeerAuthentications per namespace and the DestinationRules per written
    host, each in file order with its Kiali mode."""

    pas: dict[str, list[str]]  # namespace -> modes
    drs: dict[str, list[tuple[Resource[Any], str]]]  # literal host -> (rule, mode)

    @classmethod
    def build(cls, ctx: Context) -> Wide:
        pas: dict[str, list[str]] = defaultdict(list)
        for pa in ctx.state.peer_authentications:
            if pa.spec.selector is None:
                pas[pa.namespace].append(pa_mode(pa))
        drs: dict[str, list[tuple[Resource[Any], str]]] = defaultdict(list)
        for dr in ctx.state.destination_rules:
            drs[dr.spec.host].append((dr, dr_mode(dr)))
        return cls(pas, drs)

    def pa_with(self, namespace: str, *modes: str) -> bool:
        return any(m in modes for m in self.pas.get(namespace, ()))

    def dr_with(self, host: str, *modes: str) -> bool:
        return any(m in modes for _, m in self.drs.get(host, ()))

    def mutual_rules(self, host: str, other_than: Resource[Any]) -> bool:
        return any(m == "ISTIO_MUTUAL" and dr is not other_than for dr, m in self.drs.get(host, ()))


def check_destination_rules(ctx: Context) -> None:
    wide = Wide.build(ctx)
    for dr in ctx.state.destination_rules:
        host, mode, ns = dr.spec.host, dr_mode(dr), dr.namespace
        ns_wide = namespace_wide_host(ns)
        if host == MESH_WIDE_HOST:
            # meshwide_mtls_checker / disabled_meshwide_mtls_checker
            if mode == "ISTIO_MUTUAL" and not ctx.auto_mtls and not wide.pa_with(ROOT_NAMESPACE, *ENABLING_PA):
                ctx.report(dr, "KIA0205", TLS_PATH)
            if mode == "DISABLE" and wide.pa_with(ROOT_NAMESPACE, "STRICT"):
                ctx.report(dr, "KIA0208", TLS_PATH)
        elif host == ns_wide:
            # namespacewide_mtls_checker / disabled_namespacewide_mtls_checker
            enabled = wide.pa_with(ns, *ENABLING_PA) or wide.pa_with(ROOT_NAMESPACE, *ENABLING_PA)
            if mode == "ISTIO_MUTUAL" and not ctx.auto_mtls and not enabled:
                ctx.report(dr, "KIA0206", TLS_PATH)
            if mode == "DISABLE":
                _disabled_namespace_wide(ctx, wide, dr)
        if _overrides_mtls(wide, dr):
            ctx.report(dr, "KIA0204", "spec/trafficPolicy")


def _disabled_namespace_wide(ctx: Context, wide: Wide, dr: Resource[Any]) -> None:
    """The first of the namespace's PeerAuthentications that enables mTLS decides: STRICT breaks
    the rule's plaintext (KIA0207), PERMISSIVE accepts it; with none and no DISABLE there, a STRICT
    mesh-wide one breaks it (KIA0208)."""
    modes = wide.pas.get(dr.namespace, [])
    first = next((m for m in modes if m in ENABLING_PA), None)
    if first == "STRICT":
        ctx.report(dr, "KIA0207", TLS_PATH)
    elif first is None and "DISABLE" not in modes and wide.pa_with(ROOT_NAMESPACE, "STRICT"):
        ctx.report(dr, "KIA0208", TLS_PATH)


def _overrides_mtls(wide: Wide, dr: Resource[Any]) -> bool:
    """traffic_policy_checker: a rule without TLS settings replaces the ISTIO_MUTUAL of a mesh-wide
    rule, of a namespace-wide one for its host's namespace, or of another rule written for its
    host's FQDN or namespace wildcard."""
    policy = dr.spec.traffic_policy
    if policy is not None and (policy.tls is not None or any(p.tls is not None for p in policy.port_level_settings)):
        return False
    host = Host.parse(dr.spec.host, dr.namespace)
    if wide.dr_with(MESH_WIDE_HOST, "ISTIO_MUTUAL"):
        return True
    if host.cluster and wide.mutual_rules(namespace_wide_host(host.namespace), dr):
        return True  # the namespace's own wide rule, or another one written for that namespace
    return wide.mutual_rules(str(host), dr)


def check_peer_authentications(ctx: Context) -> None:
    wide = Wide.build(ctx)
    for pa in ctx.state.peer_authentications:
        if pa.spec.selector is not None:
            continue
        mode, ns = pa_mode(pa), pa.namespace
        if ns == ROOT_NAMESPACE:
            # disabled_meshwide_checker / mesh_mtls_checker
            if mode == "DISABLE" and wide.dr_with(MESH_WIDE_HOST, *ENABLING_DR):
                ctx.report(pa, "KIA0506", MTLS_PATH)
            if mode == "STRICT" and not ctx.auto_mtls and not wide.dr_with(MESH_WIDE_HOST, "ISTIO_MUTUAL"):
                ctx.report(pa, "KIA0401", MTLS_PATH)
            continue
        ns_wide = namespace_wide_host(ns)
        # disabled_namespacewide_checker / namespace_mtls_checker
        if mode == "DISABLE" and _enabled_for_namespace(wide, ns_wide):
            ctx.report(pa, "KIA0505", MTLS_PATH)
        mutual = wide.dr_with(ns_wide, "ISTIO_MUTUAL") or wide.dr_with(MESH_WIDE_HOST, "ISTIO_MUTUAL")
        if mode == "STRICT" and not ctx.auto_mtls and not mutual:
            ctx.report(pa, "KIA0501", MTLS_PATH)


def _enabled_for_namespace(wide: Wide, ns_wide: str) -> bool:
    """Does a DestinationRule still originate mTLS into a namespace that disables it? The first
    namespace-wide rule with a decisive mode answers (ISTIO_MUTUAL/MUTUAL yes, DISABLE no);
    without one, a mesh-wide rule enabling mTLS does."""
    decisive = next((m for _, m in wide.drs.get(ns_wide, ()) if m in (*ENABLING_DR, "DISABLE")), None)
    if decisive is not None:
        return decisive != "DISABLE"
    return wide.dr_with(MESH_WIDE_HOST, *ENABLING_DR)


CHECKERS = (check_destination_rules, check_peer_authentications)
