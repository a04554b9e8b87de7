"""Istio's names: service FQDNs, host matching, cluster keys and SPIFFE identities, built in one place."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

DOMAIN_SUFFIX = "svc.cluster.local"
DEFAULT_TRUST_DOMAIN = "cluster.local"


def service_fqdn(name: str, namespace: str) -> str:
    return f"{name}.{namespace}.{DOMAIN_SUFFIX}"


def resolve_host(host: str, namespace: str, known_namespaces: Collection[str] = ()) -> str:
    """The FQDN a rule's host means. Short names resolve in the *rule's* namespace (Istio's rule);
    `name.ns` and `name.ns.svc` resolve when `ns` is a known namespace (Kiali's rule); anything
    else (external hosts, wildcards, FQDNs) is kept as written."""
    host = host.strip().lower()
    if not host or host.startswith("*") or "/" in host:
        return host
    parts = host.split(".")
    if len(parts) == 1:
        return service_fqdn(host, namespace)
    if len(parts) == 2 and parts[1] in known_namespaces:
        return service_fqdn(parts[0], parts[1])
    if len(parts) == 3 and parts[2] == "svc":
        return service_fqdn(parts[0], parts[1])
    return host


def split_fqdn(fqdn: str) -> tuple[str, str] | None:
    """(service, namespace) of a mesh-internal FQDN, or None for anything else."""
    suffix = "." + DOMAIN_SUFFIX
    if not fqdn.endswith(suffix):
        return None
    parts = fqdn[: -len(suffix)].split(".")
    return (parts[0], parts[1]) if len(parts) == 2 else None


def host_matches(pattern: str, host: str) -> bool:
    """Istio host matching: `*` matches all, `*.suffix` matches by DNS suffix, else equality."""
    pattern, host = pattern.lower(), host.lower()
    if pattern == "*" or pattern == host:
        return True
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) or (host.startswith("*.") and host.endswith(pattern[1:]))
    return False


def hosts_overlap(a: str, b: str) -> bool:
    return host_matches(a, b) or host_matches(b, a)


@dataclass(frozen=True, slots=True)
class ClusterKey:
    """Envoy cluster names as Istio writes them: `outbound|9080|v2|reviews.default.svc.cluster.local`."""

    direction: str  # "outbound" or "inbound"
    port: int
    subset: str
    host: str

    def __str__(self) -> str:
        return f"{self.direction}|{self.port}|{self.subset}|{self.host}"

    @classmethod
    def outbound(cls, host: str, port: int, subset: str | None = None) -> ClusterKey:
        return cls("outbound", port, subset or "", host)

    @classmethod
    def inbound(cls, port: int) -> ClusterKey:
        return cls("inbound", port, "", "")

    @classmethod
    def parse(cls, text: str) -> ClusterKey:
        parts = text.split("|")
        if len(parts) != 4 or parts[0] not in ("outbound", "inbound") or not parts[1].isdigit():
            raise ValueError(f"not an Istio cluster name: {text!r}")
        return cls(parts[0], int(parts[1]), parts[2], parts[3])


def spiffe_id(namespace: str, service_account: str, trust_domain: str = DEFAULT_TRUST_DOMAIN) -> str:
    return f"spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}"


def principal(namespace: str, service_account: str, trust_domain: str = DEFAULT_TRUST_DOMAIN) -> str:
    """The principal form AuthorizationPolicy uses: the SPIFFE ID without `spiffe://`."""
    return f"{trust_domain}/ns/{namespace}/sa/{service_account}"


def labels_match(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """True when every selector label is present with the same value (an empty selector matches)."""
    return all(labels.get(k) == v for k, v in selector.items())


def node_name(workload: str, replica: int, replicas: int) -> str:
    """A proxy's node name: the workload's name when it has one replica, else `<workload>-<n>`
    (1-based), the names control.compile_clusters.default_endpoints resolves."""
    return workload if replicas <= 1 else f"{workload}-{replica + 1}"
