"""The compose runtime: the mesh as containers, one Compose project per compose file.

`up` builds the image when missing or stale (image.py), mints each sidecar's bootstrap token,
renders `.sandbox/compose/` (compose_render.py), runs `docker compose up -d` (v2, or Debian's
`docker-compose` v1) with an explicit project name and the user's directory as the project
directory, reports each container's progress from the engine while Compose works, recreates any
app whose sidecar (the owner of its network namespace) was recreated or restarted under it, waits
for every healthcheck, reads the ephemeral host ports back and writes the MeshRecord.
Status and logs come from the engine through the SDK (docker_engine.py), never by parsing
Compose's output, which differs between v1 and v2.
"""

from __future__ import annotations

import os
import queue
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

from sandbox.mesh.diagnostics import Diagnostic
from sandbox.mesh.names import node_name
from sandbox.mesh.topology import Topology, load_compose
from sandbox.runtime import consoletoken, probes
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
from sandbox.runtime.compose_project import (
    COMPOSE_FILE,
    Component,
    components,
    compose_command,
    compose_dir,
    compose_env,
    console_available,
    render_project,
    upstream_images,
    write_rendered,
)
from sandbox.runtime.compose_render import (
    ADMIN_PORT,
    CONSOLE_PORT,
    CONTROL_PLANE_PORT,
    GATEWAY_BIND_PORT,
    GATEWAY_HTTPS_PORT,
    INBOUND_PORT,
    JAEGER_UI_PORT,
    PROMETHEUS_PORT,
    Images,
    Rendered,
)
from sandbox.runtime.docker_engine import ContainerInfo, Engine, EngineUnavailable, parse_time
from sandbox.runtime.preflight import Inputs, error, taken_ports
from sandbox.runtime.project import MeshRecord, Project, ProxyRecord, remove_record, write_record

COMPOSE_TIMEOUT = 1200.0  # `compose up` itself: creating a container copies the image under vfs
STOP_TIMEOUT = 5
IMAGE_REF_ENV = "SANDBOX_IMAGE_REF"  # run this image as is: no staleness check, no build
POLL = 0.5


class ComposeRuntime:
    name = "compose"

    def __init__(self, connect: Callable[[], Engine] = Engine.connect, command: list[str] | None = None) -> None:
        self._connect = connect
        self._command = command

    # -- preflight ---------------------------------------------------------------------------
    def preflight(self, project: Project, inputs: Inputs) -> list[Diagnostic]:
        try:
            engine = self._connect()
        except EngineUnavailable as exc:
            return [error("SBX506", f"{exc}: start Docker, or use --runtime local", "<engine>", path="--runtime")]
        try:
            self._compose()
        except RuntimeFailure as exc:
            return [error("SBX506", str(exc), "<engine>", path="--runtime")]
        ours = {port for c in engine.containers(project.name) if c.running for port in c.ports.values()}
        return taken_ports([c for c in inputs.claims if c.port not in ours], _who_holds)

    # -- up ----------------------------------------------------------------------------------
    def up(self, project: Project, topology: Topology, options: UpOptions, progress: Progress) -> MeshRecord:
        from sandbox.control.ca import MeshCA
        from sandbox.runtime.image import ensure_image, plan_image

        started = time.monotonic()
        engine = self._connect()
        plan = plan_image(engine)
        pinned = os.environ.get(IMAGE_REF_ENV)
        if pinned:  # a prebuilt image, taken as it is (CI caches, measurements)
            if engine.image_id(pinned) is None:
                raise RuntimeFailure(f"{IMAGE_REF_ENV}={pinned}: no such image on the engine")
            image = pinned
        else:
            if engine.image_id(plan.tag) is None:
                if not options.build:
                    raise RuntimeFailure(f"the image {plan.tag} is missing or stale (build it: drop --no-build)")
                progress.warn(f"building the image {plan.tag} ({plan.mode}); this takes a few minutes the first time")
            image = ensure_image(engine, plan, project.logs_dir / "image-build.log")
        MeshCA.load_or_create(project.ca_dir)  # on the host, so the control plane only reads it
        images, tracing = self._plan_services(
            engine, replace(upstream_images(), sandbox=image), plan.base if plan.offline else None, progress
        )
        from sandbox.runtime.compose_render import CONSOLE_PORT
        from sandbox.runtime.hostports import port_free

        console_port = CONSOLE_PORT if port_free(CONSOLE_PORT) else None  # Kiali's port on the host when free
        rendered = render_project(
            project,
            topology,
            images=images,
            tracing=tracing,
            console=console_available(),
            console_host_port=console_port,
            console_token=consoletoken.ensure(project) if console_available() else None,
        )
        write_rendered(rendered, compose_dir(project))
        self._compose_up(project, engine, rendered, options, progress, started)
        record = self._record(project, engine, rendered, topology, image, tracing)
        write_record(project, record)
        return record

    def _plan_services(
        self, engine: Engine, images: Images, offline_base: str | None, progress: Progress
    ) -> tuple[Images, str | None]:
        """Offline, an upstream image that is not on the engine cannot be pulled: Prometheus then runs
        from the offline base image (Debian's package) and tracing goes to the console's
        collector, or is off when there is no console either."""
        if offline_base is None:
            return images, "jaeger"
        if engine.image_id(images.prometheus) is None:
            images = replace(images, prometheus=offline_base, debian_prometheus=True)
        if engine.image_id(images.jaeger) is not None:
            return images, "jaeger"
        if console_available():
            return images, "console"
        progress.warn(
            f"tracing is off: the image {images.jaeger} is not on this engine and no registry is reachable "
            "(load it, or set SANDBOX_JAEGER_IMAGE to one that is)"
        )
        return images, None

    def _compose(self) -> list[str]:
        if self._command is None:
            self._command = compose_command()
        return self._command

    def _base(self, project: Project) -> list[str]:
        compose_file = compose_dir(project) / COMPOSE_FILE
        return [
            *self._compose(),
            "-p",
            project.name,
            "--project-directory",
            str(project.directory),
            "-f",
            str(compose_file),
        ]

    def _run(
        self, project: Project, args: list[str], timeout: float = COMPOSE_TIMEOUT
    ) -> subprocess.CompletedProcess[bytes]:
        log = project.logs_dir / "compose.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            out.write(f"$ {' '.join([*self._base(project), *args])}\n".encode())
            out.flush()
            return subprocess.run(
                [*self._base(project), *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
                env=compose_env(),
            )

    def _compose_up(
        self, project: Project, engine: Engine, rendered: Rendered, options: UpOptions, progress: Progress, t0: float
    ) -> None:
        log = project.logs_dir / "compose.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        watched = components(rendered.services)
        plain = frozenset(s for s, role in rendered.services.items() if role == "plain")
        phases: dict[str, Phase] = {}
        listening: set[str] = set()
        with log.open("ab") as out:
            command = [*self._base(project), "up", "-d", "--remove-orphans"]
            out.write(f"$ {' '.join(command)}\n".encode())
            out.flush()
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=compose_env())
            try:
                deadline = None
                while True:
                    done = process.poll() is not None
                    if done and process.returncode != 0:
                        tail = log.read_text(errors="replace").splitlines()[-15:]
                        self._fail(
                            project,
                            engine,
                            RuntimeFailure(
                                f"`compose up` failed (exit {process.returncode}); last lines of {log}:\n"
                                + "\n".join(tail)
                            ),
                        )
                    if done and deadline is None:
                        self._rejoin(project, engine, rendered)
                        deadline = time.monotonic() + options.timeout
                    containers = {c.service: c for c in engine.containers(project.name)}
                    self._check_inits(project, engine, rendered, containers)
                    self._await_apps(engine, rendered, containers, listening)
                    pending = self._report(watched, containers, phases, progress, t0, project, engine, plain)
                    if done and not pending:
                        return
                    if deadline is not None and time.monotonic() > deadline:
                        first = pending[0]
                        self._fail(
                            project,
                            engine,
                            self._failure(
                                engine, first, containers.get(first.service), f"not ready after {options.timeout:.0f} s"
                            ),
                        )
                    if time.monotonic() - t0 > COMPOSE_TIMEOUT:
                        process.kill()
                    time.sleep(POLL)
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait()

    @staticmethod
    def _await_apps(
        engine: Engine, rendered: Rendered, containers: dict[str, ContainerInfo], listening: set[str]
    ) -> None:
        """An app counts as ready once its port accepts connections (asked from its sidecar, which
        owns the namespace): a running container may still be importing its code, and the ingress
        would answer 503 until it listens. Apps still starting are marked not ready in `containers`."""
        for app, port in rendered.app_ports.items():
            info, sidecar = containers.get(app), containers.get(rendered.apps[app])
            if info is None or not info.ready or app in listening:
                continue
            if sidecar is not None and sidecar.ready and engine.accepts(sidecar.id, port):
                listening.add(app)
            else:
                containers[app] = replace(info, health="starting")

    def _report(
        self,
        watched: list[Component],
        containers: dict[str, ContainerInfo],
        phases: dict[str, Phase],
        progress: Progress,
        t0: float,
        project: Project,
        engine: Engine,
        plain: frozenset[str] = frozenset(),
    ) -> list[Component]:
        """Report phase changes; return what is not ready yet. A one-off plain service (not in the
        mesh) that exited 0 counts as done."""
        pending = []
        for component in watched:
            info = containers.get(component.service)
            finished = (
                info is not None and info.state == "exited" and info.exit_code == 0 and component.service in plain
            )
            if info is not None and not finished and (info.state in ("exited", "dead") or info.health == "unhealthy"):
                reason = f"exited with status {info.exit_code}" if info.state != "running" else "its healthcheck fails"
                self._fail(project, engine, self._failure(engine, component, info, reason))
            phase = Phase.READY if info is not None and (info.ready or finished) else Phase.STARTING
            if phase is not Phase.READY:
                pending.append(component)
            if phases.get(component.name) != phase and (info is not None or phase is Phase.READY):
                phases[component.name] = phase
                detail = _published(info) if info is not None else ""
                progress.report(ProgressEvent(component.name, component.kind, phase, detail, time.monotonic() - t0))
        return pending

    def _check_inits(
        self,
        project: Project,
        engine: Engine,
        rendered: Rendered,
        containers: dict[str, ContainerInfo],
    ) -> None:
        for service, role in rendered.services.items():
            info = containers.get(service)
            if role == "init" and info is not None and info.state == "exited" and info.exit_code != 0:
                component = Component(service.removesuffix("-init") + ".init", ComponentKind.SIDECAR, service)
                reason = f"the iptables rules could not be installed (exit {info.exit_code})"
                self._fail(project, engine, self._failure(engine, component, info, reason))

    def _failure(
        self, engine: Engine, component: Component, info: ContainerInfo | None, reason: str
    ) -> ComponentFailed:
        tail = list(engine.logs(info.id, tail=20)) if info is not None else []
        return ComponentFailed(component.name, reason, tail, f"sandbox logs (container {info.name if info else '-'})")

    def _fail(self, project: Project, engine: Engine, failure: RuntimeFailure) -> None:
        """Stop everything this `up` started, then raise (ComponentFailed carries the log tail)."""
        self.down(project, None)
        raise failure

    def _rejoin(self, project: Project, engine: Engine, rendered: Rendered) -> list[str]:
        """Compose leaves an app joined to a network namespace that is gone when its sidecar was
        recreated (a new container) or restarted after it: recreate those apps."""
        containers = {c.service: c for c in engine.containers(project.name)}
        stale = []
        for app, sidecar in sorted(rendered.apps.items()):
            a, s = containers.get(app), containers.get(sidecar)
            if a is None or s is None:
                continue
            if a.network_mode != f"container:{s.id}" or parse_time(s.started_at) > parse_time(a.started_at):
                stale.append(app)
        if stale:
            self._run(project, ["up", "-d", "--no-deps", "--force-recreate", *stale])
        return stale

    def _record(
        self, project: Project, engine: Engine, rendered: Rendered, topology: Topology, image: str, tracing: str | None
    ) -> MeshRecord:
        containers = {c.service: c for c in engine.containers(project.name)}

        def url(service: str, port: int) -> str | None:
            info = containers.get(service)
            host_port = info.ports.get(f"{port}/tcp") if info is not None else None
            return f"http://127.0.0.1:{host_port}" if host_port else None

        proxies = []
        for w in topology.workloads:
            nodes = [w.name] if w.builtin else [n for n in rendered.sidecars if _workload_of(n, w.name, w.replicas)]
            for index, node in enumerate(sorted(nodes, key=_replica_key)):
                service = w.name if w.builtin else rendered.sidecars[node]
                admin = url(service, ADMIN_PORT)
                if admin:
                    proxies.append(ProxyRecord(node, w.name, w.namespace, index, admin))
        https = url("istio-ingressgateway", GATEWAY_HTTPS_PORT)
        urls = {
            "ingress": f"http://127.0.0.1:{topology.settings.ingress_port}",
            "https": https.replace("http://", "https://", 1) if https else None,
            "console": url("console", CONSOLE_PORT),
            "prometheus": url("prometheus", PROMETHEUS_PORT),
            "tracing": url("jaeger", JAEGER_UI_PORT) if tracing == "jaeger" else url("console", CONSOLE_PORT),
        }
        control_plane = url("controlplane", CONTROL_PLANE_PORT) or ""
        extra: dict[str, Any] = {
            "compose": self._base(project),
            "image": image,
            "services": rendered.services,
            "tracing": tracing,
        }
        return MeshRecord(
            self.name,
            project.name,
            str(project.compose_file),
            str(project.istio_dir),
            control_plane,
            urls,
            tuple(proxies),
            time.time(),
            extra,
        )

    # -- running / down ----------------------------------------------------------------------
    def is_running(self, project: Project, record: MeshRecord) -> bool:
        try:
            engine = self._connect()
        except EngineUnavailable:
            return False
        return any(c.service == "controlplane" and c.running for c in engine.containers(project.name))

    def down(self, project: Project, record: MeshRecord | None, volumes: bool = False) -> list[str]:
        try:
            engine = self._connect()
        except EngineUnavailable:
            remove_record(project)
            return []
        before = engine.containers(project.name)
        if (compose_dir(project) / COMPOSE_FILE).is_file():
            args = ["down", "--remove-orphans", "--timeout", str(STOP_TIMEOUT), *(["--volumes"] if volumes else [])]
            self._run(project, args)
        for leftover in engine.containers(project.name):  # whatever Compose did not know about
            engine.remove_container(leftover.id)
        networks = engine.networks(project.name)
        for network in networks:
            engine.remove_network(network)
        remove_record(project)
        return [f"removed container {c.name}" for c in before] + [f"removed network {n}" for n in networks]

    # -- status / logs -----------------------------------------------------------------------
    def status(self, project: Project, record: MeshRecord) -> StatusReport:
        services: dict[str, str] = dict(record.extra.get("services") or {})
        try:
            containers = {c.service: c for c in self._connect().containers(project.name)}
        except EngineUnavailable:
            containers = {}
        rows = []
        node_ready: dict[str, bool] = {}
        for component in components(services):
            info = containers.get(component.service)
            ready = info is not None and info.ready
            phase = (
                Phase.READY if ready else Phase.STOPPED if info is None or info.state == "exited" else Phase.STARTING
            )
            detail = f"{info.name} {info.state}{' ' + _published(info) if _published(info) else ''}" if info else ""
            rows.append(
                ComponentStatus(component.name, component.kind, phase, ready, detail, info.restart_count if info else 0)
            )
            if component.kind in (ComponentKind.APP, ComponentKind.SIDECAR, ComponentKind.GATEWAY):
                node = component.name.removesuffix(PROXY_SUFFIX)
                node_ready[node] = node_ready.get(node, True) and ready
        syncz = probes.get_json(record.control_plane.rstrip("/") + "/debug/syncz") if record.control_plane else None
        sync = {str(p.get("proxy")): str(p.get("state", "UNKNOWN")) for p in syncz or [] if isinstance(p, dict)}
        topology = load_compose(record.compose_file)
        running = any(c.service == "controlplane" and c.running for c in containers.values())
        return StatusReport(
            self.name,
            record.project,
            running,
            dict(record.urls),
            tuple(rows),
            workload_statuses(topology, node_ready, sync, _addresses(project.name, topology, containers)),
            record.control_plane,
        )

    def logs(
        self,
        project: Project,
        record: MeshRecord,
        workload: str | None = None,
        proxy: bool = False,
        follow: bool = False,
        tail: int | None = None,
    ) -> Iterator[str]:
        engine = self._connect()
        containers = {c.service: c for c in engine.containers(project.name)}
        sources = [
            (c.name, containers[c.service].id)
            for c in self._log_components(record, workload, proxy)
            if c.service in containers
        ]
        prefix = workload is None or len(sources) > 1
        width = max((len(name) for name, _ in sources), default=0)
        if not follow or len(sources) == 1:
            for name, ident in sources:
                for line in engine.logs(ident, follow=follow, tail=tail):
                    yield f"{name:<{width}} | {line}" if prefix else line
            return
        yield from _merged(engine, sources, tail, width)

    def _log_components(self, record: MeshRecord, workload: str | None, proxy: bool) -> list[Component]:
        every = components(dict(record.extra.get("services") or {}))
        if workload is None:
            return every
        by_name = {c.name: c for c in every}
        if workload in by_name and not proxy:
            return [by_name[workload]]
        if proxy and workload + PROXY_SUFFIX in by_name:
            return [by_name[workload + PROXY_SUFFIX]]
        nodes = {p.node for p in record.proxies if p.workload == workload}
        if proxy:
            found = [c for c in every if c.name.removesuffix(PROXY_SUFFIX) in nodes and c.kind is not ComponentKind.APP]
        else:
            found = [c for c in every if c.name in nodes and c.kind is ComponentKind.APP]
        if not found:
            known = sorted({p.workload for p in record.proxies} | {c.name for c in every})
            raise RuntimeFailure(f"no workload or component named '{workload}' (known: {', '.join(known)})")
        return found


def _merged(engine: Engine, sources: list[tuple[str, str]], tail: int | None, width: int) -> Iterator[str]:
    """Follow several containers at once, a thread per container (the SDK's streams block)."""
    lines: queue.Queue[str | None] = queue.Queue()

    def pump(name: str, ident: str) -> None:
        try:
            for line in engine.logs(ident, follow=True, tail=tail):
                lines.put(f"{name:<{width}} | {line}")
        finally:
            lines.put(None)

    for name, ident in sources:
        threading.Thread(target=pump, args=(name, ident), daemon=True).start()
    open_streams = len(sources)
    while open_streams:
        item = lines.get()
        if item is None:
            open_streams -= 1
        else:
            yield item


def _addresses(project: str, topology: Topology, containers: dict[str, ContainerInfo]) -> dict[str, str]:
    """Node -> where a container outside the mesh reaches it on the project network: each replica's
    sidecar (it owns the network namespace) at its inbound port 15006, the app of a workload
    without a sidecar at its port, the ingress gateway at its listener."""
    found: dict[str, str] = {}
    for w in topology.workloads:
        for replica in range(w.replicas):
            node = node_name(w.name, replica, w.replicas)
            port: int | None
            if w.builtin:
                service, port = w.name, GATEWAY_BIND_PORT
            elif w.inject:
                service, port = f"{node}-proxy", INBOUND_PORT
            else:
                service, port = w.name, w.port
            info = containers.get(service)
            ip = _project_ip(project, info) if info is not None else ""
            if ip:
                found[node] = f"{ip}:{port}" if port else ip
    return found


def _project_ip(project: str, info: ContainerInfo) -> str:
    """The container's address on the project's default network (where every sidecar and the
    control plane are), else on the first network it joined."""
    preferred = info.ips.get(f"{project}_default")
    return preferred or next((ip for _, ip in sorted(info.ips.items())), "")


def _published(info: ContainerInfo) -> str:
    return ", ".join(f"127.0.0.1:{host}->{port}" for port, host in sorted(info.ports.items()))


def _workload_of(node: str, workload: str, replicas: int) -> bool:
    return (
        node == workload
        if replicas <= 1
        else node.rpartition("-")[0] == workload and node[len(workload) + 1 :].isdigit()
    )


def _replica_key(node: str) -> tuple[int, str]:
    suffix = node.rpartition("-")[2]
    return (int(suffix) if suffix.isdigit() else 0, node)


def _who_holds(port: int) -> str | None:
    from sandbox.runtime.hostports import who_holds

    return who_holds(port)
