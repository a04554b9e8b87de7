"""Generate a realistic mesh: a Compose file and a directory of Istio YAML, for benchmarks and soak tests.

    .venv/bin/python benchmarks/meshgen.py OUT_DIR [--services 200] [--workloads 600] [--resources 1000]

Services `svc-000`... spread over namespaces `team-0`... (one per 25 services, --per-namespace), each with
versions v1, v2, ... (workloads spread evenly, labels app/version, x-sandbox port, namespace,
serviceAccount, image). Service i calls services i+1 and i+2, which the AuthorizationPolicies
and header matches refer to. The Istio resources come in the order a real team adds them until
the requested count is reached: a mesh-wide PeerAuthentication and one ingress Gateway per
namespace, then per service a DestinationRule (subsets, load balancer, connection pool, outlier
detection), a VirtualService (header and prefix matches, retries, timeouts, weighted subsets),
an AuthorizationPolicy (callers' principals, methods, paths), then an ingress VirtualService or
a ServiceEntry for an external API, then a workload PeerAuthentication or a DestinationRule
originating TLS to that external API. The output is valid, so the analyzer walks every path
without stopping at errors; it is deterministic for a given seed.
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox.mesh.yamlsrc import dump_all_yaml, dump_yaml

PORT = 8080
SERVICES_PER_NAMESPACE = 25
Doc = dict[str, Any]


@dataclass(frozen=True)
class Service:
    index: int
    name: str
    namespace: str
    versions: tuple[str, ...]
    callers: tuple[Service, ...] = field(default=(), compare=False, repr=False)

    @property
    def fqdn(self) -> str:
        return f"{self.name}.{self.namespace}.svc.cluster.local"

    @property
    def principal(self) -> str:
        return f"cluster.local/ns/{self.namespace}/sa/{self.name}"


@dataclass
class Mesh:
    compose: str
    files: dict[str, str]  # relative path under istio/ -> YAML text
    counts: dict[str, int]  # kind -> how many

    @property
    def resources(self) -> int:
        return sum(self.counts.values())

    def write(self, root: Path) -> tuple[Path, Path]:
        """Write compose.yaml and istio/...; returns (compose file, istio dir)."""
        istio = root / "istio"
        for rel, text in self.files.items():
            path = istio / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        compose = root / "compose.yaml"
        compose.write_text(self.compose)
        return compose, istio


def _meta(name: str, namespace: str) -> Doc:
    return {"name": name, "namespace": namespace, "labels": {"team": namespace}}


def _res(api: str, kind: str, name: str, namespace: str, spec: Doc) -> Doc:
    return {"apiVersion": api, "kind": kind, "metadata": _meta(name, namespace), "spec": spec}


def _net(kind: str, name: str, namespace: str, spec: Doc) -> Doc:
    return _res("networking.istio.io/v1", kind, name, namespace, spec)


def _sec(kind: str, name: str, namespace: str, spec: Doc) -> Doc:
    return _res("security.istio.io/v1", kind, name, namespace, spec)


def _host(s: Service, rng: random.Random) -> str:
    return s.fqdn if rng.random() < 0.3 else s.name  # both spellings occur in real repositories


def destination_rule(s: Service, rng: random.Random) -> Doc:
    subsets: list[Doc] = [{"name": v, "labels": {"version": v}} for v in s.versions]
    if len(subsets) > 1:
        subsets[-1]["trafficPolicy"] = {"loadBalancer": {"simple": "ROUND_ROBIN"}}
    policy: Doc = {
        "loadBalancer": {"simple": rng.choice(["LEAST_REQUEST", "ROUND_ROBIN", "RANDOM"])},
        "connectionPool": {
            "tcp": {"maxConnections": 100, "connectTimeout": "2s"},
            "http": {"http1MaxPendingRequests": 64, "maxRequestsPerConnection": 10},
        },
        "outlierDetection": {
            "consecutive5xxErrors": 5,
            "interval": "10s",
            "baseEjectionTime": "30s",
            "maxEjectionPercent": 50,
        },
    }
    if rng.random() < 0.5:
        policy["tls"] = {"mode": "ISTIO_MUTUAL"}
    return _net(
        "DestinationRule", s.name, s.namespace, {"host": _host(s, rng), "trafficPolicy": policy, "subsets": subsets}
    )


def _weighted(s: Service, rng: random.Random) -> list[Doc]:
    cuts = sorted(rng.sample(range(1, 100), len(s.versions) - 1))
    weights = [b - a for a, b in zip([0, *cuts], [*cuts, 100], strict=True)]
    return [
        {"destination": {"host": s.name, "subset": v}, "weight": w} for v, w in zip(s.versions, weights, strict=True)
    ]


def virtual_service(s: Service, rng: random.Random) -> Doc:
    http: list[Doc] = []
    newest, oldest = s.versions[-1], s.versions[0]
    http.append(
        {
            "name": "testers",
            "match": [{"headers": {"end-user": {"exact": "jason"}}}, {"queryParams": {"canary": {"exact": "1"}}}],
            "route": [{"destination": {"host": s.name, "subset": newest}}],
        }
    )
    if s.callers:
        http.append(
            {
                "name": "from-caller",
                "match": [{"sourceLabels": {"app": s.callers[0].name}, "uri": {"prefix": "/internal/"}}],
                "route": [{"destination": {"host": s.name, "subset": oldest, "port": {"number": PORT}}}],
                "timeout": "500ms",
            }
        )
    http.append(
        {
            "name": "api",
            "match": [{"uri": {"prefix": "/api/v1/"}, "method": {"exact": "GET"}}, {"uri": {"regex": "^/v1/[a-z]+$"}}],
            "rewrite": {"uri": "/v1/"},
            "route": _weighted(s, rng),
            "timeout": f"{rng.randint(1, 10)}s",
            "retries": {"attempts": 3, "perTryTimeout": "800ms", "retryOn": "5xx,reset,connect-failure"},
        }
    )
    default: Doc = {"name": "default", "route": [{"destination": {"host": s.name, "subset": oldest}}]}
    if rng.random() < 0.1:
        default["fault"] = {"delay": {"fixedDelay": "2s", "percentage": {"value": 5.0}}}
    http.append(default)
    return _net("VirtualService", s.name, s.namespace, {"hosts": [s.name], "http": http})


def authorization_policy(s: Service, rng: random.Random) -> Doc:
    rules: list[Doc] = [
        {
            "from": [{"source": {"principals": [c.principal for c in s.callers]}}],
            "to": [{"operation": {"methods": ["GET", "POST"], "paths": ["/api/*", "/internal/*"]}}],
        },
        {
            "from": [{"source": {"namespaces": ["istio-system"]}}],
            "to": [{"operation": {"methods": ["GET"], "ports": [str(PORT)]}}],
            "when": [{"key": "request.headers[x-debug]", "notValues": ["1"]}],
        },
    ]
    return _sec(
        "AuthorizationPolicy",
        f"{s.name}-allow",
        s.namespace,
        {"selector": {"matchLabels": {"app": s.name}}, "action": "ALLOW", "rules": rules},
    )


def ingress_virtual_service(s: Service, rng: random.Random) -> Doc:
    return _net(
        "VirtualService",
        f"{s.name}-ingress",
        s.namespace,
        {
            "hosts": [f"{s.name}.{s.namespace}.example.com"],
            "gateways": [f"{s.namespace}/ingress"],
            "http": [
                {
                    "match": [{"uri": {"prefix": "/"}}],
                    "route": [{"destination": {"host": s.fqdn, "port": {"number": PORT}, "subset": s.versions[0]}}],
                    "corsPolicy": {"allowOrigins": [{"exact": "https://example.com"}], "allowMethods": ["GET"]},
                }
            ],
        },
    )


def _external(s: Service) -> str:
    return f"api-{s.index}.partner-{s.index % 7}.example.org"


def service_entry(s: Service, rng: random.Random) -> Doc:
    return _net(
        "ServiceEntry",
        f"partner-{s.index}",
        s.namespace,
        {
            "hosts": [_external(s)],
            "ports": [
                {"number": 443, "name": "https", "protocol": "TLS"},
                {"number": 80, "name": "http", "protocol": "HTTP"},
            ],
            "location": "MESH_EXTERNAL",
            "resolution": "DNS",
        },
    )


def workload_peer_authentication(s: Service, rng: random.Random) -> Doc:
    return _sec(
        "PeerAuthentication",
        s.name,
        s.namespace,
        {
            "selector": {"matchLabels": {"app": s.name}},
            "mtls": {"mode": "STRICT"},
            "portLevelMtls": {"15090": {"mode": "PERMISSIVE"}},
        },
    )


def egress_destination_rule(s: Service, rng: random.Random) -> Doc:
    return _net(
        "DestinationRule",
        f"partner-{s.index}",
        s.namespace,
        {
            "host": _external(s),
            "trafficPolicy": {
                "portLevelSettings": [{"port": {"number": 443}, "tls": {"mode": "SIMPLE", "sni": _external(s)}}],
            },
        },
    )


Maker = Callable[[Service, random.Random], Doc]


def _rounds() -> list[Callable[[Service], Maker]]:
    """Per-service makers, in the order a team adds them; rounds 4 and 5 alternate by service."""
    return [
        lambda s: destination_rule,
        lambda s: virtual_service,
        lambda s: authorization_policy,
        lambda s: ingress_virtual_service if s.index % 2 == 0 else service_entry,
        lambda s: workload_peer_authentication if s.index % 2 == 0 else egress_destination_rule,
    ]


def services(count: int, workloads: int, per_namespace: int = SERVICES_PER_NAMESPACE) -> list[Service]:
    namespaces = max(1, count // per_namespace)
    base, extra = divmod(max(workloads, count), count)
    plain = [
        Service(i, f"svc-{i:03d}", f"team-{i % namespaces}", tuple(f"v{v + 1}" for v in range(base + (i < extra))))
        for i in range(count)
    ]
    by_index = {s.index: s for s in plain}
    # service i calls i+1 and i+2: so service j's callers are j-1 and j-2
    return [
        Service(
            s.index,
            s.name,
            s.namespace,
            s.versions,
            tuple(by_index[(s.index - k) % count] for k in (1, 2) if count > k),
        )
        for s in plain
    ]


def compose_file(all_services: list[Service]) -> str:
    entries: dict[str, Any] = {}
    for s in all_services:
        for v in s.versions:
            entries[f"{s.name}-{v}"] = {
                "image": f"registry.example.com/{s.name}:{v}",
                "labels": {"app": s.name, "version": v, "team": s.namespace},
                "environment": {
                    "UPSTREAMS": ",".join(f"http://{c.name}:{PORT}" for c in all_services[s.index + 1 : s.index + 3])
                },
                "x-sandbox": {"port": PORT, "namespace": s.namespace, "serviceAccount": s.name},
            }
    entries["postgres"] = {"image": "postgres:16", "environment": {"POSTGRES_PASSWORD": "example"}}
    return dump_yaml({"name": "meshgen", "x-sandbox": {"ingress": {"port": 8081}}, "services": entries})


def _documents(all_services: list[Service], rng: random.Random) -> Iterator[tuple[str, Doc]]:
    namespaces = sorted({s.namespace for s in all_services})
    yield "mesh.yaml", _sec("PeerAuthentication", "default", "istio-system", {"mtls": {"mode": "PERMISSIVE"}})
    for ns in namespaces:
        servers = [
            {"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": [f"*.{ns}.example.com"]},
        ]
        yield (
            f"{ns}/gateway.yaml",
            _net("Gateway", "ingress", ns, {"selector": {"istio": "ingressgateway"}, "servers": servers}),
        )
    for make in _rounds():
        for s in all_services:
            yield f"{s.namespace}/{s.name}.yaml", make(s)(s, rng)


def generate(
    n_services: int = 200,
    n_workloads: int = 600,
    n_resources: int = 1000,
    seed: int = 0,
    per_namespace: int = SERVICES_PER_NAMESPACE,
) -> Mesh:
    rng = random.Random(seed)
    all_services = services(n_services, n_workloads, per_namespace)
    by_file: dict[str, list[Doc]] = {}
    counts: dict[str, int] = {}
    made = 0
    for rel, doc in _documents(all_services, rng):
        if made == n_resources:
            break
        by_file.setdefault(rel, []).append(doc)
        counts[doc["kind"]] = counts.get(doc["kind"], 0) + 1
        made += 1
    if made < n_resources:
        raise ValueError(f"{n_services} services make at most {made} resources; ask for fewer or add services")
    files = {rel: dump_all_yaml(docs) for rel, docs in sorted(by_file.items())}
    return Mesh(compose_file(all_services), files, counts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--services", type=int, default=200)
    parser.add_argument("--workloads", type=int, default=600)
    parser.add_argument("--resources", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-namespace", type=int, default=SERVICES_PER_NAMESPACE, help="services per namespace")
    args = parser.parse_args()
    mesh = generate(args.services, args.workloads, args.resources, args.seed, args.per_namespace)
    compose, istio = mesh.write(args.out)
    kinds = ", ".join(f"{n} {k}" for k, n in sorted(mesh.counts.items()))
    print(f"wrote {compose} and {istio}/ ({mesh.resources} resources: {kinds})")


if __name__ == "__main__":
    main()
