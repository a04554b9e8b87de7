"""compile(mesh, proxy) -> ProxySnapshot: what one sidecar (or a gateway) needs. Pure.

Istio's rules (docs/reference/istio-semantics.md §1.1-§1.3):
- sidecars take the VirtualServices bound to `mesh` (the default when `gateways` is empty); a
  gateway (istio-ingressgateway, istio-egressgateway) takes those bound to a Gateway whose
  selector picks it;
- sidecars use one VS per host (the first by creation order, here file order; the analyzer flags
  the conflict), gateways merge them (order kept, catch-all routes last);
- a service with no VS (or whose VS yields no route for this proxy) gets the default route to
  all its endpoints; exportTo hides resources from other namespaces;
- sidecar route configurations are per port (`9080`), virtual hosts per service:port, with the
  domains Istio generates (short names only for services in the proxy's own namespace).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandbox.control.compile_access import JwksResolver, access_policy, no_jwks
from sandbox.control.compile_clusters import SharedClusters, default_endpoints
from sandbox.control.compile_routes import (
    cluster_namer,
    default_route,
    is_catch_all,
    selects_proxy,
    translate_route,
)
from sandbox.control.compile_telemetry import telemetry_policy
from sandbox.control.delegate import expand_delegates
from sandbox.control.registry import HTTP_PROTOCOLS, EndpointResolver, RegistryService, build_registry, visible_to
from sandbox.control.scope import EgressScope, egress_scope
from sandbox.mesh.names import ClusterKey, host_matches, hosts_overlap, labels_match, spiffe_id
from sandbox.mesh.peerauth import peer_mode
from sandbox.mesh.resources import Resource, VirtualServiceSpec
from sandbox.mesh.resources.gateway import GatewaySpec, Server
from sandbox.mesh.secrets import resolve_secret
from sandbox.mesh.state import MeshState
from sandbox.mesh.topology import Workload
from sandbox.xds import snapshot as snap
from sandbox.xds.canonical import compact
from sandbox.xds.identity import ProxyIdentity

__all__ = ["CompileCache", "EndpointResolver", "UnknownProxy", "compile", "default_endpoints"]

MESH_GATEWAY = "mesh"

VS = Resource[VirtualServiceSpec]


class UnknownProxy(LookupError):
    """The named workload is not in the Compose file (or has no sidecar)."""


class CompileCache:
    """What compiling every proxy against one config generation shares, owned by whoever compiles
    (the control plane keeps one per generation, as istiod's XdsCache sits on its server): the
    clusters, built once per service port and proxy namespace and encoded once for every snapshot
    that holds them, and each workload's sealed snapshot."""

    def __init__(self) -> None:
        self.clusters = SharedClusters()
        self.snapshots: dict[str, snap.ProxySnapshot | None] = {}  # workload -> snapshot (None: cannot compile)
        self._encoded: dict[int, tuple[snap.Cluster, Any]] = {}  # id -> (the cluster, kept so its id stays unique)

    def encode_cluster(self, cluster: snap.Cluster) -> Any:
        found = self._encoded.get(id(cluster))
        if found is None or found[0] is not cluster:
            found = self._encoded[id(cluster)] = (cluster, compact(cluster))
        return found[1]


@dataclass(frozen=True)
class _Proxy:
    workload: Workload
    gateways: frozenset[str]  # {"mesh"} for sidecars, {"ns/name", ...} for a gateway
    hashed_clusters: frozenset[str] = frozenset()  # clusters balanced by consistent hash
    scope: EgressScope | None = None  # the Sidecar resource's egress hosts (sidecars only)
    outbound_mode: str = "ALLOW_ANY"

    @property
    def namespace(self) -> str:
        return self.workload.namespace

    @property
    def labels(self) -> dict[str, str]:
        return self.workload.labels


def compile(
    mesh: MeshState,
    proxy: str,
    endpoints: EndpointResolver = default_endpoints,
    app_address: str | None = None,
    cache: CompileCache | None = None,
    jwks: JwksResolver = no_jwks,
) -> snap.ProxySnapshot:
    """The sealed snapshot for workload `proxy`. `endpoints` spells each replica's address for
    the runtime in use; `app_address` is where the inbound side reaches the app (default
    127.0.0.1:<port>); `cache` shares clusters across the proxies of one generation; `jwks`
    gives the keys fetched for a RequestAuthentication's jwksUri. Raises UnknownProxy for a name
    the topology lacks."""
    cache = cache or CompileCache()
    workload = mesh.topology.workload(proxy)
    if workload is None or not (workload.inject or workload.builtin):
        known = ", ".join(sorted(w.name for w in mesh.topology.workloads if w.inject or w.builtin))
        raise UnknownProxy(f"no workload with a sidecar named {proxy!r} (known: {known})")
    router = workload.builtin
    gateways = _selected_gateways(mesh, workload) if router else frozenset({MESH_GATEWAY})
    settings = mesh.topology.settings
    trust_domain = settings.trust_domain_or_default
    scope = None if router else egress_scope(mesh, workload.namespace, workload.labels)
    mode = (scope.outbound_mode if scope else None) or settings.outbound_mode.value
    services = [
        s for s in build_registry(mesh, workload.namespace) if scope is None or scope.allows(s.fqdn, s.namespace)
    ]
    clusters: list[snap.Cluster] = []
    for service in services:
        for port in service.ports:
            clusters.extend(
                cache.clusters.get(mesh, service, port, workload.namespace, workload.labels, endpoints, router)
            )
    hashed = frozenset(c.name for c in clusters if c.traffic_policy.load_balancer.consistent_hash is not None)
    p = _Proxy(workload, gateways, hashed, scope, mode)
    route_configs = _gateway_route_configs(mesh, p, services) if router else _sidecar_route_configs(mesh, p, services)
    if not router and mode == "ALLOW_ANY":
        # Istio's PassthroughCluster: ORIGINAL_DST, i.e. connect to where the app was going, in plaintext
        passthrough = snap.TrafficPolicy(
            load_balancer=snap.LoadBalancer(simple="PASSTHROUGH"), tls=snap.TLSSettings(mode="DISABLE", auto=False)
        )
        clusters.append(snap.Cluster(name=snap.PASSTHROUGH_CLUSTER, service="", port=0, traffic_policy=passthrough))
    inbound: tuple[snap.InboundListener, ...] = ()
    if not router and workload.port is not None:
        inbound = (
            snap.InboundListener(
                port=workload.port,
                app_address=app_address or f"127.0.0.1:{workload.port}",
                cluster=str(ClusterKey.inbound(workload.port)),
                mtls=peer_mode(mesh, workload.namespace, workload.labels, workload.port).mode.value,
            ),
        )
    identity = ProxyIdentity(
        workload=workload.name,
        namespace=workload.namespace,
        service_account=workload.service_account,
        spiffe_id=spiffe_id(workload.namespace, workload.service_account, trust_domain),
        labels=dict(workload.labels),
        app=workload.app,
        version=workload.version,
        kind="router" if router else "sidecar",
    )
    return snap.ProxySnapshot(
        identity=identity,
        route_configs=tuple(route_configs),
        clusters=tuple(clusters),
        inbound=inbound,
        mesh=snap.MeshConfig(outbound_traffic_policy=mode, trust_domain=trust_domain),
        telemetry=telemetry_policy(mesh, workload),
        access=access_policy(mesh, workload, {c.name for c in clusters}, jwks),
    ).seal(cache.encode_cluster)


# --------------------------------------------------------------------------- shared


def _selected_gateways(mesh: MeshState, workload: Workload) -> frozenset[str]:
    return frozenset(
        f"{gw.namespace}/{gw.name}"
        for gw in mesh.gateways
        if gw.spec.selector and labels_match(gw.spec.selector, workload.labels)
    )


def vs_gateways(vs: VS) -> frozenset[str]:
    """`gateways` with names qualified by the VS namespace; empty means `mesh` (§1.1)."""
    return frozenset(_qualify(g, vs.namespace) for g in vs.spec.gateways) or frozenset({MESH_GATEWAY})


def _qualify(gateway: str, namespace: str) -> str:
    return gateway if gateway == MESH_GATEWAY or "/" in gateway else f"{namespace}/{gateway}"


def _visible_virtual_services(mesh: MeshState, p: _Proxy) -> list[VS]:
    """exportTo, and for sidecars the Sidecar resource's egress hosts (checked in the VS's namespace)."""
    out = []
    for vs in mesh.virtual_services:
        if not visible_to(vs.spec.export_to, vs.namespace, p.namespace):
            continue
        scope = p.scope
        if scope is not None and not any(
            scope.allows(mesh.resolve(h, vs.namespace), vs.namespace) for h in vs.spec.hosts
        ):
            continue
        out.append(vs)
    return out


def _routes(
    mesh: MeshState,
    vs: VS,
    p: _Proxy,
    port: int,
    gateways: Iterable[str],
    services: Mapping[str, RegistryService],
) -> list[snap.Route]:
    """route.go BuildHTTPRoutesForVirtualService for one listener port."""
    gateway_set = frozenset(_qualify(g, vs.namespace) for g in gateways)

    def resolve(host: str) -> str:
        return mesh.resolve(host, vs.namespace)

    def service_port(fqdn: str) -> int | None:
        service = services.get(fqdn)
        return service.single_port if service else None

    namer = cluster_namer(resolve, service_port, port)
    out: list[snap.Route] = []
    for http in expand_delegates(mesh, vs):
        matches = http.match or (None,)
        catch_all = False
        for match in matches:
            if match is not None and match.port is not None and match.port != port:
                continue
            if not selects_proxy(match, vs.namespace, p.labels, p.namespace, gateway_set):
                continue
            route = translate_route(http, match, namer, vs.name, port, p.hashed_clusters)
            if route is None:
                continue
            out.append(route)
            if is_catch_all(route.match):
                catch_all = True
                break
        if catch_all or not http.match:
            break
    return out


# --------------------------------------------------------------------------- sidecars


def _sidecar_route_configs(
    mesh: MeshState, p: _Proxy, services: list[RegistryService]
) -> list[snap.RouteConfiguration]:
    by_fqdn = {s.fqdn: s for s in services}
    virtual_services = [vs for vs in _visible_virtual_services(mesh, p) if MESH_GATEWAY in vs_gateways(vs)]
    ports = sorted({port for s in services for port in s.http_ports})
    external_hosts = any(_external_hosts(mesh, vs, by_fqdn) for vs in virtual_services)
    if external_hosts and 80 not in ports:
        ports.append(80)  # route.go: VS hosts outside the registry get virtual hosts on port 80
    configs = []
    for port in ports:
        registry = {s.fqdn: s for s in services if port in s.http_ports}
        owner = _owners(mesh, virtual_services, registry)
        vhosts: list[snap.VirtualHost] = []
        claimed: set[str] = set()
        for vs in virtual_services:
            mine = [fqdn for fqdn, o in owner.items() if o is vs]
            extra = _external_hosts(mesh, vs, by_fqdn) if port == 80 else []
            if not mine and not extra:
                continue
            routes = _routes(mesh, vs, p, port, (MESH_GATEWAY,), by_fqdn)
            if not routes:
                continue  # Istio falls back to the default route for these services
            for fqdn in mine:
                claimed.add(fqdn)
                service = registry[fqdn]
                vhosts.append(
                    snap.VirtualHost(
                        name=f"{fqdn}:{port}",
                        domains=service.domains(port, p.namespace),
                        routes=tuple(routes),
                        service=fqdn,
                        source=vs.ref,
                    )
                )
            for host in extra:
                vhosts.append(
                    snap.VirtualHost(
                        name=f"{host}:{port}", domains=(host, f"{host}:{port}"), routes=tuple(routes), source=vs.ref
                    )
                )
        for fqdn, service in registry.items():
            if fqdn not in claimed:
                cluster = str(ClusterKey.outbound(fqdn, port))
                vhosts.append(
                    snap.VirtualHost(
                        name=f"{fqdn}:{port}",
                        domains=service.domains(port, p.namespace),
                        routes=(default_route(cluster, fqdn, port),),
                        service=fqdn,
                    )
                )
        vhosts.append(_fallback_vhost(p.outbound_mode))
        configs.append(snap.RouteConfiguration(name=str(port), port=port, virtual_hosts=tuple(vhosts)))
    return configs


def _owners(mesh: MeshState, virtual_services: list[VS], registry: Mapping[str, RegistryService]) -> dict[str, VS]:
    """Which VS serves each service: exact hosts first (the first VS in file order wins), then the
    most specific wildcard host."""
    owner: dict[str, VS] = {}
    for vs in virtual_services:
        for host in (mesh.resolve(h, vs.namespace) for h in vs.spec.hosts):
            if host in registry:
                owner.setdefault(host, vs)
    best: dict[str, tuple[int, VS]] = {}
    for vs in virtual_services:
        for host in (mesh.resolve(h, vs.namespace) for h in vs.spec.hosts):
            if not host.startswith("*"):
                continue
            for fqdn in registry:
                if fqdn in owner or not host_matches(host, fqdn):
                    continue
                if fqdn not in best or len(host) > best[fqdn][0]:
                    best[fqdn] = (len(host), vs)
    owner.update({fqdn: vs for fqdn, (_, vs) in best.items()})
    return owner


def _external_hosts(mesh: MeshState, vs: VS, by_fqdn: Mapping[str, RegistryService]) -> list[str]:
    hosts = [mesh.resolve(h, vs.namespace) for h in vs.spec.hosts]
    return [h for h in hosts if not h.startswith("*") and h not in by_fqdn]


def _fallback_vhost(mode: str) -> snap.VirtualHost:
    """Istio's catch-all virtual host: `allow_any` -> PassthroughCluster under ALLOW_ANY,
    `block_all` -> 502 under REGISTRY_ONLY (§1.4)."""
    if mode == "REGISTRY_ONLY":
        route = snap.Route(name="block_all", direct_response=snap.DirectResponse(status=502), retry=snap.NO_RETRY)
        return snap.VirtualHost(name="block_all", domains=("*",), routes=(route,))
    route = snap.Route(
        name="allow_any",
        clusters=(snap.WeightedCluster(cluster=snap.PASSTHROUGH_CLUSTER),),
        retry=snap.NO_RETRY,
        operation="PassthroughCluster",
    )
    return snap.VirtualHost(name="allow_any", domains=("*",), routes=(route,))


# --------------------------------------------------------------------------- the ingress gateway


def _gateway_route_configs(
    mesh: MeshState, p: _Proxy, services: list[RegistryService]
) -> list[snap.RouteConfiguration]:
    by_fqdn = {s.fqdn: s for s in services}
    servers: dict[int, list[tuple[str, str, bool]]] = {}  # port -> [(gateway "ns/name", host, httpsRedirect)]
    terminations: dict[int, list[snap.ServerTLS]] = {}
    for gw in mesh.gateways:
        name = f"{gw.namespace}/{gw.name}"
        if name not in p.gateways:
            continue
        for server in gw.spec.servers:
            protocol = (server.port.protocol or "HTTP").upper()
            termination = server_tls(mesh, gw, server) if protocol == "HTTPS" else None
            if protocol not in HTTP_PROTOCOLS and termination is None:
                continue  # TLS passthrough and TCP come with the protocols
            if termination is not None:
                terminations.setdefault(server.port.number, []).append(termination)
            https_redirect = bool(server.tls and server.tls.https_redirect)
            for host in server.hosts or ("*",):
                servers.setdefault(server.port.number, []).append((name, host, https_redirect))
    configs = []
    for port, entries in sorted(servers.items()):
        hosts: dict[str, list[snap.Route]] = {}
        sources: dict[str, list[str]] = {}
        redirected: set[str] = set()
        for vs in _visible_virtual_services(mesh, p):
            bound = vs_gateways(vs) & {g for g, _, _ in entries}
            if not bound:
                continue
            routes = _routes(mesh, vs, p, port, bound, by_fqdn)
            if not routes:
                continue
            for vs_host in vs.spec.hosts:
                for gateway, server_host, https_redirect in entries:
                    if gateway not in bound:
                        continue
                    answered = _gateway_host(server_host, mesh.resolve(vs_host, vs.namespace), vs.namespace)
                    if answered is not None:
                        hosts.setdefault(answered, []).extend(routes)
                        sources.setdefault(answered, []).append(vs.ref)
                        if https_redirect:
                            redirected.add(answered)
                        break
        vhosts = tuple(
            snap.VirtualHost(
                name=f"{host}:{port}",
                domains=("*",) if host == "*" else (host, f"{host}:{port}"),
                routes=(_HTTPS_REDIRECT,) if host in redirected else _catch_all_last(routes),
                service=host if host in by_fqdn else "",
                source=", ".join(dict.fromkeys(sources[host])),
            )
            for host, routes in hosts.items()
        )
        tls = tuple(terminations.get(port, ()))
        name = f"https.{port}" if tls else f"http.{port}"
        configs.append(snap.RouteConfiguration(name=name, port=port, virtual_hosts=vhosts, tls=tls))
    return configs


def server_tls(mesh: MeshState, gw: Resource[GatewaySpec], server: Server) -> snap.ServerTLS | None:
    """An HTTPS server's TLS termination, its certificate resolved to files (mesh.secrets)."""
    tls = server.tls
    if tls is None or tls.mode is None or tls.mode.value not in ("SIMPLE", "MUTUAL", "ISTIO_MUTUAL"):
        return None  # PASSTHROUGH and AUTO_PASSTHROUGH forward TLS untouched: TCP, with the protocols
    mode = tls.mode.value
    hosts = tuple(dict.fromkeys(h.rpartition("/")[2].lower() for h in server.hosts)) or ("*",)
    cert, key, ca, problem = tls.server_certificate or "", tls.private_key or "", tls.ca_certificates or "", ""
    base = Path(mesh.topology.file).parent
    if tls.credential_name and mode != "ISTIO_MUTUAL":
        paths = resolve_secret(mesh.topology.settings, tls.credential_name, base, mutual=mode == "MUTUAL")
        cert, key, ca, problem = paths.cert, paths.key, paths.cacert or ca, paths.problem
    elif mode != "ISTIO_MUTUAL" and not (cert and key):
        problem = "neither credentialName nor serverCertificate and privateKey"
    return snap.ServerTLS(
        mode=mode,
        hosts=hosts,
        server_certificate=cert,
        private_key=key,
        ca_certificates=ca,
        subject_alt_names=tuple(tls.subject_alt_names),
        min_protocol_version=tls.min_protocol_version.value if tls.min_protocol_version else "",
        max_protocol_version=tls.max_protocol_version.value if tls.max_protocol_version else "",
        credential_name=tls.credential_name or "",
        problem=problem,
        source=f"Gateway/{gw.namespace}/{gw.name}",
    )


# §1.3 Gateway `tls.httpsRedirect`: every request on that server gets a 301 to https (Envoy require_tls)
_HTTPS_REDIRECT = snap.Route(
    name="https_redirect", redirect=snap.Redirect(scheme="https", code=301), retry=snap.NO_RETRY
)


def _gateway_host(server_host: str, vs_host: str, vs_namespace: str) -> str | None:
    """The host a gateway virtual host answers: the more specific of the server's and the VS's (§1.3)."""
    namespace, _, host = server_host.rpartition("/")
    if namespace not in ("", "*", ".", vs_namespace):
        return None
    host, vs_host = host.lower(), vs_host.lower()
    if not hosts_overlap(host, vs_host):
        return None
    return vs_host if host_matches(host, vs_host) else host


def _catch_all_last(routes: list[snap.Route]) -> tuple[snap.Route, ...]:
    """route.go SortVHostRoutes: merged gateway routes keep their order, catch-alls move last."""
    return tuple([r for r in routes if not is_catch_all(r.match)] + [r for r in routes if is_catch_all(r.match)])
