"""Kiali's service wizards: the VirtualService and DestinationRule (and, when asked, a Gateway and a
PeerAuthentication) that each wizard generates, with Kiali's names, labels and defaults
(kiali/kiali frontend/src/components/IstioWizards/WizardActions.ts `buildIstioConfig`,
ServiceWizard.tsx; docs/reference/kiali-console.md §5). Pure: the service's context and the
wizard's state (the form, as JSON) in, manifests out.

Every object carries `kiali_wizard: <type>`; a wizard opens on a service with no traffic routing,
or on the routing the same wizard made (Kiali's rule: other VirtualServices are edited as YAML).
The state's shape follows Kiali's wizard state: `workloads` [{name, weight, mirrored}], `rules`
[{matches: ["headers [end-user] exact jason", "uri prefix /api"], workloads}], `fault` {delay,
abort}, `timeout`, `retries`, `vsHosts`, `trafficPolicy` {tls, loadBalancer, connectionPool,
outlierDetection, peerAuthentication}, `gateway` {addGateway, newGateway, selectedGateway, port,
gwHosts, addMesh}.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

TRAFFIC_SHIFTING = "traffic_shifting"
TCP_TRAFFIC_SHIFTING = "tcp_traffic_shifting"
REQUEST_ROUTING = "request_routing"
FAULT_INJECTION = "fault_injection"
REQUEST_TIMEOUTS = "request_timeouts"
TITLES = {
    REQUEST_ROUTING: "Request Routing",
    FAULT_INJECTION: "Fault Injection",
    TRAFFIC_SHIFTING: "Traffic Shifting",
    TCP_TRAFFIC_SHIFTING: "TCP Traffic Shifting",
    REQUEST_TIMEOUTS: "Request Timeouts",
}
LABEL = "kiali_wizard"
RELATED = "kiali_wizard_related"
NETWORKING = "networking.istio.io/v1"
SECURITY = "security.istio.io/v1"
MATCH_FIELDS = ("headers", "uri", "scheme", "method", "authority")
MATCH_OPS = ("exact", "prefix", "regex")
DEFAULT_FAULT = {
    "delay": {"percentage": {"value": 100}, "fixedDelay": "5s"},
    "abort": {"percentage": {"value": 100}, "httpStatus": 503},
}
DEFAULT_TIMEOUT = "2s"
DEFAULT_RETRIES = {"attempts": 3, "perTryTimeout": "2s", "retryOn": "gateway-error,connect-failure,refused-stream"}
DEFAULT_CONNECTION_POOL = {"tcp": {"maxConnections": 1}, "http": {"http1MaxPendingRequests": 1}}
DEFAULT_OUTLIER_DETECTION = {"consecutiveErrors": 1}
TLS_MODES = ("UNSET", "DISABLE", "ISTIO_MUTUAL", "SIMPLE", "MUTUAL")
SIMPLE_LB = ("ROUND_ROBIN", "LEAST_CONN", "RANDOM", "PASSTHROUGH")
PA_MODES = ("UNSET", "DISABLE", "PERMISSIVE", "STRICT")


class WizardError(ValueError):
    """A wizard state that cannot make valid routing (the message says what to change)."""


@dataclass(frozen=True)
class ServiceContext:
    name: str
    namespace: str
    fqdn: str
    workloads: tuple[tuple[str, Mapping[str, str]], ...]  # (workload name, labels)
    virtual_services: tuple[Mapping[str, Any], ...] = ()  # manifests whose hosts name the service
    destination_rules: tuple[Mapping[str, Any], ...] = ()  # manifests whose host is the service
    gateways: tuple[str, ...] = ()  # "namespace/name" of the Gateways in force
    peer_authentications: tuple[Mapping[str, Any], ...] = field(default=())  # of the namespace

    def version_of(self, workload: str) -> str | None:
        labels = dict(self.workloads).get(workload) or {}
        return labels.get("version") or None

    @property
    def update_label(self) -> str:
        """The wizard that made the service's routing ("" when none did)."""
        for vs in self.virtual_services:
            label = _meta(vs).get("labels", {}).get(LABEL)
            if label:
                return str(label)
        return ""

    @property
    def has_traffic_routing(self) -> bool:
        return bool(self.virtual_services or self.destination_rules)

    def enabled(self, wizard: str) -> bool:
        """Kiali's rule: a wizard opens on a service without routing, or on the routing it made."""
        return not self.has_traffic_routing or self.update_label == wizard


def _meta(manifest: Mapping[str, Any]) -> Mapping[str, Any]:
    return manifest.get("metadata") or {}


def _spec(manifest: Mapping[str, Any]) -> Mapping[str, Any]:
    return manifest.get("spec") or {}


def default_weights(workloads: Sequence[str]) -> list[dict[str, Any]]:
    """Kiali's getDefaultWeights: floor(100 / n) each, the remainder to the last."""
    if not workloads:
        return []
    share, rest = divmod(100, len(workloads)) if len(workloads) < 100 else (0, 0)
    weights: list[dict[str, Any]] = [{"name": w, "weight": share, "mirrored": False} for w in workloads]
    weights[-1]["weight"] = share + rest
    return weights


def _check_weights(weights: Sequence[Mapping[str, Any]], where: str) -> None:
    routed = [w for w in weights if not w.get("mirrored")]
    if not routed:
        raise WizardError(f"{where}: route to at least one workload")
    for w in weights:
        if not isinstance(w.get("weight"), int) or not 0 <= int(w["weight"]) <= 100:
            raise WizardError(f"{where}: the weight of {w.get('name')} must be a whole number from 0 to 100")
    if sum(int(w["weight"]) for w in routed) != 100:
        raise WizardError(f"{where}: the sum of all non-mirrored weights must be 100 %")


def _destination(ctx: ServiceContext, workload: str) -> dict[str, Any]:
    out: dict[str, Any] = {"host": ctx.fqdn}
    version = ctx.version_of(workload)
    if version:
        out["subset"] = version
    return out


def _routes(ctx: ServiceContext, weights: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """An http route's `route` (and `mirror`, `mirrorPercentage` for a mirrored workload)."""
    known = {w for w, _ in ctx.workloads}
    for w in weights:
        if w.get("name") not in known:
            raise WizardError(f"{w.get('name')!r} is not a workload of {ctx.name}")
    out: dict[str, Any] = {
        "route": [
            {"destination": _destination(ctx, str(w["name"])), "weight": int(w["weight"])}
            for w in weights
            if not w.get("mirrored")
        ]
    }
    mirrored = [w for w in weights if w.get("mirrored")]
    if mirrored:
        out["mirror"] = _destination(ctx, str(mirrored[-1]["name"]))
        out["mirrorPercentage"] = {"value": int(mirrored[-1]["weight"])}
    return out


def parse_match(text: str) -> tuple[str, str | None, str, str]:
    """Kiali's match strings: `headers [<name>] <op> <value>` or `<field> <op> <value>`."""
    words = text.strip()
    header = None
    if words.startswith("headers"):
        start, end = words.find("["), words.find("]")
        if start < 0 or end < start:
            raise WizardError(f"match {text!r}: write headers [<name>] exact|prefix|regex <value>")
        header = words[start + 1 : end].strip()
        field_name, rest = "headers", words[end + 1 :].strip()
    else:
        field_name, _, rest = words.partition(" ")
    op, _, value = rest.strip().partition(" ")
    if (
        field_name not in MATCH_FIELDS
        or op not in MATCH_OPS
        or not value.strip()
        or (header is not None and not header)
    ):
        raise WizardError(f"match {text!r}: write <uri|scheme|method|authority> exact|prefix|regex <value>")
    return field_name, header, op, value.strip()


def http_matches(matches: Sequence[str]) -> list[dict[str, Any]]:
    """Kiali's buildHTTPMatchRequest: header conditions grouped into one match, then one per field."""
    parsed = [parse_match(m) for m in matches]
    out: list[dict[str, Any]] = []
    headers = {h: {op: v} for f, h, op, v in parsed if f == "headers" and h is not None}
    if headers:
        out.append({"headers": headers})
    out += [{f: {op: v}} for f, _, op, v in parsed if f != "headers"]
    return out


def _vs_spec(ctx: ServiceContext, wizard: str, state: Mapping[str, Any]) -> dict[str, Any]:
    weights = state.get("workloads") or default_weights([w for w, _ in ctx.workloads])
    if wizard == TCP_TRAFFIC_SHIFTING:
        _check_weights(weights, "TCP traffic shifting")
        return {"tcp": [{"route": _routes(ctx, [w for w in weights if not w.get("mirrored")])["route"]}]}
    if wizard == REQUEST_ROUTING:
        rules = state.get("rules") or []
        if not rules:
            raise WizardError("request routing: add at least one rule")
        http = []
        for i, rule in enumerate(rules):
            _check_weights(rule.get("workloads") or [], f"rule {i + 1}")
            route: dict[str, Any] = {}
            if rule.get("matches"):
                route["match"] = http_matches(rule["matches"])
            route.update(_routes(ctx, rule["workloads"]))
            for key in ("fault", "timeout", "retries"):
                if rule.get(key):
                    route[key] = rule[key]
            http.append(route)
        return {"http": http}
    _check_weights(weights, TITLES[wizard])
    route = _routes(ctx, weights)
    if wizard == FAULT_INJECTION:
        fault = {k: v for k, v in (state.get("fault") or {}).items() if k in ("delay", "abort") and v}
        if fault:
            route["fault"] = fault
    elif wizard == REQUEST_TIMEOUTS:
        if state.get("timeout"):
            route["timeout"] = state["timeout"]
        if state.get("retries"):
            route["retries"] = state["retries"]
    return {"http": [route]}


def _traffic_policy(policy: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    tls = policy.get("tls") or {}
    if tls.get("mode") and tls["mode"] != "UNSET":
        out["tls"] = {"mode": tls["mode"]}
        if tls["mode"] == "MUTUAL":
            out["tls"].update({k: tls[k] for k in ("clientCertificate", "privateKey", "caCertificates") if tls.get(k)})
    lb = policy.get("loadBalancer")
    if lb:
        if lb.get("simple"):
            out["loadBalancer"] = {"simple": lb["simple"]}
        elif lb.get("consistentHash"):
            ch = lb["consistentHash"]
            key = next((k for k in ("httpHeaderName", "httpCookie", "useSourceIp") if ch.get(k)), None)
            if key is None:
                raise WizardError("load balancer: a consistent hash needs a header name, a cookie or the source IP")
            out["loadBalancer"] = {"consistentHash": {key: ch[key]}}
    for key in ("connectionPool", "outlierDetection"):
        if policy.get(key):
            out[key] = policy[key]
    return out


def build(ctx: ServiceContext, wizard: str, state: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The wizard's objects, in the order they can be created: [Gateway,] DestinationRule,
    VirtualService[, PeerAuthentication]."""
    if wizard not in TITLES:
        raise WizardError(f"unknown wizard {wizard!r} (one of {', '.join(TITLES)})")
    labels = {LABEL: wizard}
    dr_name = _existing_name(ctx.destination_rules, ctx.name)
    vs_name = _existing_name(ctx.virtual_services, ctx.name)
    subsets = [
        {"name": str(lbls["version"]), "labels": {"version": str(lbls["version"])}}
        for _, lbls in ctx.workloads
        if lbls.get("version")
    ]
    dr_spec: dict[str, Any] = {"host": ctx.fqdn}
    if subsets:
        dr_spec["subsets"] = subsets
    policy = state.get("trafficPolicy") or {}
    traffic_policy = _traffic_policy(policy)
    if traffic_policy:
        dr_spec["trafficPolicy"] = traffic_policy
    dr_meta: dict[str, Any] = {"namespace": ctx.namespace, "name": dr_name, "labels": dict(labels)}
    out: list[dict[str, Any]] = []
    pa_mode = (policy.get("peerAuthentication") or {}).get("mode")
    if pa_mode:
        dr_meta["annotations"] = {RELATED: f"PeerAuthentication/{ctx.name}"}
    vs_spec = _vs_spec(ctx, wizard, state)
    hosts = [h for h in state.get("vsHosts") or () if h] or [ctx.fqdn]
    vs_spec = {"hosts": hosts, **_gateways(ctx, state.get("gateway"), out, labels), **vs_spec}
    out.append({"apiVersion": NETWORKING, "kind": "DestinationRule", "metadata": dr_meta, "spec": dr_spec})
    vs_meta = {"namespace": ctx.namespace, "name": vs_name, "labels": dict(labels)}
    out.append({"apiVersion": NETWORKING, "kind": "VirtualService", "metadata": vs_meta, "spec": vs_spec})
    if pa_mode:
        if pa_mode not in PA_MODES:
            raise WizardError(f"PeerAuthentication mode must be one of {', '.join(PA_MODES)}")
        app = next((lbls.get("app") for _, lbls in ctx.workloads if lbls.get("app")), ctx.name)
        out.append(
            {
                "apiVersion": SECURITY,
                "kind": "PeerAuthentication",
                "metadata": {"namespace": ctx.namespace, "name": ctx.name, "labels": dict(labels)},
                "spec": {"selector": {"matchLabels": {"app": app}}, "mtls": {"mode": pa_mode}},
            }
        )
    return out


def _existing_name(manifests: Sequence[Mapping[str, Any]], default: str) -> str:
    """Kiali keeps the name of the one VirtualService (DestinationRule) a service has."""
    if len(manifests) == 1:
        return str(_meta(manifests[0]).get("name") or default)
    return default


def gateway_name(ctx: ServiceContext) -> str:
    """Kiali's getGatewayName: `<service>-gateway`, or -1, -2, ... when taken."""
    name = f"{ctx.namespace}/{ctx.name}-gateway"
    n = 0
    while name in ctx.gateways:
        n += 1
        name = f"{ctx.namespace}/{ctx.name}-gateway-{n}"
    return name


def _gateways(
    ctx: ServiceContext, gateway: Mapping[str, Any] | None, out: list[dict[str, Any]], labels: Mapping[str, str]
) -> dict[str, Any]:
    """The VirtualService's `gateways` (none unless asked), creating a new Gateway when asked."""
    if not gateway or not gateway.get("addGateway"):
        return {}
    names: list[str] = []
    if gateway.get("newGateway"):
        full = gateway_name(ctx)
        hosts = [h.strip() for h in str(gateway.get("gwHosts") or "*").split(",") if h.strip()]
        port = int(gateway.get("port") or 80)
        out.append(
            {
                "apiVersion": NETWORKING,
                "kind": "Gateway",
                "metadata": {"namespace": ctx.namespace, "name": full.split("/", 1)[1], "labels": dict(labels)},
                "spec": {
                    "selector": {"istio": "ingressgateway"},
                    "servers": [{"port": {"number": port, "name": "http", "protocol": "HTTP"}, "hosts": hosts}],
                },
            }
        )
        names.append(full)
    elif gateway.get("selectedGateway"):
        names.append(str(gateway["selectedGateway"]))
    if gateway.get("addMesh") and "mesh" not in names:
        names.append("mesh")
    return {"gateways": names} if names else {}
