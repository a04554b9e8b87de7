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
from sandbox.mesh.names import DEFAULT_TRUST_DOMAIN, labels_match, service_fqdn
from sandbox.mesh.resources.common import model
from sandbox.mesh.resources.meta import Origin
from sandbox.mesh.schema import Decoder
from sandbox.mesh.yamlsrc import Document, parse_documents

INGRESS_NAMESPACE = "istio-system"
INGRESS_LABELS = {"istio": "ingressgateway", "app": "istio-ingressgateway"}
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
class WorkloadSettings:
    """A service's `x-sandbox` key."""

    port: int | None = None
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
class MeshSettings:
    """The top-level `x-sandbox` key."""

    ingress: IngressSettings | None = None
    trust_domain: str | None = None
    outbound_traffic_policy: OutboundTrafficPolicySettings | None = None

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
    builtin: bool = False  # the ingress gateway sandbox adds itself
    origin: Origin = field(default_factory=lambda: Origin("<builtin>"), compare=False)

    @property
    def fqdn(self) -> str:
        return service_fqdn(self.app, self.namespace)

    def matches(self, selector: dict[str, str]) -> bool:
        return bool(selector) and labels_match(selector, self.labels)


@dataclass(frozen=True)
class Service:
    name: str
    namespace: str
    port: int | None
    workloads: tuple[str, ...]

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


def empty_topology() -> Topology:
    return Topology("<none>", (ingress_gateway(MeshSettings()),), ())


def ingress_gateway(settings: MeshSettings) -> Workload:
    return Workload(
        "istio-ingressgateway",
        "istio-ingressgateway",
        "",
        INGRESS_NAMESPACE,
        "istio-ingressgateway-service-account",
        dict(INGRESS_LABELS),
        settings.ingress_port,
        builtin=True,
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
    workloads.append(ingress_gateway(settings))
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
    if settings.port is None:
        port = _port_from_compose(spec)
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
        origin=origin,
    )


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
        services.append(Service(app, namespace, ports[0] if ports else None, tuple(w.name for w in members)))
    return tuple(services)
