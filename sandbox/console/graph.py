"""The traffic graph, built as Kiali builds it (graph/telemetry/istio/istio.go, graph/types.go,
graph/protocol.go, graph/config/common/common.go; docs/reference/kiali-console.md §3). Pure: PromQL
answers in, Kiali's graph JSON out.

Nodes are identified as Kiali's `Id()` does (`vapp_<cluster>_<ns>_<workload>`, `app_...`,
`wl_...`, `svc_...`, `<cluster>_unknown_source`) and published as the SHA-256 of that id; an edge's
id is the SHA-256 of `source.target.protocol`. A series seen by both reporters counts once (the
destination reporter's, which knows the connection's security policy). Rates are requests (or
bytes) per second over the window, printed with Kiali's precision.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sandbox.console.graph_appenders import Decorations, decorate
from sandbox.console.graph_model import Edge, Node
from sandbox.console.health import edge_health, node_health, requests_json
from sandbox.console.prom import Sample

GRAPH_TYPES = ("versionedApp", "app", "workload", "service")
UNKNOWN = "unknown"
PEER_LABELS = (
    "source_cluster", "source_workload_namespace", "source_workload", "source_canonical_service",
    "source_canonical_revision", "destination_cluster", "destination_workload_namespace", "destination_workload",
    "destination_canonical_service", "destination_canonical_revision", "destination_service_namespace",
    "destination_service_name", "destination_service",
)  # fmt: skip
NODE_RATES = {"http": ("httpIn", "httpIn3xx", "httpIn4xx", "httpIn5xx", "httpOut"), "tcp": ("tcpIn", "tcpOut")}
EDGE_RATES = {"http": ("http", "http3xx", "http4xx", "http5xx"), "tcp": ("tcp",)}


def ok(value: str | None) -> bool:
    return bool(value) and value != UNKNOWN


def node_key(
    graph_type: str, cluster: str, namespace: str, workload: str, app: str, version: str, service: tuple[str, str, str]
) -> tuple[str, str]:
    """Kiali's graph.Id(): (internal id, node type); service is (cluster, namespace, name)."""
    svc_cluster, svc_ns, svc = service
    if not ok(workload) and not ok(app) and not ok(svc):
        return f"{cluster}_unknown_source", "unknown"
    if graph_type in ("workload", "service"):
        if not ok(workload):
            return f"svc_{svc_cluster}_{svc_ns}_{svc}", "service"
        return f"wl_{cluster}_{namespace}_{workload}", "workload"
    if ok(app):
        if graph_type == "versionedApp":
            if ok(workload):
                return f"vapp_{cluster}_{namespace}_{workload}", "app"
            if ok(version):
                return f"vapp_{cluster}_{namespace}_{app}_{version}", "app"
        return f"app_{cluster}_{namespace}_{app}", "app"
    if ok(workload):
        return f"wl_{cluster}_{namespace}_{workload}", "workload"
    return f"svc_{svc_cluster}_{svc_ns}_{svc}", "service"


class TrafficMap:
    def __init__(self, graph_type: str, inject_service_nodes: bool) -> None:
        self.graph_type = graph_type
        self.inject = inject_service_nodes or graph_type == "service"
        self.nodes: dict[str, Node] = {}
        self.edges: dict[tuple[str, str, str], Edge] = {}
        self._end_cache: dict[tuple[str, ...], list[tuple[Node, Node]]] = {}

    def node(
        self, key: str, node_type: str, cluster: str, namespace: str, workload: str = "", app: str = "",
        version: str = "", service: str = "",
    ) -> Node:  # fmt: skip
        found = self.nodes.get(key)
        if found is None:
            found = self.nodes[key] = Node(key, node_type, cluster, namespace, workload, app, version, service)
        return found

    def _ends(self, m: Mapping[str, str]) -> list[tuple[Node, Node]]:
        """The node pairs one series feeds: source -> destination, or source -> service -> destination
        (looked up once per distinct pair of peers: a pair's series differ by code, flags, reporter)."""
        key = tuple(m.get(label, UNKNOWN) for label in PEER_LABELS)
        found = self._end_cache.get(key)
        if found is None:
            found = self._end_cache[key] = self._find_ends(m)
        return found

    def _find_ends(self, m: Mapping[str, str]) -> list[tuple[Node, Node]]:
        sc = m.get("source_cluster", UNKNOWN)
        sns, swl = m.get("source_workload_namespace", UNKNOWN), m.get("source_workload", UNKNOWN)
        sapp, sver = m.get("source_canonical_service", UNKNOWN), m.get("source_canonical_revision", UNKNOWN)
        dc = m.get("destination_cluster", UNKNOWN)
        dns, dwl = m.get("destination_workload_namespace", UNKNOWN), m.get("destination_workload", UNKNOWN)
        dapp, dver = m.get("destination_canonical_service", UNKNOWN), m.get("destination_canonical_revision", UNKNOWN)
        svc_ns = m.get("destination_service_namespace", UNKNOWN)
        svc = m.get("destination_service_name", UNKNOWN)
        if not ok(svc):
            svc = m.get("destination_service", UNKNOWN)
        if not ok(swl):  # requests from outside the mesh
            skey, stype = f"{sc}_unknown_source", "unknown"
            src = self.node(skey, stype, cluster=sc, namespace=UNKNOWN, workload=UNKNOWN, app=UNKNOWN)
        else:
            skey, stype = node_key(self.graph_type, sc, sns, swl, sapp, sver, (sc, sns, UNKNOWN))
            src = self.node(skey, stype, sc, sns, *self._labels(stype, swl, sapp, sver))
        dkey, dtype = node_key(self.graph_type, dc, dns, dwl, dapp, dver, (dc, svc_ns, svc))
        if dtype == "service":
            dst = self.node(dkey, dtype, cluster=dc, namespace=svc_ns, service=svc)
        else:
            dst = self.node(dkey, dtype, dc, dns, *self._labels(dtype, dwl, dapp, dver))
        if ok(svc) and dtype != "service":
            dst.dest_services.add((svc_ns, svc))
        if self.inject and dtype != "service" and ok(svc):
            mid = self.node(f"svc_{dc}_{svc_ns}_{svc}", "service", cluster=dc, namespace=svc_ns, service=svc)
            return [(src, mid), (mid, dst)]
        return [(src, dst)]

    def _labels(self, node_type: str, workload: str, app: str, version: str) -> tuple[str, str, str]:
        """(workload, app, version) as Kiali fills them for a node of this graph type."""
        if node_type == "workload":
            return workload, app if ok(app) else "", version if ok(version) else ""
        if self.graph_type == "versionedApp":
            return workload, app, version
        return "", app, ""

    def add(self, protocol: str, sample: Sample) -> None:
        labels, value = sample
        code = labels.get("response_code", "-") if protocol == "http" else "-"
        if protocol == "http" and labels.get("request_protocol") == "grpc":
            protocol, code = "grpc", labels.get("grpc_response_status", code) or code
        flags = labels.get("response_flags", "-")
        host = labels.get("destination_service", "")
        mtls = labels.get("connection_security_policy") == "mutual_tls"
        for src, dst in self._ends(labels):
            edge = self.edges.get((src.key, dst.key, protocol))
            if edge is None:
                edge = self.edges[(src.key, dst.key, protocol)] = Edge(src, dst, protocol)
            _add_rate(src, dst, edge, protocol, code, value)
            detail = edge.responses.get(code)
            if detail is None:
                detail = edge.responses[code] = {"flags": {}, "hosts": {}}
            detail["flags"][flags] = detail["flags"].get(flags, 0.0) + value
            if host:
                detail["hosts"][host] = detail["hosts"].get(host, 0.0) + value
            if mtls:
                edge.mtls += value

    def add_response_time(self, sample: Sample, skip: set[tuple[str, str, str]] | None = None) -> None:
        """A quantile for the edges this series feeds; quantiles do not add up, so an edge fed by
        several series (versions folded into an app) keeps the largest."""
        labels, value = sample
        for src, dst in self._ends(labels):
            for protocol in ("http", "grpc"):
                edge = self.edges.get((src.key, dst.key, protocol))
                if edge is not None and (skip is None or (src.key, dst.key, protocol) not in skip):
                    edge.response_time = max(edge.response_time or 0.0, value)


def _add_rate(src: Node, dst: Node, edge: Edge, protocol: str, code: str, value: float) -> None:
    def add(rates: dict[str, float], key: str) -> None:
        rates[key] = rates.get(key, 0.0) + value

    add(src.rates, f"{protocol}Out")
    add(dst.rates, f"{protocol}In")
    add(edge.rates, protocol)
    if protocol == "http" and code[:1] in "345":
        add(dst.rates, f"httpIn{code[0]}xx")
        add(edge.rates, f"http{code[0]}xx")
    elif protocol == "grpc" and ((len(code) == 3 and code[:1] in "45") or (len(code) != 3 and code != "0")):
        add(dst.rates, "grpcInErr")
        add(edge.rates, "grpcErr")


def series_key(protocol: str, labels: Mapping[str, str]) -> tuple[str, ...]:
    """What makes two reporters' series the same traffic (Kiali hashes the same fields)."""
    fields = (
        "source_workload_namespace",
        "source_workload",
        "destination_service",
        "destination_workload_namespace",
        "destination_workload",
        "response_code",
        "grpc_response_status",
        "response_flags",
    )
    return (protocol, *(labels.get(f, "") for f in fields))


def build(
    graph_type: str,
    namespaces: Sequence[str],
    http: Iterable[Sample],
    tcp: Iterable[Sample],
    response_times: tuple[Iterable[Sample], Iterable[Sample]],
    inject_service_nodes: bool = False,
    decorations: Decorations | None = None,
) -> TrafficMap:
    """Series (destination reporter's first) -> the traffic map with Kiali's appenders applied."""
    traffic = TrafficMap(graph_type, inject_service_nodes)
    seen: set[tuple[str, ...]] = set()
    for protocol, samples in (("http", http), ("tcp", tcp)):
        for sample in samples:
            key = series_key(protocol, sample[0])
            if key in seen:
                continue
            seen.add(key)
            traffic.add(protocol, sample)
    destination_rt, source_rt = response_times
    for sample in destination_rt:
        traffic.add_response_time(sample)
    measured = {k for k, e in traffic.edges.items() if e.response_time is not None}
    for sample in source_rt:  # the source reporter only where the destination's did not say
        traffic.add_response_time(sample, skip=measured)
    if graph_type == "service":
        reduce_to_service_graph(traffic)
    mark_outsiders_and_roots(traffic, namespaces)
    decorate(traffic.nodes.values(), decorations or Decorations())
    return traffic


def reduce_to_service_graph(traffic: TrafficMap) -> None:
    """Kiali's service graph: service -> workload -> service becomes service -> service; nodes that
    are not services keep their edges to services (a gateway, an unknown source)."""
    edges: dict[tuple[str, str, str], Edge] = {}
    into: dict[str, list[Edge]] = {}
    for edge in traffic.edges.values():
        into.setdefault(edge.dest.key, []).append(edge)
    for edge in traffic.edges.values():
        src, dst = edge.source, edge.dest
        if dst.node_type != "service":
            continue
        if src.node_type == "service":
            continue
        # the workload calling: via the services that route to it, or as itself when nothing does
        callers = [e.source for e in into.get(src.key, ()) if e.source.node_type == "service"] or [src]
        for caller in callers:
            key = (caller.key, dst.key, edge.protocol)
            merged = edges.get(key)
            if merged is None:
                merged = edges[key] = Edge(caller, dst, edge.protocol)
            for name, value in edge.rates.items():
                merged.rates[name] = merged.rates.get(name, 0.0) + value
            for code, detail in edge.responses.items():
                into_detail = merged.responses.setdefault(code, {"flags": {}, "hosts": {}})
                for part in ("flags", "hosts"):
                    for k, v in detail[part].items():
                        into_detail[part][k] = into_detail[part].get(k, 0.0) + v
            merged.mtls += edge.mtls
            if edge.response_time is not None:
                merged.response_time = max(merged.response_time or 0.0, edge.response_time)
    keep = {k for e in edges.values() for k in (e.source.key, e.dest.key)}
    traffic.nodes = {k: n for k, n in traffic.nodes.items() if k in keep}
    for node in traffic.nodes.values():
        node.rates = {}
    for edge in edges.values():
        for name, value in edge.rates.items():
            if name in ("http", "grpc", "tcp"):
                edge.source.rates[f"{name}Out"] = edge.source.rates.get(f"{name}Out", 0.0) + value
                edge.dest.rates[f"{name}In"] = edge.dest.rates.get(f"{name}In", 0.0) + value
            elif name.startswith("http") and name.endswith("xx"):
                edge.dest.rates[f"httpIn{name[4:]}"] = edge.dest.rates.get(f"httpIn{name[4:]}", 0.0) + value
    traffic.edges = edges


def mark_outsiders_and_roots(traffic: TrafficMap, namespaces: Sequence[str]) -> None:
    """Kiali's outsider appender: nodes of namespaces not asked for are outside; a node with
    traffic out and none in generates traffic (a root: the ingress gateway, an unknown client)."""
    wanted = set(namespaces)
    targets = {e.dest.key for e in traffic.edges.values()}
    sources = {e.source.key for e in traffic.edges.values()}
    for node in traffic.nodes.values():
        if node.node_type != "unknown" and node.namespace not in wanted and node.namespace != UNKNOWN:
            node.flags["isOutside"] = True
        if node.key in sources and node.key not in targets:
            node.flags["isRoot"] = True


# ------------------------------------------------------------------------------------------ JSON


def rate_text(value: float, precision: int = 2) -> str:
    """Kiali's rateToString: at least `precision` decimals, more until a significant digit shows (max 5)."""
    needed, v = 0, value
    while needed < 5 and 0 < v < 1:
        v *= 10
        needed += 1
    return f"{value:.{max(precision, needed)}f}"


def _node_json(node: Node, requests: dict[str, dict[str, dict[str, float]]]) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": node.id,
        "nodeType": node.node_type,
        "cluster": node.cluster,
        "namespace": node.namespace,
    }
    for key in ("workload", "app", "version", "service"):
        value = getattr(node, key)
        if value:
            data[key] = value
    if node.dest_services:
        data["destServices"] = [
            {"cluster": node.cluster, "namespace": ns, "name": name} for ns, name in sorted(node.dest_services)
        ]
    traffic_json = []
    for protocol in ("grpc", "http", "tcp"):
        names = NODE_RATES.get(protocol, (f"{protocol}In", f"{protocol}InErr", f"{protocol}Out"))
        rates = {n: rate_text(node.rates[n]) for n in names if node.rates.get(n, 0.0) > 0}
        if rates:
            traffic_json.append({"protocol": protocol, "rates": rates})
    if traffic_json:
        data["traffic"] = traffic_json
    data["healthData"] = {"requests": requests_json(requests)}
    data.update(node.flags)
    data["healthStatus"] = node_health(requests)
    return data


def _edge_json(edge: Edge) -> dict[str, Any]:
    source, target = edge.source.id, edge.dest.id
    edge_id = hashlib.sha256(f"{source}.{target}.{edge.protocol}".encode()).hexdigest()
    data: dict[str, Any] = {"id": edge_id, "source": source, "target": target}
    total = edge.rates.get(edge.protocol, 0.0)
    rates = {k: rate_text(v) for k, v in edge.rates.items() if v > 0}
    if total > 0 and edge.protocol in ("http", "grpc"):
        errors = edge.rates.get("http4xx", 0.0) + edge.rates.get("http5xx", 0.0) + edge.rates.get("grpcErr", 0.0)
        if errors > 0:
            rates[f"{edge.protocol}PercentErr"] = f"{errors / total * 100:.1f}"
        out = edge.source.rates.get(f"{edge.protocol}Out", 0.0)
        if out > 0:
            rates[f"{edge.protocol}PercentReq"] = f"{total / out * 100:.1f}"
    responses = (
        {
            code: {
                "flags": {f: f"{v / total * 100:.1f}" for f, v in detail["flags"].items()},
                "hosts": {h: f"{v / total * 100:.1f}" for h, v in detail["hosts"].items()},
            }
            for code, detail in edge.responses.items()
        }
        if total > 0
        else {}
    )
    data["traffic"] = {"protocol": edge.protocol, "rates": rates, "responses": responses}
    if edge.response_time is not None:
        data["responseTime"] = f"{edge.response_time:.0f}"
    if total > 0 and edge.protocol != "tcp":
        data["isMTLS"] = f"{edge.mtls / total * 100:.0f}" if edge.mtls > 0 else None
        if data["isMTLS"] is None:
            del data["isMTLS"]
    data["healthStatus"] = edge_health(edge.protocol, edge.responses, total)
    return data


def to_json(traffic: TrafficMap, timestamp: int, duration_s: int) -> dict[str, Any]:
    """Kiali's common config: {timestamp, duration, graphType, elements: {nodes, edges}}."""
    nodes = sorted(
        traffic.nodes.values(), key=lambda n: (n.cluster, n.namespace, n.app, n.version, n.service, n.workload)
    )
    requests: dict[str, dict[str, dict[str, dict[str, float]]]] = {k: {} for k in traffic.nodes}
    for e in traffic.edges.values():
        for key, direction in ((e.source.key, "outbound"), (e.dest.key, "inbound")):
            codes = requests[key].setdefault(direction, {}).setdefault(e.protocol, {})
            for code, detail in e.responses.items():
                codes[code] = codes.get(code, 0.0) + sum(detail["flags"].values())
    edges = [_edge_json(e) for e in traffic.edges.values()]
    edges.sort(key=lambda e: (e["source"], e["target"], e["traffic"]["protocol"]))
    return {
        "timestamp": timestamp,
        "duration": duration_s,
        "graphType": traffic.graph_type,
        "elements": {
            "nodes": [{"data": _node_json(n, requests[n.key])} for n in nodes],
            "edges": [{"data": e} for e in edges],
        },
    }
