"""The local runtime: the mesh as host processes on loopback, supervised by a detached process.

`up` plans every process (localplan.py), writes the plan under `.sandbox/local/`, starts the
supervisor (localdaemon.py) in its own session and relays its progress until the mesh is ready;
the supervisor then writes the MeshRecord (its pid in `extra.supervisor_pid`) and keeps running,
so `up --detach` can return and `down` from another shell stops it. `down` signals the
supervisor, waits, and then makes sure no process it ever started is left (by recorded pid).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from sandbox.mesh.diagnostics import Diagnostic
from sandbox.mesh.names import node_name
from sandbox.mesh.topology import Topology, load_compose
from sandbox.runtime import consoletoken, logfiles, probes
from sandbox.runtime.base import (
    PROXY_SUFFIX,
    ComponentFailed,
    ComponentKind,
    ComponentStatus,
    Phase,
    Progress,
    ProgressEvent,
    RuntimeFailure,
    StatusReport,
    UpOptions,
    workload_statuses,
)
from sandbox.runtime.hostports import port_free
from sandbox.runtime.localdaemon import PID_FILE, PLAN_FILE, PROCESSES_FILE, process_identity
from sandbox.runtime.localplan import LocalPlan, Paths, Tools, build
from sandbox.runtime.pgroup import signal_group
from sandbox.runtime.ports import PortAllocator
from sandbox.runtime.preflight import Inputs, local_commands, taken_ports
from sandbox.runtime.project import MeshRecord, Project, read_record, remove_record, write_atomic
from sandbox.runtime.supervisor import Probe
from sandbox.runtime.supervisorserver import SupervisorServer

RUN_DIR = "local"
JAEGER_QUERY = "http://127.0.0.1:16686"
JAEGER_ZIPKIN = "http://127.0.0.1:9411/api/v2/spans"
STOP_TIMEOUT = 15.0
CONSOLE_PORT = 20001  # Kiali's: the console's address stays the same from one `up` to the next when it is free


def run_dir(project: Project) -> Path:
    return project.state_dir / RUN_DIR


class LocalRuntime:
    name = "local"

    def __init__(self, python: str = sys.executable, server: SupervisorServer | None = None) -> None:
        self.python = python
        self.server = server  # forks preloaded supervisors (the pytest fixture's); None: spawn one per up
        self._daemon: subprocess.Popen[bytes] | None = None
        self._warm: subprocess.Popen[bytes] | None = None

    def warm_up(self, project: Project) -> None:
        """Start the supervisor now, so it imports what it forks while `up` runs its preflight;
        it waits for the plan on stdin and ends on its own if `up` goes away first."""
        if self.server is not None or self._warm is not None:
            return
        record = read_record(project)
        if record is not None and self.is_running(project, record):
            return
        self._clean_logs(project)
        self._warm = self._spawn(project, ["--warm"])

    def cancel_warm_up(self) -> None:
        """The warm supervisor is not needed after all (preflight failed): end it."""
        warm, self._warm = self._warm, None
        if warm is not None:
            if warm.stdin is not None:
                warm.stdin.close()  # EOF: it exits
            try:
                warm.wait(5)
            except subprocess.TimeoutExpired:
                warm.kill()
                warm.wait()

    def _clean_logs(self, project: Project) -> None:
        project.logs_dir.mkdir(parents=True, exist_ok=True)
        for old in [*project.logs_dir.glob("*.log"), *project.logs_dir.glob("*.log.1")]:
            old.unlink()

    def _spawn(self, project: Project, args: list[str]) -> subprocess.Popen[bytes]:
        with (project.logs_dir / "supervisor.log").open("ab") as log:
            return subprocess.Popen(
                [self.python, "-m", "sandbox", "local-daemon", *args],
                stdin=subprocess.PIPE if args == ["--warm"] else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                start_new_session=True,
                close_fds=True,
            )

    # -- up --------------------------------------------------------------------------------
    def preflight(self, project: Project, inputs: Inputs) -> list[Diagnostic]:
        from sandbox.runtime.hostports import who_holds

        return [*local_commands(inputs.topology), *taken_ports([inputs.ingress_claim], who_holds)]

    def tools(self, options: UpOptions | None = None) -> Tools:
        import importlib.util

        options = options or UpOptions()
        jaeger = probes.check(Probe("http", "127.0.0.1", 16686, "/api/services"), timeout=0.3)
        return Tools(
            python=self.python,
            prometheus=shutil.which("prometheus") if options.prometheus else None,
            console=options.console and importlib.util.find_spec("sandbox.commands.console") is not None,
            zipkin=JAEGER_ZIPKIN if jaeger else None,
            jaeger_ui=JAEGER_QUERY if jaeger else None,
            left_out=tuple(name for name in ("prometheus", "console") if not getattr(options, name)),
            console_port=CONSOLE_PORT if options.console and port_free(CONSOLE_PORT) else None,
        )

    def plan(self, project: Project, topology: Topology, tools: Tools | None = None) -> LocalPlan:
        from sandbox.control.tokens import TokenAuthority
        from sandbox.xds.identity import ProxyIdentity

        authority = TokenAuthority.load_or_create(project.ca_dir)
        tools = tools or self.tools()
        if tools.console and tools.console_token is None:
            tools = replace(tools, console_token=consoletoken.ensure(project))
        paths = Paths(project.compose_file, project.istio_dir, project.ca_dir, project.logs_dir, run_dir(project))
        with PortAllocator(avoid={topology.settings.ingress_port, CONSOLE_PORT}) as allocate:
            return build(
                topology,
                paths,
                tools,
                os.environ,
                allocate,
                lambda w: authority.issue(ProxyIdentity(w.name, w.namespace, w.service_account)),
            )

    def up(self, project: Project, topology: Topology, options: UpOptions, progress: Progress) -> MeshRecord:
        record = read_record(project)
        if record is not None and self.is_running(project, record):
            raise RuntimeFailure(
                f"a mesh is already running for {project.compose_file} ({record.runtime} runtime); "
                "run `sandbox down` first"
            )
        self.down(project, record)  # leftovers of a crashed run, if any
        plan = self.plan(project, topology, self.tools(options))
        for warning in plan.warnings:
            progress.warn(warning)
        directory = run_dir(project)
        directory.mkdir(parents=True, exist_ok=True)
        if self._warm is None:
            self._clean_logs(project)
        for path, text in plan.files.items():
            write_atomic(Path(path), text)
        record = MeshRecord(
            "local",
            project.name,
            str(project.compose_file),
            str(project.istio_dir),
            plan.control_plane,
            plan.urls,
            tuple(plan.proxies),
        )
        document = {
            "specs": [s.to_data() for s in plan.specs],
            "record": json.loads(record.to_json()),
            "record_file": str(project.record_file),
            "timeout": options.timeout,
        }
        if options.owner is not None:
            document["owner"] = {"pid": options.owner, "identity": process_identity(options.owner)}
        write_atomic(directory / PLAN_FILE, json.dumps(document, indent=1) + "\n")
        return self._start(project, directory, progress, options.timeout)

    def _start(self, project: Project, directory: Path, progress: Progress, timeout: float) -> MeshRecord:
        daemon = None
        if self.server is not None:
            stream = self.server.start(directory, project.logs_dir / "supervisor.log")
        else:
            if self._warm is not None and self._warm.poll() is None and self._warm.stdin is not None:
                daemon, self._warm = self._warm, None
                assert daemon.stdin is not None
                daemon.stdin.write(f"{directory}\n".encode())
                daemon.stdin.close()
            else:
                daemon = self._spawn(project, [str(directory)])
            self._daemon = daemon
            assert daemon.stdout is not None
            stream = daemon.stdout
        failure = self._relay(stream, progress)
        stream.close()
        if failure is None:
            record = read_record(project)
            if record is not None:
                return record
            failure = RuntimeFailure("the supervisor reported ready but wrote no mesh record")
        if daemon is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                daemon.wait(STOP_TIMEOUT + 5)
        else:
            self._wait_gone(project)
        self.down(project, None)
        if isinstance(failure, str):
            log_file = project.logs_dir / "supervisor.log"
            failure = ComponentFailed("supervisor", failure, logfiles.tail(log_file, 20), str(log_file))
        raise failure

    def _relay(self, stream: IO[bytes], progress: Progress) -> RuntimeFailure | str | None:
        """Pass the supervisor's events on until it says ready (None) or failed."""
        for raw in stream:
            try:
                message = json.loads(raw)
            except ValueError:
                continue
            if "event" in message:
                progress.report(ProgressEvent.from_data(message["event"]))
            elif "ready" in message:
                return None
            elif "failed" in message:
                failed = message["failed"]
                return ComponentFailed(failed["component"], failed["reason"], failed["log_tail"], failed["log_file"])
            elif "interrupted" in message:
                return RuntimeFailure("interrupted; everything started was stopped")
        return "the supervisor exited before the mesh was ready"

    # -- state -----------------------------------------------------------------------------
    def _processes(self, project: Project) -> dict[str, Any]:
        try:
            data = json.loads((run_dir(project) / PROCESSES_FILE).read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def _supervisor_pid(self, project: Project, record: MeshRecord | None) -> int | None:
        pid = record.extra.get("supervisor_pid") if record else None
        if not isinstance(pid, int):
            try:
                pid = int((run_dir(project) / PID_FILE).read_text().strip())
            except (OSError, ValueError):
                pid = self._daemon.pid if self._daemon is not None else None
        return pid

    def _wait_gone(self, project: Project) -> None:
        """A served supervisor that failed stops its components, then exits: wait for that."""
        pid = self._supervisor_pid(project, None)
        deadline = time.monotonic() + STOP_TIMEOUT + 5
        while pid is not None and alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)

    def is_running(self, project: Project, record: MeshRecord) -> bool:
        pid = self._supervisor_pid(project, record)
        return pid is not None and alive(pid)

    # -- down ------------------------------------------------------------------------------
    def down(self, project: Project, record: MeshRecord | None, volumes: bool = False) -> list[str]:
        stopped = []
        pid = self._supervisor_pid(project, record)
        before = self._processes(project).get("processes", ())
        if pid is not None and alive(pid):
            os.kill(pid, signal.SIGTERM)  # it stops every component, TERM then KILL per group
            deadline = time.monotonic() + STOP_TIMEOUT
            while alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if alive(pid):
                signal_group(pid, signal.SIGKILL)
            stopped.append(f"stopped the supervisor (pid {pid})")
            running = [r["name"] for r in before if r.get("phase") != Phase.STOPPED.value]
            if running:
                stopped.append(f"stopped {', '.join(running)}")
        state = self._processes(project)
        stopped += _stop_leftovers(state.get("processes", ()))
        if pid is not None or state:
            for name in (PID_FILE, PROCESSES_FILE):
                (run_dir(project) / name).unlink(missing_ok=True)
            if record is None or record.runtime == self.name:
                remove_record(project)
        if volumes:
            shutil.rmtree(run_dir(project) / "prometheus-data", ignore_errors=True)
            shutil.rmtree(project.logs_dir, ignore_errors=True)
            stopped.append("removed the Prometheus data and the logs")
        if self._daemon is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._daemon.wait(1)
            self._daemon = None
        return stopped

    # -- status ----------------------------------------------------------------------------
    def status(self, project: Project, record: MeshRecord) -> StatusReport:
        state = self._processes(project)
        rows = state.get("processes", [])
        checks = {r["name"]: Probe(**r["probe"]) for r in rows if r.get("probe")}
        ready = probes.check_all(checks)
        components = []
        for row in rows:
            phase = Phase(row["phase"])
            ok = ready.get(row["name"], phase is Phase.READY)
            if phase is Phase.READY and not ok:
                phase = Phase.STARTING
            detail = row.get("address", "")
            if row.get("pid"):
                detail += f" pid {row['pid']}"
            components.append(
                ComponentStatus(row["name"], ComponentKind(row["kind"]), phase, ok, detail.strip(), row["restarts"])
            )
        node_ready: dict[str, bool] = {}
        for c in components:
            if c.kind in (ComponentKind.APP, ComponentKind.SIDECAR, ComponentKind.GATEWAY):
                node = c.name.removesuffix(PROXY_SUFFIX)
                node_ready[node] = node_ready.get(node, True) and c.ready
        syncz = probes.get_json(record.control_plane.rstrip("/") + "/debug/syncz") or []
        sync = {str(p.get("proxy")): str(p.get("state", "UNKNOWN")) for p in syncz if isinstance(p, dict)}
        topology = load_compose(record.compose_file)
        running = self.is_running(project, record)
        return StatusReport(
            self.name,
            record.project,
            running,
            dict(record.urls),
            tuple(components),
            workload_statuses(topology, node_ready, sync, _addresses(project, topology, record)),
            record.control_plane,
        )

    # -- logs ------------------------------------------------------------------------------
    def log_sources(self, project: Project, workload: str | None, proxy: bool) -> list[tuple[str, Path]]:
        rows = self._processes(project).get("processes", [])
        if workload is None:
            return [(r["name"], Path(r["log_file"])) for r in rows]
        by_name = {r["name"]: r for r in rows}
        if workload in by_name and not proxy:
            return [(workload, Path(by_name[workload]["log_file"]))]
        kinds = {ComponentKind.SIDECAR.value, ComponentKind.GATEWAY.value} if proxy else {ComponentKind.APP.value}
        if proxy and workload + PROXY_SUFFIX in by_name:  # one replica's node
            return [(workload + PROXY_SUFFIX, Path(by_name[workload + PROXY_SUFFIX]["log_file"]))]
        found = [(r["name"], Path(r["log_file"])) for r in rows if r.get("workload") == workload and r["kind"] in kinds]
        if not found and proxy and any(r.get("workload") == workload for r in rows):
            raise RuntimeFailure(f"workload '{workload}' has no sidecar (x-sandbox.inject is false)")
        if not found:
            known = sorted({r.get("workload") or r["name"] for r in rows})
            raise RuntimeFailure(f"no workload or component named '{workload}' (known: {', '.join(known)})")
        return found

    def logs(
        self,
        project: Project,
        record: MeshRecord,
        workload: str | None = None,
        proxy: bool = False,
        follow: bool = False,
        tail: int | None = None,
    ) -> Iterator[str]:
        sources = self.log_sources(project, workload, proxy)
        prefix = len(sources) > 1
        width = max((len(name) for name, _ in sources), default=0)
        for name, path in sources:
            lines = logfiles.read_all(path) if tail is None else logfiles.tail(path, tail)
            for line in lines:
                yield f"{name:<{width}} | {line}" if prefix else line
        if follow:
            for name, line in logfiles.follow(sources, lambda: self.is_running(project, record)):
                yield f"{name:<{width}} | {line}" if prefix else line


def _stop_leftovers(rows: Iterable[dict[str, Any]], grace: float = 3.0) -> list[str]:
    """Processes a dead supervisor left (by recorded pid, if still the same program): TERM each
    group, so they shut down as usual, and KILL what is still there after `grace` seconds."""
    found = {
        row["name"]: [p for p in row.get("pids", ()) if alive(p) and _same_program(p, row.get("argv0", ""))]
        for row in rows
    }
    found = {name: pids for name, pids in found.items() if pids}
    for pids in found.values():
        for leftover in pids:
            signal_group(leftover, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while any(alive(p) for pids in found.values() for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pids in found.values():
        for leftover in pids:
            signal_group(leftover, signal.SIGKILL)
    return [
        f"stopped {name} (pid {', '.join(map(str, pids))}), left by a supervisor that died"
        for name, pids in found.items()
    ]


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie does not count; ours is reaped on the way)."""
    if pid <= 0:
        return False
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _same_program(pid: int, argv0: str) -> bool:
    """Whether `pid` still runs the program we started (not a recycled pid)."""
    try:
        first = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0].decode(errors="replace")
    except OSError:
        return os.name != "posix" or not Path("/proc").is_dir()
    return not argv0 or first == argv0 or Path(first).name == Path(argv0).name


def _addresses(project: Project, topology: Topology, record: MeshRecord) -> dict[str, str]:
    """Node -> where a client outside the mesh reaches it: the endpoints the control plane gives
    every sidecar (each replica's sidecar inbound listener, or its app without a sidecar), and the
    ingress gateway's listener."""
    try:
        endpoints = json.loads((run_dir(project) / "endpoints.json").read_text())
    except (OSError, ValueError):
        endpoints = {}
    found: dict[str, str] = {}
    for w in topology.workloads:
        listed = endpoints.get(w.name) if isinstance(endpoints, dict) else None
        if w.builtin:
            listed = [urlsplit(record.urls.get("ingress") or "").netloc]
        for replica, address in enumerate(listed if isinstance(listed, list) else ()):
            found[node_name(w.name, replica, w.replicas)] = str(address)
    return found
