"""Where an outbound TCP connection for `host:port` goes: a cluster, PassthroughCluster or
BlackHoleCluster. Pure; a CONNECT tunnel asks it today, a TCP listener can ask it later.

Istio's outbound side treats a TCP connection by its destination: the cluster of the service that
the proxy's registry has on that host and port (a mesh service or a ServiceEntry host the proxy may
see: exportTo and the Sidecar resource's egress hosts already chose which clusters the snapshot
holds), else the catch-all of outboundTrafficPolicy: PassthroughCluster under ALLOW_ANY (where the
app was going) or BlackHoleCluster under REGISTRY_ONLY (refused). Endpoints are the cluster's: a
ServiceEntry's STATIC endpoints, its DNS host, or (resolution NONE, an ORIGINAL_DST cluster) the
requested address. Host names match as Istio generates a service's domains: the FQDN as written,
and for a mesh service `name.ns.svc`, `name.ns` and, in the proxy's own namespace, `name`.
(A VirtualService's `tls`/`tcp` routes are not compiled into snapshots: the service's own cluster
is used.)
"""

from __future__ import annotations

from dataclasses import dataclass

from sandbox.mesh.names import split_fqdn
from sandbox.xds.snapshot import BLACKHOLE_CLUSTER, PASSTHROUGH_CLUSTER, ProxySnapshot

_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-._")
_IPV6_CHARS = frozenset("0123456789abcdef:.")


@dataclass(frozen=True, slots=True)
class TcpTarget:
    """The outcome for one destination. `service`: the destination service's FQDN ("" when the
    registry does not know the host); `host`/`port`: the destination as requested."""

    cluster: str
    service: str
    host: str
    port: int

    @property
    def blocked(self) -> bool:
        return self.cluster == BLACKHOLE_CLUSTER

    @property
    def passthrough(self) -> bool:
        return self.cluster == PASSTHROUGH_CLUSTER

    @property
    def address(self) -> str:
        """`host:port` as requested (IPv6 in brackets)."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_authority(text: str) -> tuple[str, int] | None:
    """CONNECT's authority form, `host:port` (RFC 9110 §9.3.6: the port is required), as
    (lowercase host without brackets, port); None for anything else: no port, a port outside
    1-65535, characters no host name or address has, or more than 255 characters."""
    if not text or len(text) > 261:
        return None
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or text[end + 1 : end + 2] != ":":
            return None
        host, port_text = text[1:end].lower(), text[end + 2 :]
        if not host or ":" not in host or not set(host) <= _IPV6_CHARS:
            return None
    else:
        host, sep, port_text = text.rpartition(":")
        host = host.lower()
        if not sep or not host or len(host) > 255 or not set(host) <= _HOST_CHARS:
            return None
        if host.startswith((".", "-")) or ".." in host:
            return None
    if not port_text.isascii() or not port_text.isdigit() or len(port_text) > 5:
        return None
    port = int(port_text)
    if not 0 < port < 65536:
        return None
    return host.rstrip(".") or host, port


class TcpRoutes:
    """One snapshot's outbound TCP destinations: (host, port) -> (cluster, service)."""

    __slots__ = ("fallback", "table")

    def __init__(self, snapshot: ProxySnapshot) -> None:
        namespace = snapshot.identity.namespace
        exact: dict[tuple[str, int], tuple[str, str]] = {}
        aliases: dict[tuple[str, int], tuple[str, str]] = {}
        names = {c.name for c in snapshot.clusters}
        for cluster in snapshot.clusters:
            if cluster.subset or not cluster.service or not cluster.port:
                continue  # a subset is reached through routes; PassthroughCluster has no service
            fqdn = cluster.service.lower()
            entry = (cluster.name, cluster.service)
            exact.setdefault((fqdn, cluster.port), entry)
            mesh = split_fqdn(fqdn)
            if mesh is not None:
                name, ns = mesh
                for alias in (f"{name}.{ns}.svc", f"{name}.{ns}", *((name,) if ns == namespace else ())):
                    aliases.setdefault((alias, cluster.port), entry)
        self.table = {**aliases, **exact}  # an FQDN as written wins over another service's short name
        allow_any = snapshot.mesh.outbound_traffic_policy != "REGISTRY_ONLY" and PASSTHROUGH_CLUSTER in names
        self.fallback = PASSTHROUGH_CLUSTER if allow_any else BLACKHOLE_CLUSTER

    def target(self, host: str, port: int) -> TcpTarget:
        """Where a connection to `host:port` (a lowercase host, as parse_authority gives) goes."""
        found = self.table.get((host, port))
        if found is not None:
            return TcpTarget(found[0], found[1], host, port)
        return TcpTarget(self.fallback, "", host, port)
