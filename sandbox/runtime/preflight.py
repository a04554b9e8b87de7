"""What `sandbox up` checks before it starts anything; each problem names the file and field.

Pure functions over the parsed inputs (the host-port probe is passed in), shared by both
runtimes. Codes (SBX5xx, runtime):
  SBX501  config routes to a Compose service that has no app/version labels (not in the mesh)
  SBX502  two services claim one host port (published `ports:` or the ingress port)
  SBX503  unknown runtime
  SBX504  a host port the mesh needs is already taken (with who holds it, when known)
  SBX505  the local runtime cannot start a workload (no x-sandbox.local.command)
  SBX506  the compose runtime has no Docker engine or Compose to run with (runtime/compose.py)
Errors from the topology (SBX3xx), the loader and the analyzer stop `up` as well; warnings do
not (they are printed).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandbox.mesh.diagnostics import Diagnostic, Severity, join_path
from sandbox.mesh.names import split_fqdn
from sandbox.mesh.state import MeshState
from sandbox.mesh.topology import Topology
from sandbox.mesh.yamlsrc import Document, parse_documents

RUNTIMES = ("auto", "compose", "local")

PortProbe = Callable[[int], "str | None"]  # None: free; else who holds it (hostports.who_holds)


@dataclass(frozen=True)
class PortClaim:
    port: int
    owner: str  # the Compose service, or "istio-ingressgateway"
    file: str
    line: int
    column: int
    path: str  # e.g. services/web/ports[0], x-sandbox/ingress/port


def error(code: str, message: str, file: str, position: tuple[int, int] = (0, 0), path: str = "") -> Diagnostic:
    return Diagnostic(code, Severity.ERROR, message, file, position[0], position[1], path)


def check_runtime(name: str) -> list[Diagnostic]:
    if name in RUNTIMES:
        return []
    choices = ", ".join(RUNTIMES)
    return [error("SBX503", f"unknown runtime '{name}': use one of {choices}", "<command line>", path="--runtime")]


def input_errors(found: Iterable[Diagnostic]) -> list[Diagnostic]:
    """The errors among the topology's, the loader's and the analyzer's findings."""
    return sorted((d for d in found if d.severity is Severity.ERROR), key=lambda d: d.sort_key())


def unlabeled_references(state: MeshState) -> list[Diagnostic]:
    """SBX501: a VirtualService or DestinationRule host that is a Compose service outside the
    mesh. Without app/version labels it has no workloads, so traffic routed there finds nothing."""
    from sandbox.mesh.analysis.index import route_destinations

    plain = set(state.topology.plain_services)
    if not plain:
        return []
    found = []
    refs: list[tuple[Any, str, str]] = []
    for vs in state.virtual_services:
        refs += [(vs, f"{path}/destination/host", dest.host) for path, dest in route_destinations(vs.spec)]
    refs += [(dr, "spec/host", dr.spec.host) for dr in state.destination_rules]
    for resource, path, host in refs:
        fqdn = state.resolve(host, resource.namespace) if host else ""
        name = (split_fqdn(fqdn) or ("", ""))[0]
        if name in plain and fqdn not in state.service_hosts:
            line, column = resource.origin.position(path)
            found.append(
                Diagnostic(
                    "SBX501",
                    Severity.ERROR,
                    f"'{host}' is the Compose service '{name}' ({state.topology.file}), which has no app/version "
                    f"labels, so it is not in the mesh: add labels app: {name} and version: v1 to it",
                    resource.origin.file,
                    line,
                    column,
                    path,
                    f"{resource.kind}/{resource.namespace}/{resource.name}",
                )
            )
    return found


def port_claims(document: Document | None, topology: Topology) -> list[PortClaim]:
    """The host ports the Compose file claims: every published TCP port, and the ingress port."""
    file = topology.file
    claims = []
    services = document.data.get("services") if document and isinstance(document.data, dict) else None
    for name, spec in (services or {}).items():
        ports = spec.get("ports") if isinstance(spec, dict) else None
        for i, entry in enumerate(ports if isinstance(ports, list) else ()):
            path = join_path(join_path(join_path("services", str(name)), "ports"), i)
            line, column = document.position(path) if document else (0, 0)
            claims += [PortClaim(port, str(name), file, line, column, path) for port in published_ports(entry)]
    ingress = "x-sandbox/ingress/port"
    has_setting = document is not None and ingress in document.positions
    line, column = document.position(ingress) if document and has_setting else (0, 0)
    port = topology.settings.ingress_port
    claims.append(PortClaim(port, "istio-ingressgateway", file, line, column, ingress if has_setting else ""))
    return claims


def published_ports(entry: Any) -> list[int]:
    """Host ports of one `ports:` entry: "8080:80", "127.0.0.1:8080:80", "8000-8001:80-81",
    {published: 8080, target: 80}; a bare "80" publishes on a random port (no claim)."""
    if isinstance(entry, dict):
        if str(entry.get("protocol", "tcp")).lower() != "tcp":
            return []
        published = entry.get("published")
        return _port_range(str(published)) if published is not None else []
    text, _, protocol = str(entry).partition("/")
    if protocol and protocol.lower() != "tcp":
        return []
    parts = text.rsplit(":", 2)
    if len(parts) < 2 or not parts[-2]:
        return []
    return _port_range(parts[-2])


def _port_range(text: str) -> list[int]:
    low, _, high = text.strip().partition("-")
    if not low.isdigit() or (high and not high.isdigit()):
        return []
    first, last = int(low), int(high or low)
    return list(range(first, min(last, first + 1024) + 1))


def duplicate_ports(claims: Sequence[PortClaim]) -> list[Diagnostic]:
    """SBX502: one host port claimed by two services (or twice by one)."""
    first: dict[int, PortClaim] = {}
    found = []
    for claim in claims:
        earlier = first.setdefault(claim.port, claim)
        if earlier is claim:
            continue
        where = f"{earlier.file}:{earlier.line}" if earlier.line else earlier.file
        found.append(
            error(
                "SBX502",
                f"host port {claim.port} is claimed by '{claim.owner}' and by '{earlier.owner}' ({where}): "
                "one host port can be published once",
                claim.file,
                (claim.line, claim.column),
                claim.path,
            )
        )
    return found


def taken_ports(claims: Sequence[PortClaim], probe: PortProbe) -> list[Diagnostic]:
    """SBX504: a claimed host port something else already listens on."""
    found = []
    for claim in {c.port: c for c in reversed(claims)}.values():
        holder = probe(claim.port)
        if holder is None:
            continue
        hint = " (set x-sandbox.ingress.port to use another)" if claim.owner == "istio-ingressgateway" else ""
        found.append(
            error(
                "SBX504",
                f"host port {claim.port} for '{claim.owner}' is already taken: {holder}{hint}",
                claim.file,
                (claim.line, claim.column),
                claim.path,
            )
        )
    return found


def local_commands(topology: Topology) -> list[Diagnostic]:
    """SBX505: the local runtime runs each workload's x-sandbox.local.command; one without it
    cannot start (the compose runtime uses the image instead)."""
    found = []
    for w in topology.workloads:
        if w.builtin or w.replicas == 0 or (w.local and w.local.command):
            continue
        found.append(
            error(
                "SBX505",
                f"workload '{w.name}' has no x-sandbox.local.command, so the local runtime cannot start it "
                "(add one, or use --runtime compose)",
                w.origin.file,
                w.origin.position(f"services/{w.name}"),
                f"services/{w.name}/x-sandbox/local/command",
            )
        )
    return found


def load_document(compose_file: Path) -> Document | None:
    """The compose file's first YAML document (for positions); None when unreadable."""
    try:
        documents, _ = parse_documents(compose_file.read_bytes(), str(compose_file))
    except OSError:
        return None
    return documents[0] if documents else None


@dataclass(frozen=True)
class Inputs:
    """Everything `up` reads, parsed once."""

    topology: Topology
    state: MeshState
    document: Document | None
    diagnostics: tuple[Diagnostic, ...]  # every finding (errors and warnings) of topology, loader, analyzer

    @property
    def claims(self) -> list[PortClaim]:
        return port_claims(self.document, self.topology)

    @property
    def ingress_claim(self) -> PortClaim:
        return next(c for c in self.claims if c.owner == "istio-ingressgateway")


def read_inputs(compose_file: Path, istio_dir: Path) -> Inputs:
    from sandbox.mesh.analysis import analyze
    from sandbox.mesh.loader import load_paths
    from sandbox.mesh.topology import load_compose

    topology = load_compose(compose_file)
    loaded = load_paths([istio_dir]) if istio_dir.is_dir() else None
    state = MeshState(loaded.resources if loaded else (), topology)
    analysis = analyze(state) if loaded else []
    found = [*topology.diagnostics, *(loaded.diagnostics if loaded else ()), *analysis]
    if not istio_dir.is_dir():
        found.append(
            error(
                "SBX500",
                f"no Istio directory {istio_dir}: create it (it may stay empty) or pass --istio DIR",
                str(istio_dir),
            )
        )
    return Inputs(topology, state, load_document(compose_file), tuple(sorted(found, key=lambda d: d.sort_key())))


def check(inputs: Inputs, runtime: str) -> list[Diagnostic]:
    """Every error in the inputs that stops `up` before it starts anything. Each runtime adds its
    own checks (Runtime.preflight: host ports taken, a missing engine or command)."""
    return [
        *check_runtime(runtime),
        *input_errors(inputs.diagnostics),
        *unlabeled_references(inputs.state),
        *duplicate_ports(inputs.claims),
    ]


def warnings(inputs: Inputs) -> list[Diagnostic]:
    return [d for d in inputs.diagnostics if d.severity is Severity.WARNING]
