"""The Compose file -> mesh services and workloads (a service labelled app/version is a workload).

What Compose cannot say lives under each service's `x-sandbox` key (and mesh-wide settings under
the top-level `x-sandbox`); both are decoded with the same typed schema as Istio resources, so a
typo there gets the same "did you mean" diagnostic with file and line.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from sandbox.mesh.diagnostics import Diagnostic, Severity, join_path
from sandbox.mesh.extensions import ExtensionProvider
from sandbox.mesh.names import DEFAULT_TRUST_DOMAIN, labels_match, service_fqdn
from sandbox.mesh.resources.common import model
from sandbox.mesh.resources.meta import Origin
from sandbox.mesh.schema import Decoder
from sandbox.mesh.yamlsrc import Document, parse_documents

INGRESS_NAMESPACE = "istio-system"  # where Istio's gateways run (both built-in gateways here)
INGRESS_GATEWAY = "istio-ingressgateway"
INGRESS_LABELS = {"istio": "ingressgateway", "app": "istio-ingressgateway"}
EGRESS_GATEWAY = "istio-egressgateway"
EGRESS_LABELS = {"istio": "egressgateway", "app": "istio-egressgateway"}
DEFAULT_INGRESS_PORT = 8080
MAX_PORT = 65535


class Interception(StrEnum):
    PROXY = "proxy"  # HTTP_PROXY in the app's environment (always works)
    IPTABLES = "iptables"  # transparent capture, as istio-init does


class OutboundMode(StrEnum):
    ALLOW_ANY = "ALLOW_ANY"
    REGISTRY_ONLY = "REGISTRY_ONLY"


@model
class LocalSpec:
    command: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None


@model
class ServicePort:
    """One port of the service as a Kubernetes Service declares it (`sandbox export/import kubernetes`
    keep them); the name carries Istio's protocol prefix (`http`, `grpc-web`, `tcp-db`)."""

    name: str
    port: int
    target_port: int | None = None  # the container's port; default: `port`

    @property
    def http(self) -> bool:
        """Istio's protocol selection by port name: `http`, `http2`, `grpc`, `grpc-web` (+ `-suffix`)."""
        return self.name.lower().split("-")[0] in ("http", "http2", "grpc")


@model
class WorkloadSettings:
    """A service's `x-sandbox` key."""

    port: int | None = None
    ports: tuple[ServicePort, ...] = ()
    namespace: str | None = None
    service_account: str | None = None
    replicas: int | None = None
    inject: bool | None = None
    local: LocalSpec | None = None
    interception: Interception | None = None


@model
class IngressSettings:
    port: int | None = None


@model
class OutboundTrafficPolicySettings:
    mode: OutboundMode | None = None


@model
class SecretFiles:
    """A TLS secret as files (the keys of Istio's generic secret: cert, key, cacert)."""

    cert: str | None = None
    key: str | None = None
    cacert: str | None = None


@model
class MeshSettings:
    """The top-level `x-sandbox` key."""

    ingress: IngressSettings | None = None
    trust_domain: str | None = None
    outbound_traffic_policy: OutboundTrafficPolicySettings | None = None
    # Kubernetes secrets by name (a Gateway's or DestinationRule's credentialName): a directory with
    # tls.crt, tls.key and ca.crt (or cert, key, cacert), or the files named one by one (mesh.secrets)
    secrets: dict[str, str | SecretFiles] = field(default_factory=dict)
    extension_providers: tuple[ExtensionProvider, ...] = ()  # meshConfig's (mesh/extensions.py)

    @property
    def ingress_port(self) -> int:
        return (self.ingress.port if self.ingress else None) or DEFAULT_INGRESS_PORT

    @property
    def trust_domain_or_default(self) -> str:
        return self.trust_domain or DEFAULT_TRUST_DOMAIN

    @property
    def outbound_mode(self) -> OutboundMode:
        policy = self.outbound_traffic_policy
        return (policy.mode if policy else None) or OutboundMode.ALLOW_ANY


@dataclass(frozen=True)
class Workload:
    name: str  # the Compose service name, e.g. reviews-v2
    app: str
    version: str
    namespace: str
    service_account: str
    labels: dict[str, str]
    port: int | None
    replicas: int = 1
    inject: bool = True
    interception: Interception = Interception.PROXY
    image: str | None = None
    local: LocalSpec | None = None
    builtin: bool = False  # a gateway sandbox adds itself (istio-ingressgateway, istio-egressgateway)
    ports: tuple[ServicePort, ...] = ()  # x-sandbox.ports: the service's ports in a cluster
    origin: Origin = field(default_factory=lambda: Origin("<builtin>"), compare=False)

    @property
    def fqdn(self) -> str:
        return service_fqdn(self.app, self.namespace)

    def target_port(self, port: int) -> int:
        """The port this workload serves service port `port` on (its Service's targetPort)."""
        return next((p.target_port or p.port for p in self.ports if p.port == port), port)

    def matches(self, selector: dict[str, str]) -> bool:
        return bool(selector) and labels_match(selector, self.labels)


@dataclass(frozen=True)
class Service:
    name: str
    namespace: str
    port: int | None
    workloads: tuple[str, ...]
    ports: tuple[ServicePort, ...] = ()

    @property
    def fqdn(self) -> str:
        return service_fqdn(self.name, self.namespace)


@dataclass(frozen=True)
class Topology:
    file: str
    workloads: tuple[Workload, ...]
    services: tuple[Service, ...]
    settings: MeshSettings = field(default_factory=MeshSettings)
    plain_services: tuple[str, ...] = ()  # Compose services outside the mesh (no app/version labels)
    diagnostics: tuple[Diagnostic, ...] = ()

    @property
    def namespaces(self) -> frozenset[str]:
        return frozenset(w.namespace for w in self.workloads) | {INGRESS_NAMESPACE}

    def service(self, fqdn: str) -> Service | None:
        return next((s for s in self.services if s.fqdn == fqdn), None)

    def workload(self, name: str) -> Workload | None:
        return next((w for w in self.workloads if w.name == name), None)

    @property
    def ingress(self) -> Workload:
        found = self.workload(INGRESS_GATEWAY)
        return found if found is not None and found.builtin else ingress_gateway(self.settings)

    @property
    def gateway_services(self) -> tuple[Service, ...]:
        """The Services of built-in gateways that proxies route to (istio-egressgateway's ports 80
        and 443). The ingress gateway declares none: the sandbox reaches it from outside only."""
        return tuple(
            Service(w.app, w.namespace, None, (w.name,), w.ports) for w in self.workloads if w.builtin and w.ports
        )


def empty_topology() -> Topology:
    return Topology("<none>", (ingress_gateway(MeshSettings()), egress_gateway()), ())


def ingress_gateway(settings: MeshSettings) -> Workload:
    return Workload(
        INGRESS_GATEWAY,
        INGRESS_GATEWAY,
        "",
        INGRESS_NAMESPACE,
        "istio-ingressgateway-service-account",
        dict(INGRESS_LABELS),
        settings.ingress_port,
        builtin=True,
    )


# istio-egressgateway's Service in Istio's demo profile: port 80 -> targetPort 8080, 443 -> 8443
EGRESS_PORTS = (
    ServicePort(name="http2", port=80, target_port=8080),
    ServicePort(name="https", port=443, target_port=8443),
)


def egress_gateway() -> Workload:
    """Istio's egress gateway (demo profile): a router like the ingress gateway, whose Service the
    sidecars route to (a VirtualService sends external hosts through it). It always runs, as in the
    demo profile, so Istio's egress tasks work without a restart."""
    return Workload(
        EGRESS_GATEWAY,
        EGRESS_GATEWAY,
        "",
        INGRESS_NAMESPACE,
        "istio-egressgateway-service-account",
        dict(EGRESS_LABELS),
        None,
        builtin=True,
        ports=EGRESS_PORTS,
    )


def load_compose(path: str | Path) -> Topology:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        problem = Diagnostic("SBX300", Severity.ERROR, f"cannot read compose file: {exc.strerror}", str(path))
        return Topology(str(path), (), (), diagnostics=(problem,))
    return parse_compose(data, str(path))


def parse_compose(source: str | bytes, file: str) -> Topology:
    documents, diagnostics = parse_documents(source, file)
    if not documents or not isinstance(documents[0].data, dict):
        if not diagnostics:
            diagnostics.append(
                Diagnostic("SBX300", Severity.ERROR, "a compose file must be a map with 'services'", file, 1, 1)
            )
        return Topology(file, (), (), diagnostics=tuple(diagnostics))
    document = documents[0]
    decoder = Decoder(file, document.position)
    settings = decoder.decode_object(MeshSettings, document.data.get("x-sandbox"), "x-sandbox") or MeshSettings()
    settings = _checked_ingress(settings, decoder)
    services = document.data.get("services")
    if not isinstance(services, dict):
        decoder.error("SBX300", "the compose file has no 'services' map", "services")
        services = {}
    workloads: list[Workload] = []
    plain: list[str] = []
    positions = _positions_by_service(document, (str(name) for name in services))
    for name, spec in services.items():
        workload = _workload(str(name), spec, document, decoder, positions[str(name)])
        if workload is None:
            plain.append(str(name))
        else:
            workloads.append(workload)
    workloads += (ingress_gateway(settings), egress_gateway())
    mesh_services = _group_services(workloads, document, decoder)
    return Topology(file, tuple(workloads), mesh_services, settings, tuple(plain), (*diagnostics, *decoder.diagnostics))


def _labels(raw: Any) -> dict[str, str]:
    if isinstance(raw, dict):
        return {str(k): "" if v is None else str(v) for k, v in raw.items()}
    if isinstance(raw, list):  # ["app=reviews", "version=v1"]
        pairs = (str(item).partition("=") for item in raw)
        return {k: v for k, _, v in pairs}
    return {}


def _valid_port(port: int | None, decoder: Decoder, path: str, name: str) -> int | None:
    """`port` when it is a TCP port (1-65535), else None after an SBX306 error at `path`."""
    if port is None or 1 <= port <= MAX_PORT:
        return port
    decoder.error("SBX306", f"{name} must be between 1 and {MAX_PORT}, got {port}", path)
    return None


def _checked_ingress(settings: MeshSettings, decoder: Decoder) -> MeshSettings:
    """An ingress port out of range is reported, and the default port used instead."""
    ingress = settings.ingress
    if ingress is None or _valid_port(ingress.port, decoder, "x-sandbox/ingress/port", "x-sandbox.ingress.port"):
        return settings
    return replace(settings, ingress=replace(ingress, port=None))


def _port_from_compose(spec: dict[str, Any]) -> int | None:
    for key in ("expose", "ports"):
        entries = spec.get(key)
        if isinstance(entries, list) and entries:
            first = entries[0]
            if isinstance(first, dict):
                first = first.get("target")
            text = str(first).split("/")[0].rsplit(":", 1)[-1]
            if text.isdigit():
                return int(text)
    return None


def _positions_by_service(document: Document, names: Iterable[str]) -> dict[str, dict[str, tuple[int, int]]]:
    """Each service's positions relative to it, in one pass (a scan per service was quadratic)."""
    out: dict[str, dict[str, tuple[int, int]]] = {name: {} for name in names}
    slashed = [name for name in out if "/" in name]  # not a valid Compose name, but keep it right
    for key, position in document.positions.items():
        if key.startswith("services/"):
            name, sep, rest = key[len("services/") :].partition("/")
            if sep and name in out and "/" not in name:
                out[name][rest] = position
    for name in slashed:
        prefix = f"services/{name}/"
        out[name] = {k[len(prefix) :]: v for k, v in document.positions.items() if k.startswith(prefix)}
    return out


def _workload(
    name: str, spec: Any, document: Document, decoder: Decoder, positions: dict[str, tuple[int, int]]
) -> Workload | None:
    path = join_path("services", name)
    if not isinstance(spec, dict):
        return None
    labels = _labels(spec.get("labels"))
    settings = decoder.decode_object(WorkloadSettings, spec.get("x-sandbox"), join_path(path, "x-sandbox"))
    if "app" not in labels and "version" not in labels:
        return None
    present = [key for key in ("app", "version") if labels.get(key)]
    if len(present) < 2:
        missing = "version" if present == ["app"] else "app"
        has = f"label '{present[0]}' but no '{missing}' label" if present else "empty 'app' and 'version' labels"
        decoder.error("SBX301", f"service '{name}' has {has}: a mesh workload needs both", join_path(path, "labels"))
        return None
    settings = settings or WorkloadSettings()
    port = _valid_port(settings.port, decoder, join_path(path, "x-sandbox/port"), "x-sandbox.port")
    ports = _service_ports(settings, decoder, join_path(path, "x-sandbox/ports"))
    if settings.port is None:
        port = ports[0].port if ports else _port_from_compose(spec)
    elif ports and port is not None and all(p.port != port for p in ports):
        decoder.error(
            "SBX307",
            f"x-sandbox.port {port} is not one of x-sandbox.ports ({', '.join(str(p.port) for p in ports)})",
            join_path(path, "x-sandbox/port"),
        )
    if port is None and settings.port is None:  # a bad x-sandbox.port already has its error
        decoder.report(
            "SBX302",
            Severity.WARNING,
            f"workload '{name}' has no port (set x-sandbox.port): nothing can reach it through the mesh",
            path,
        )
    replicas = settings.replicas if settings.replicas is not None else 1
    if replicas < 0:
        decoder.error("SBX303", f"replicas must be 0 or more, got {replicas}", join_path(path, "x-sandbox/replicas"))
        replicas = 1
    namespace = settings.namespace or "default"
    origin = Origin(document.file, document.position(path)[0], 0, positions)
    image = spec.get("image")
    return Workload(
        name,
        labels["app"],
        labels["version"],
        namespace,
        settings.service_account or labels["app"],
        labels,
        port,
        replicas,
        settings.inject if settings.inject is not None else True,
        settings.interception or Interception.PROXY,
        image if isinstance(image, str) else None,
        settings.local,
        ports=ports,
        origin=origin,
    )


def _service_ports(settings: WorkloadSettings, decoder: Decoder, path: str) -> tuple[ServicePort, ...]:
    """The x-sandbox.ports whose numbers are TCP ports (each bad one gets an SBX306 error)."""
    kept = []
    for i, entry in enumerate(settings.ports):
        here = join_path(path, i)
        if any(d.path.startswith(here + "/") or d.path == here for d in decoder.diagnostics):
            continue  # already reported (a missing or mistyped field)
        port = _valid_port(entry.port, decoder, join_path(here, "port"), "a port")
        target = _valid_port(entry.target_port, decoder, join_path(here, "targetPort"), "a targetPort")
        if port is not None and (entry.target_port is None or target is not None):
            kept.append(entry)
    return tuple(kept)


def _group_services(workloads: Iterable[Workload], document: Document, decoder: Decoder) -> tuple[Service, ...]:
    by_service: dict[tuple[str, str], list[Workload]] = {}
    for w in workloads:
        if not w.builtin:
            by_service.setdefault((w.app, w.namespace), []).append(w)
    services = []
    for (app, namespace), members in sorted(by_service.items()):
        ports = sorted({w.port for w in members if w.port is not None})
        if len(ports) > 1:
            decoder.error(
                "SBX304",
                f"workloads of service '{app}' disagree on the port ({', '.join(map(str, ports))}): "
                "one mesh service has one port",
                join_path("services", members[-1].name),
            )
        declared = list(dict.fromkeys(w.ports for w in members if w.ports))  # in file order
        if len(declared) > 1:
            decoder.error(
                "SBX304",
                f"workloads of service '{app}' disagree on x-sandbox.ports: one mesh service has one set of ports",
                join_path("services", members[-1].name),
            )
        seen: dict[str, str] = {}
        for w in members:
            if w.version in seen:
                decoder.report(
                    "SBX305",
                    Severity.WARNING,
                    f"workloads '{seen[w.version]}' and '{w.name}' are both "
                    f"{app} {w.version}: use x-sandbox.replicas for copies of one version",
                    join_path("services", w.name),
                )
            seen.setdefault(w.version, w.name)
        named = declared[0] if declared else ()
        services.append(Service(app, namespace, ports[0] if ports else None, tuple(w.name for w in members), named))
    return tuple(services)
