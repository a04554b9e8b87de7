"""The contract both runtimes (compose, local) implement, and the data `up`/`status` report.

`sandbox up` is the same story whichever runtime runs it: preflight (nothing starts on a
failure), start every component, report each one's progress until it is ready, write the
MeshRecord (project.py), print the URL table. A component that does not become ready stops the
whole mesh and raises ComponentFailed naming it with the tail of its log.

Components are named the same way in both runtimes so `status` and `logs` read alike:
`controlplane`, `prometheus`, `console`, `jaeger`, and per workload replica `<node>` (the app)
and `<node>.proxy` (its sidecar), where node is mesh.names.node_name(); the gateways are the nodes
`istio-ingressgateway` and `istio-egressgateway` (proxies only).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from sandbox.runtime.project import URL_KEYS, MeshRecord, Project

if TYPE_CHECKING:  # kept out of the import path: the local supervisor process imports this module
    from sandbox.mesh.diagnostics import Diagnostic
    from sandbox.mesh.topology import Topology
    from sandbox.runtime.preflight import Inputs

PROXY_SUFFIX = ".proxy"
DEFAULT_READY_TIMEOUT = 60.0


class ComponentKind(StrEnum):
    CONTROL_PLANE = "controlplane"
    APP = "app"
    SIDECAR = "sidecar"
    GATEWAY = "gateway"
    PROMETHEUS = "prometheus"
    TRACING = "tracing"
    CONSOLE = "console"


class Phase(StrEnum):
    """What `up` reports per component while it waits (and `status` per component after)."""

    STARTING = "starting"
    READY = "ready"
    RESTARTING = "restarting"  # exited; the supervisor starts it again after a backoff
    FAILED = "failed"
    STOPPED = "stopped"
    SKIPPED = "skipped"  # optional and unavailable (e.g. Prometheus not installed); detail says why


@dataclass(frozen=True)
class UpOptions:
    detach: bool = False
    timeout: float = DEFAULT_READY_TIMEOUT  # seconds for the whole mesh to become ready
    build: bool = True  # compose: build the image when missing or stale
    # local runtime: the optional components (the pytest fixture leaves them out unless asked: they
    # cost start time), and a process whose end stops the mesh (the fixture's pytest, even killed)
    prometheus: bool = True
    console: bool = True
    owner: int | None = None


@dataclass(frozen=True)
class ProgressEvent:
    component: str
    kind: ComponentKind
    phase: Phase
    detail: str = ""  # e.g. "127.0.0.1:8080", "ready in 0.4 s", why it was skipped
    elapsed: float = 0.0  # seconds since `up` began

    def to_data(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> ProgressEvent:
        return cls(
            str(data["component"]),
            ComponentKind(data["kind"]),
            Phase(data["phase"]),
            str(data.get("detail", "")),
            float(data.get("elapsed", 0.0)),
        )


class Progress(Protocol):
    """Where `up` reports each component's phase changes (the CLI renders them as they come)."""

    def report(self, event: ProgressEvent) -> None: ...

    def warn(self, message: str) -> None: ...


@dataclass
class RecordingProgress:
    """A Progress that keeps everything (tests; and a quiet `up` for the pytest fixture)."""

    events: list[ProgressEvent] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def report(self, event: ProgressEvent) -> None:
        self.events.append(event)

    def warn(self, message: str) -> None:
        self.warnings.append(message)


class RuntimeFailure(Exception):
    """`up`/`down` could not do its job; the message is for the user (no traceback)."""


class PreflightFailed(RuntimeFailure):
    def __init__(self, diagnostics: Sequence[Diagnostic]) -> None:
        self.diagnostics = tuple(diagnostics)
        super().__init__(f"{len(self.diagnostics)} problem(s) found before starting; nothing was started")


class ComponentFailed(RuntimeFailure):
    """A component did not become ready; the runtime has already stopped everything it started."""

    def __init__(self, component: str, reason: str, log_tail: Sequence[str] = (), log_file: str | None = None) -> None:
        self.component = component
        self.reason = reason
        self.log_tail = tuple(log_tail)
        self.log_file = log_file
        super().__init__(f"{component} did not become ready: {reason}")


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    kind: ComponentKind
    phase: Phase
    ready: bool
    detail: str = ""  # address, pid or container, last exit status
    restarts: int = 0


NO_SIDECAR = "NONE"  # the sync state of a workload that runs without a sidecar (x-sandbox.inject: false)


@dataclass(frozen=True)
class ReplicaStatus:
    node: str
    ready: bool  # app accepting and sidecar ready
    sync: str  # SYNCED, STALE, NACK, DISCONNECTED (control/push.SyncState), UNKNOWN, or NONE (no sidecar)
    # host:port where a client outside the mesh (a workload without a sidecar, a test) reaches the
    # replica's inbound listener (its app's, without a sidecar; the gateway's listener); "" unknown
    address: str = ""


@dataclass(frozen=True)
class WorkloadStatus:
    name: str
    app: str
    version: str
    namespace: str
    ready: bool  # every replica ready
    sync: str  # the worst replica's sync state
    replicas: tuple[ReplicaStatus, ...] = ()
    address: str = ""  # the first replica's (each replica has its own)


@dataclass(frozen=True)
class StatusReport:
    runtime: str
    project: str
    running: bool
    urls: dict[str, str | None]
    components: tuple[ComponentStatus, ...] = ()
    workloads: tuple[WorkloadStatus, ...] = ()
    control_plane: str | None = None

    def to_data(self) -> dict[str, Any]:
        """The `status --output json` document (keys `runtime`, `urls`, `workloads` are a contract)."""
        data = asdict(self)
        data["urls"] = {key: self.urls.get(key) for key in URL_KEYS}
        return data

    @classmethod
    def not_running(cls, project: Project, runtime: str = "none") -> StatusReport:
        return cls(runtime, project.name, False, dict.fromkeys(URL_KEYS))


SYNC_ORDER = ("NACK", "DISCONNECTED", "UNKNOWN", "STALE", "SYNCED")  # worst first


def worst_sync(states: Sequence[str]) -> str:
    ranked = [s if s in SYNC_ORDER else "UNKNOWN" for s in states]
    return min(ranked, key=SYNC_ORDER.index) if ranked else "UNKNOWN"


def workload_statuses(
    topology: Topology, ready: Mapping[str, bool], sync: Mapping[str, str], addresses: Mapping[str, str] | None = None
) -> tuple[WorkloadStatus, ...]:
    """Per workload (the ingress gateway and workloads without a sidecar included), its replicas'
    readiness, sync and address, by node name."""
    from sandbox.mesh.names import node_name

    addresses = addresses or {}
    result = []
    for w in topology.workloads:
        nodes = [node_name(w.name, i, w.replicas) for i in range(w.replicas)]
        replicas = tuple(
            ReplicaStatus(
                n, ready.get(n, False), sync.get(n, "UNKNOWN") if w.inject else NO_SIDECAR, addresses.get(n, "")
            )
            for n in nodes
        )
        all_ready = all(r.ready for r in replicas)
        worst = worst_sync([r.sync for r in replicas]) if w.inject else NO_SIDECAR
        first = replicas[0].address if replicas else ""
        result.append(WorkloadStatus(w.name, w.app, w.version, w.namespace, all_ready, worst, replicas, first))
    return tuple(result)


class Runtime(Protocol):
    """What `sandbox up/down/status/logs` call; LocalRuntime and ComposeRuntime implement it."""

    name: str  # "local" or "compose"

    def preflight(self, project: Project, inputs: Inputs) -> list[Diagnostic]:
        """Runtime-specific problems found before anything starts (host ports taken, no engine...),
        as errors naming file and field. The checks of the inputs themselves (preflight.check) run
        first; `up` starts nothing when either finds an error."""
        ...

    def up(self, project: Project, topology: Topology, options: UpOptions, progress: Progress) -> MeshRecord:
        """Start everything, report progress, return (and write) the record once all is ready.
        Raises ComponentFailed after stopping what it started, RuntimeFailure otherwise."""
        ...

    def is_running(self, project: Project, record: MeshRecord) -> bool:
        """Whether the mesh of this record is still up (the foreground `up` stops when it is not)."""
        ...

    def down(self, project: Project, record: MeshRecord | None, volumes: bool = False) -> list[str]:
        """Stop and remove everything of this project (also leftovers of a failed `up` with no
        record); return what was stopped, one line each. Idempotent."""
        ...

    def status(self, project: Project, record: MeshRecord) -> StatusReport: ...

    def logs(
        self,
        project: Project,
        record: MeshRecord,
        workload: str | None = None,
        proxy: bool = False,
        follow: bool = False,
        tail: int | None = None,
    ) -> Iterator[str]:
        """Log lines (no trailing newline). workload=None: every component, each line prefixed
        `<component> | `; proxy=True: the workload's sidecar(s) instead of its app. Raises
        RuntimeFailure for an unknown workload (the message lists the known ones)."""
        ...
