"""DestinationRules -> clusters: the DR lookup path, subset/port-level merging, Istio's defaults, endpoints.

Reference: docs/reference/istio-semantics.md §1.2 (lookup path, merging, every default).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sandbox.control.registry import EndpointResolver, RegistryService, endpoints, visible_to
from sandbox.mesh import resources as res
from sandbox.mesh.names import ClusterKey, host_matches, labels_match, spiffe_id
from sandbox.mesh.resources.destinationrule import (
    ClientTLSSettings,
    ConnectionPoolSettings,
    LoadBalancerSettings,
    OutlierDetection,
    SimpleLB,
    Subset,
)
from sandbox.mesh.secrets import SecretPaths, resolve_client_secret
from sandbox.mesh.state import MeshState
from sandbox.mesh.topology import Workload
from sandbox.xds import snapshot as snap

ROOT_NAMESPACE = "istio-system"


def default_endpoints(workload: Workload, replica: int, port: int) -> str:
    """`<workload>:<port>` (Compose service names resolve on the project network); extra replicas
    are `<workload>-<n>` (1-based), the names a runtime gives copies. A gateway's service port is
    served on its targetPort (istio-egressgateway:8080 for port 80)."""
    name = workload.name if workload.replicas <= 1 else f"{workload.name}-{replica + 1}"
    return f"{name}:{workload.target_port(port) if workload.builtin else port}"


def endpoints_from_mapping(addresses: Mapping[tuple[str, int], str]) -> EndpointResolver:
    """A resolver from {(workload name, replica): "host:port"}, where a name `<workload>:<port>`
    gives the address of one service port (a gateway's listeners); unlisted replicas use the default."""

    def resolve(workload: Workload, replica: int, port: int) -> str:
        return (
            addresses.get((f"{workload.name}:{port}", replica))
            or addresses.get((workload.name, replica))
            or default_endpoints(workload, replica, port)
        )

    return resolve


@dataclass(frozen=True)
class MergedRule:
    """The DestinationRules that apply to one host for one proxy, merged (§1.2: the first
    top-level trafficPolicy wins, the first definition of a subset wins)."""

    host: str
    traffic_policy: res.TrafficPolicy | None
    subsets: tuple[Subset, ...]
    sources: tuple[str, ...]
    selected: bool = False  # a rule chose this proxy by workloadSelector (credentialName then applies)


def find_destination_rule(
    mesh: MeshState, fqdn: str, service_namespace: str, proxy_namespace: str, proxy_labels: Mapping[str, str]
) -> MergedRule | None:
    """§1.2 lookup path: client namespace, then service namespace, then the root namespace."""
    for namespace in dict.fromkeys((proxy_namespace, service_namespace, ROOT_NAMESPACE)):
        found = _rules_in(mesh, namespace, fqdn, proxy_namespace, proxy_labels)
        if found:
            return _merge(found)
    return None


def _rules_in(
    mesh: MeshState, namespace: str, fqdn: str, proxy_namespace: str, proxy_labels: Mapping[str, str]
) -> list[tuple[str, res.Resource[res.DestinationRuleSpec]]]:
    candidates = []
    for dr in mesh.destination_rules:
        if dr.namespace != namespace or not visible_to(dr.spec.export_to, dr.namespace, proxy_namespace):
            continue
        selector = dr.spec.workload_selector
        if (
            selector is not None
            and selector.match_labels
            and (dr.namespace != proxy_namespace or not labels_match(selector.match_labels, dict(proxy_labels)))
        ):
            continue
        host = mesh.resolve(dr.spec.host, dr.namespace)
        if host_matches(host, fqdn):
            candidates.append((host, dr))
    if not candidates:
        return []
    # the most specific host wins (exact before the longest wildcard), as Istio's MostSpecificHostMatch
    best = max(candidates, key=lambda c: (not c[0].startswith("*"), len(c[0])))[0]
    return [c for c in candidates if c[0] == best]


def _merge(found: list[tuple[str, res.Resource[res.DestinationRuleSpec]]]) -> MergedRule:
    policy: res.TrafficPolicy | None = None
    subsets: dict[str, Subset] = {}
    for _, dr in found:
        if policy is None:
            policy = dr.spec.traffic_policy
        for subset in dr.spec.subsets:
            subsets.setdefault(subset.name, subset)
    selected = any(dr.spec.workload_selector is not None and dr.spec.workload_selector.match_labels for _, dr in found)
    return MergedRule(found[0][0], policy, tuple(subsets.values()), tuple(dr.ref for _, dr in found), selected)


Settings = tuple[
    LoadBalancerSettings | None, ConnectionPoolSettings | None, OutlierDetection | None, ClientTLSSettings | None
]


def _at_port(policy: res.TrafficPolicy, port: int) -> Settings:
    """One level's settings for `port`: a portLevelSettings entry for it replaces all four, with no
    inheritance (omitted fields fall back to defaults, §1.2)."""
    for pls in policy.port_level_settings:
        if pls.port is not None and pls.port.number == port:
            return pls.load_balancer, pls.connection_pool, pls.outlier_detection, pls.tls
    return policy.load_balancer, policy.connection_pool, policy.outlier_detection, policy.tls


def merge_traffic_policy(top: res.TrafficPolicy | None, subset: res.TrafficPolicy | None, port: int) -> Settings:
    """Istio's MergeTrafficPolicy: the top level is resolved for the port first (its
    portLevelSettings), then each setting the subset sets replaces it whole, and the subset's own
    portLevelSettings for the port replace all four. So a subset's policy wins over the top
    level's port-level settings."""
    merged: Settings = _at_port(top, port) if top is not None else (None, None, None, None)
    if subset is None:
        return merged
    for pls in subset.port_level_settings:
        if pls.port is not None and pls.port.number == port:
            return pls.load_balancer, pls.connection_pool, pls.outlier_detection, pls.tls
    lb, pool, outlier, tls = merged
    return (
        subset.load_balancer or lb,
        subset.connection_pool or pool,
        subset.outlier_detection or outlier,
        subset.tls or tls,
    )


Credentials = Callable[[str, bool, bool], SecretPaths]
"""(credentialName, mutual, verify the server) -> the secret's files (mesh.secrets.resolve_client_secret)."""


def resolve_traffic_policy(
    top: res.TrafficPolicy | None,
    subset: res.TrafficPolicy | None,
    port: int,
    all_accept_mtls: bool,
    identities: tuple[str, ...] = (),
    credentials: Credentials | None = None,
) -> snap.TrafficPolicy:
    """The cluster's policy; `identities`: the SPIFFE IDs its servers may present under ISTIO_MUTUAL;
    `credentials` resolves a `credentialName` where it applies to this proxy (None: it does not)."""
    lb, pool, outlier, tls = merge_traffic_policy(top, subset, port)
    return snap.TrafficPolicy(
        load_balancer=_load_balancer(lb),
        connection_pool=_connection_pool(pool),
        outlier_detection=_outlier(outlier),
        tls=_tls(tls, all_accept_mtls, identities, credentials),
    )


def _seconds(value: Any, default: float) -> float:
    return float(value.seconds) if value is not None else default


def _load_balancer(lb: LoadBalancerSettings | None) -> snap.LoadBalancer:
    if lb is None:
        return snap.LoadBalancer()
    simple = lb.simple
    # §1.2: UNSPECIFIED means Istio's default LEAST_REQUEST; LEAST_CONN is its deprecated alias
    name = "LEAST_REQUEST" if simple in (None, SimpleLB.UNSPECIFIED, SimpleLB.LEAST_CONN) else str(simple.value)
    ch = lb.consistent_hash
    if ch is None:
        return snap.LoadBalancer(simple=name)
    ring = (ch.ring_hash.minimum_ring_size if ch.ring_hash else None) or ch.minimum_ring_size or 1024
    cookie = ch.http_cookie
    return snap.LoadBalancer(
        simple=name,
        consistent_hash=snap.ConsistentHash(
            http_header_name=ch.http_header_name.lower() if ch.http_header_name else None,
            http_cookie_name=cookie.name if cookie else None,
            http_cookie_path=cookie.path if cookie else None,
            http_cookie_ttl=cookie.ttl.seconds if cookie and cookie.ttl else None,
            use_source_ip=bool(ch.use_source_ip),
            http_query_parameter_name=ch.http_query_parameter_name,
            minimum_ring_size=ring,
            maglev_table_size=((ch.maglev.table_size or 65537) if ch.maglev else None),
        ),
    )


def _connection_pool(pool: ConnectionPoolSettings | None) -> snap.ConnectionPool:
    if pool is None:
        return snap.ConnectionPool()
    tcp, http = pool.tcp, pool.http
    d = snap.ConnectionPool()
    return snap.ConnectionPool(
        max_connections=(tcp.max_connections if tcp and tcp.max_connections else d.max_connections),
        connect_timeout=_seconds(tcp.connect_timeout if tcp else None, d.connect_timeout),
        tcp_idle_timeout=_seconds(tcp.idle_timeout if tcp else None, d.tcp_idle_timeout),
        max_connection_duration=(tcp.max_connection_duration.seconds if tcp and tcp.max_connection_duration else None),
        http1_max_pending_requests=(
            http.http1_max_pending_requests
            if http and http.http1_max_pending_requests
            else d.http1_max_pending_requests
        ),
        http2_max_requests=(http.http2_max_requests if http and http.http2_max_requests else d.http2_max_requests),
        max_requests_per_connection=(http.max_requests_per_connection or 0) if http else 0,
        max_retries=(http.max_retries if http and http.max_retries else d.max_retries),
        idle_timeout=_seconds(http.idle_timeout if http else None, d.idle_timeout),
    )


def _outlier(od: OutlierDetection | None) -> snap.OutlierDetectionPolicy | None:
    if od is None:  # Istio configures no outlier detection unless a DR asks for it
        return None
    d = snap.OutlierDetectionPolicy()
    # Istio's applyOutlierDetection: the deprecated consecutiveErrors (> 0) means gateway failures only,
    # with the 5xx detector not enforced; consecutive5xxErrors/consecutiveGatewayErrors, when set, win.
    legacy = od.consecutive_errors or 0
    five_xx = od.consecutive_5xx_errors
    if five_xx is None:
        five_xx = 0 if legacy > 0 else d.consecutive_5xx_errors
    gateway = od.consecutive_gateway_errors
    if gateway is None:
        gateway = legacy if legacy > 0 else d.consecutive_gateway_errors
    base = _seconds(od.base_ejection_time, d.base_ejection_time)
    return snap.OutlierDetectionPolicy(
        consecutive_5xx_errors=five_xx,
        consecutive_gateway_errors=gateway,
        # Istio passes these two only when > 0; otherwise Envoy's defaults (5, 10%) apply
        consecutive_local_origin_failures=(od.consecutive_local_origin_failures or d.consecutive_local_origin_failures),
        split_external_local_origin_errors=bool(od.split_external_local_origin_errors),
        interval=_seconds(od.interval, d.interval),
        base_ejection_time=base,
        max_ejection_time=max(snap.MAX_EJECTION_TIME, base),  # Envoy: 300s, or base if larger
        max_ejection_percent=od.max_ejection_percent or d.max_ejection_percent,
        min_health_percent=od.min_health_percent or 0,
    )


def _tls(
    tls: ClientTLSSettings | None,
    all_accept_mtls: bool,
    identities: tuple[str, ...],
    credentials: Credentials | None = None,
) -> snap.TLSSettings:
    if tls is None or tls.mode is None:
        # §1.2 auto mTLS (enableAutoMtls: true): Istio mTLS to each endpoint whose sidecar accepts it
        mode = "ISTIO_MUTUAL" if all_accept_mtls else "DISABLE"
        return snap.TLSSettings(mode=mode, auto=True, subject_alt_names=identities)
    mode = str(tls.mode.value)
    if mode == "ISTIO_MUTUAL":
        return snap.TLSSettings(mode=mode, auto=False, sni=tls.sni, subject_alt_names=identities)
    ca, cert, key, problem = tls.ca_certificates, tls.client_certificate, tls.private_key, ""
    if tls.credential_name and credentials is not None and mode in ("SIMPLE", "MUTUAL"):
        # Istio fetches the secret over SDS and ignores the file fields; here it names files the
        # proxy reads: paths go in the snapshot, never key material
        paths = credentials(tls.credential_name, mode == "MUTUAL", not tls.insecure_skip_verify)
        ca, cert, key, problem = paths.cacert or None, paths.cert or None, paths.key or None, paths.problem
    return snap.TLSSettings(
        mode=mode,
        auto=False,
        sni=tls.sni,
        subject_alt_names=tuple(tls.subject_alt_names),
        ca_certificates=ca,
        client_certificate=cert,
        private_key=key,
        credential_name=tls.credential_name,
        insecure_skip_verify=bool(tls.insecure_skip_verify),
        problem=problem,
    )


def credentials_for(mesh: MeshState) -> Credentials:
    """credentialName -> files, from the Compose file's x-sandbox.secrets (relative to the file)."""
    settings, base = mesh.topology.settings, Path(mesh.topology.file).parent

    def resolve(name: str, mutual: bool, verify: bool) -> SecretPaths:
        return resolve_client_secret(settings, name, base, mutual, verify)

    return resolve


def build_clusters(
    mesh: MeshState,
    service: RegistryService,
    port: int,
    proxy_namespace: str,
    proxy_labels: Mapping[str, str],
    resolver: EndpointResolver,
    router: bool = False,
) -> list[snap.Cluster]:
    """The default cluster of a service port plus one per DR subset (Istio builds every subset).
    A `credentialName` applies at a gateway (`router`), or at a sidecar the rule selects by labels."""
    trust_domain = mesh.topology.settings.trust_domain_or_default
    rule = find_destination_rule(mesh, service.fqdn, service.namespace, proxy_namespace, proxy_labels)
    top = rule.traffic_policy if rule else None
    source = ", ".join(rule.sources) if rule else ""
    credentials = credentials_for(mesh) if rule is not None and (router or rule.selected) else None
    subsets: list[tuple[str, Mapping[str, str], res.TrafficPolicy | None]] = [("", {}, None)]
    subsets += [(s.name, s.labels, s.traffic_policy) for s in (rule.subsets if rule else ())]
    clusters = []
    for name, labels, subset_policy in subsets:
        members = endpoints(mesh, service, port, labels, resolver)
        # auto mTLS where every endpoint accepts it (a mesh subset with no endpoints keeps it)
        mutual = all(e.mtls for e in members) and (service.mesh is not None or bool(members))
        identities = tuple(
            sorted({spiffe_id(e.namespace, e.service_account, trust_domain) for e in members if e.sidecar})
        )
        policy = resolve_traffic_policy(top, subset_policy, port, mutual, identities, credentials)
        if service.resolution == "NONE" and (policy.load_balancer.simple == "LEAST_REQUEST"):
            # resolution NONE: Envoy ORIGINAL_DST, the connection goes where the app sent it
            policy = replace(policy, load_balancer=snap.LoadBalancer(simple="PASSTHROUGH"))
        clusters.append(
            snap.Cluster(
                name=str(ClusterKey.outbound(service.fqdn, port, name)),
                service=service.fqdn,
                port=port,
                subset=name,
                traffic_policy=policy,
                endpoints=members,
                source=source,
            )
        )
    return clusters


class SharedClusters:
    """`build_clusters` once per (service port, proxy namespace) for one MeshState and resolver.

    The control plane compiles every proxy against the same state, and proxies of one namespace
    see a service's clusters identically unless a DestinationRule selects workloads by label, so
    their snapshots can share the very same Cluster objects: built once, and encoded once too
    (see snapshot.seal). The cache follows the latest MeshState only, by identity.
    """

    def __init__(self) -> None:
        self._mesh: weakref.ref[MeshState] | None = None
        self._resolver: EndpointResolver | None = None
        self._by_labels = False
        self._entries: dict[tuple[str, int, str, tuple[tuple[str, str], ...], bool], list[snap.Cluster]] = {}

    def get(
        self,
        mesh: MeshState,
        service: RegistryService,
        port: int,
        proxy_namespace: str,
        proxy_labels: Mapping[str, str],
        resolver: EndpointResolver,
        router: bool = False,
    ) -> list[snap.Cluster]:
        if self._mesh is None or self._mesh() is not mesh or self._resolver is not resolver:
            self._mesh, self._resolver, self._entries = weakref.ref(mesh), resolver, {}
            self._by_labels = any(
                dr.spec.workload_selector is not None and dr.spec.workload_selector.match_labels
                for dr in mesh.destination_rules
            )
        labels = tuple(sorted(proxy_labels.items())) if self._by_labels else ()
        key = (service.fqdn, port, proxy_namespace, labels, router)
        found = self._entries.get(key)
        if found is None:
            found = self._entries[key] = build_clusters(
                mesh, service, port, proxy_namespace, proxy_labels, resolver, router
            )
        return found
