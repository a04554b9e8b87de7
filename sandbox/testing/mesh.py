"""A running mesh as a Python object: the operator verbs (`apply`, `delete`, `get`, `wait --synced`,
`proxy-status`, `logs`) as methods over the same library calls the CLI makes, plus traffic into
and inside the mesh and the fault and routing context managers (changes.py).

Every rule change is validated against the whole Istio directory and the Compose workloads before
anything is written (refused with the diagnostics, like `sandbox apply`), and a change returns
only once every sidecar has ACKed it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from sandbox.mesh.topology import Topology, load_compose
from sandbox.operator.apply import Input, Plan, read_inputs, write
from sandbox.operator.client import Unreachable, get_json
from sandbox.operator.edit import Checkpoint, checkpoint, plan_change, plan_restore
from sandbox.runtime.base import Runtime
from sandbox.runtime.project import MeshRecord, Project, ProxyRecord
from sandbox.testing.errors import MeshError
from sandbox.testing.http import ContainerExec, RequestFailed, Response, Target, send, split

T = TypeVar("T")
Source = str | os.PathLike[str] | Mapping[str, Any] | Sequence[Any]
SYNC_TIMEOUT = 30.0
LOOPBACK = ("127.0.0.1", "localhost")


@dataclass(frozen=True)
class Sample:
    """One series of a PromQL instant query: its labels and value."""

    labels: dict[str, str]
    value: float


class ProxyStatus(list[dict[str, Any]]):
    """`sandbox proxy-status`: one row per sidecar (control plane's /debug/syncz); str() is the table."""

    def __init__(self, rows: list[dict[str, Any]], table: str) -> None:
        super().__init__(rows)
        self.table = table

    def __str__(self) -> str:
        return self.table

    @property
    def states(self) -> dict[str, str]:
        return {str(r["proxy"]): str(r["state"]) for r in self}


class Mesh:
    def __init__(
        self,
        project: Project,
        record: MeshRecord,
        engine: Runtime,
        source: Path | None = None,
        stop: Callable[[Mesh], None] | None = None,
    ) -> None:
        self.project = project
        self.record = record
        self.engine = engine
        self.source = source  # the project's compose file this mesh is a copy of
        self._stop = stop
        self.topology: Topology = load_compose(project.compose_file)
        self.started: Checkpoint = checkpoint(project.istio_dir)

    # -- where it is ---------------------------------------------------------------------------
    @property
    def compose_file(self) -> Path:
        """The working copy's compose file: `sandbox get vs -f THIS` and friends work on it."""
        return self.project.compose_file

    @property
    def istio_dir(self) -> Path:
        return self.project.istio_dir

    @property
    def urls(self) -> dict[str, str | None]:
        return dict(self.record.urls)

    @property
    def ingress(self) -> str:
        return str(self.record.urls["ingress"])

    @property
    def ingress_port(self) -> int:
        return split(self.ingress)[2]

    def __repr__(self) -> str:
        return f"<Mesh {self.record.project} ({self.record.runtime}) ingress {self.ingress}>"

    def stop(self) -> None:
        if self._stop is not None:
            self._stop(self)
        else:
            self.engine.down(self.project, self.record)

    def __enter__(self) -> Mesh:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    # -- rules ---------------------------------------------------------------------------------
    def apply(self, source: Source) -> list[str]:
        """`sandbox apply -f`: YAML text, a file or directory (a Path), a manifest dict, or a list of
        these. Returns kubectl's lines (`virtualservice.networking.istio.io/reviews created`) once
        every sidecar ACKed the change."""
        return self._change(self._inputs(source))

    def delete(self, what: Source, *names: str, namespace: str = "default") -> list[str]:
        """`sandbox delete -f` (YAML text, a file, a dict) or `sandbox delete KIND NAME...`."""
        if names:
            from sandbox.mesh.resources import lookup_kind

            info = lookup_kind(str(what))
            if info is None:
                raise MeshError(f'the server doesn\'t have a resource type "{what}"')
            return self._change([], keys=[(info.kind, namespace, name) for name in names])
        return self._change(self._inputs(what), deleting=True)

    def _inputs(self, source: Source) -> list[Input]:
        from sandbox.mesh.yamlsrc import dump_yaml

        if isinstance(source, Mapping):
            return [Input("-", dump_yaml(dict(source)))]
        if isinstance(source, str) and ("\n" in source or source.lstrip().startswith(("apiVersion", "kind", "{"))):
            return [Input("-", source)]
        if isinstance(source, str | os.PathLike):
            path = Path(source)
            if not path.exists():
                raise MeshError(f"no such file or directory: {path} (YAML text must have a line break)")
            inputs, problems = read_inputs([str(path)], lambda: "")
            if problems:
                raise MeshError("; ".join(problems))
            return inputs
        return [item for part in source for item in self._inputs(part)]

    def _change(
        self, inputs: list[Input], deleting: bool = False, keys: list[tuple[str, str, str]] | None = None
    ) -> list[str]:
        plan = plan_change(self.istio_dir, self.compose_file, inputs, deleting=deleting, keys=keys)
        self._write(plan, "deleted" if deleting or keys else "applied")
        missing = [c.line for c in plan.changes if c.action == "not found"]
        if missing:
            raise MeshError("not found: " + ", ".join(missing))
        return [c.line for c in plan.changes]

    def _write(self, plan: Plan, verb: str) -> None:
        if not plan.ok:
            found = "\n".join(d.format() for d in plan.refused)
            raise MeshError(f"nothing {verb}: the change would bring these problems (nothing was written):\n{found}")
        write(plan)
        if plan.writes:
            self.wait_synced()

    def wait_synced(self, timeout: float = SYNC_TIMEOUT) -> None:
        """`sandbox wait --synced`: every sidecar runs the rules on disk."""
        from sandbox.operator.sync import wait_synced

        result = wait_synced(self.record, timeout)
        if not result.synced:
            raise MeshError(f"not in sync after {timeout:g}s: " + "; ".join(result.problems))

    def get(self, kind: str, name: str | None = None, namespace: str | None = None, output: str = "yaml") -> str:
        """`sandbox get KIND [NAME] -o yaml|json|table`: the resources in force."""
        from sandbox.operator.views import resources_output

        return resources_output(self.resources(kind, name, namespace), output, time.time())

    def resources(self, kind: str, name: str | None = None, namespace: str | None = None) -> list[dict[str, Any]]:
        """The control plane's rows for the resources in force: manifest, file, line, applied."""
        from sandbox.mesh.resources import lookup_kind

        info = lookup_kind(kind)
        if info is None:
            raise MeshError(f'the server doesn\'t have a resource type "{kind}"')
        params = {"kind": info.kind, "namespace": namespace or "", "name": name or ""}
        return list(self._json(self.record.control_plane, "/api/v1/resources", params)["resources"])

    def reset(self) -> list[str]:
        """Put every rule back as it was when the mesh started (toxiproxy's reset)."""
        return self.restore(self.started)

    def checkpoint(self) -> Checkpoint:
        return checkpoint(self.istio_dir)

    def restore(self, saved: Checkpoint, keys: Sequence[tuple[str, str, str]] | None = None) -> list[str]:
        """Put the rules (or only `keys`) back as they were at `saved`, exactly as written."""
        plan = plan_restore(saved, self.compose_file, keys)
        self._write(plan, "restored")
        return [c.line for c in plan.changes]

    def fault(
        self,
        service: str,
        *,
        delay: str | float | None = None,
        abort: int | None = None,
        percent: float = 100,
        subset: str | None = None,
        match: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
        namespace: str = "default",
    ) -> AbstractContextManager[Mesh]:
        """Istio's fault injection on the service's route while the block runs; on exit, also when the
        block raises, the rules are exactly as before (rules.py says where the fault goes)."""
        from sandbox.testing.changes import fault_block

        return fault_block(self, service, delay, abort, percent, subset, match, namespace)

    def route(
        self, service: str, weights: Mapping[str, int] | str, *, namespace: str = "default"
    ) -> AbstractContextManager[Mesh]:
        """Traffic to the service split over its subsets (`{"v1": 80, "v2": 20}`, or `"v2"` for all)
        while the block runs; the previous rules come back on exit, exactly."""
        from sandbox.testing.changes import route_block

        return route_block(self, service, {weights: 100} if isinstance(weights, str) else dict(weights), namespace)

    # -- traffic -------------------------------------------------------------------------------
    def url(self, service: str, path: str = "/", namespace: str = "default") -> str:
        """The service's URL through the ingress gateway: a Gateway-bound VirtualService must route to
        it. Its host is 127.0.0.1 when that route takes any host, else the route's first host (send it
        with `mesh.request`, which connects to the ingress as `curl --resolve` does)."""
        from sandbox.testing.rules import gateway_hosts

        hosts = gateway_hosts(self.resources("VirtualService"), service, namespace, self.topology.namespaces)
        if hosts is None:
            raise MeshError(
                f"no Gateway route reaches '{service}': bind a VirtualService to a Gateway (as samples/bookinfo/"
                f"istio/ does), or send from inside the mesh: mesh.request('GET', 'http://{service}:PORT/', "
                "from_='a-workload')"
            )
        host = "127.0.0.1" if "*" in hosts or not hosts else hosts[0]
        return f"http://{host}:{self.ingress_port}{path if path.startswith('/') else '/' + path}"

    def request(
        self,
        method: str,
        url: str,
        from_: str | None = None,
        headers: Mapping[str, str] | None = None,
        body: bytes | str | None = None,
        timeout: float = 30.0,
    ) -> Response:
        """Send a request from the host (from_=None), or from inside a workload, through its sidecar
        (as `kubectl exec WORKLOAD -- curl URL` does): that workload's routing rules apply."""
        try:
            if from_ is None:
                return send(method, url, self._host_target(url), headers, body, timeout)
            proxy = self._proxy(from_)
            if proxy.outbound:
                _, host, port, _ = split(proxy.outbound)
                return send(method, url, Target(host, port, absolute=True), headers, body, timeout, from_)
            compose = self.record.extra.get("compose")
            if not compose:
                raise MeshError(f"the {self.record.runtime} runtime recorded no way to reach {proxy.node}'s sidecar")
            from sandbox.runtime.compose_render import OUTBOUND_PORT, sidecar_service

            sender = ContainerExec(list(compose), sidecar_service(proxy.node), OUTBOUND_PORT)
            return sender.send(method, url, headers, body, timeout, from_)
        except RequestFailed as exc:
            raise MeshError(str(exc)) from None

    def _host_target(self, url: str) -> Target:
        _, host, port, _ = split(url)
        if port == self.ingress_port and host not in LOOPBACK:
            return Target("127.0.0.1", port, host_header=host)  # curl --resolve HOST:PORT:127.0.0.1
        if host not in LOOPBACK and any(s.name == host for s in self.topology.services):
            raise MeshError(
                f"'{host}' is a mesh service name, which only resolves inside the mesh: send it from a workload "
                f"(from_='...'), or through the ingress (mesh.url('{host}'))"
            )
        return Target(host, port)

    def _proxy(self, workload: str) -> ProxyRecord:
        matches = [p for p in self.record.proxies if p.node == workload] or [
            p for p in self.record.proxies if p.workload == workload
        ]
        if not matches:
            known = ", ".join(sorted({p.workload for p in self.record.proxies}))
            raise MeshError(f"no sidecar for workload '{workload}' (workloads with one: {known})")
        return sorted(matches, key=lambda p: p.replica)[0]

    # -- observing -----------------------------------------------------------------------------
    def logs(self, workload: str, proxy: bool = False, tail: int | None = None) -> list[str]:
        """`sandbox logs WORKLOAD [--proxy]`: the app's log, or its sidecar's (the access log)."""
        from sandbox.runtime.base import RuntimeFailure

        try:
            return list(self.engine.logs(self.project, self.record, workload, proxy=proxy, tail=tail))
        except RuntimeFailure as exc:
            raise MeshError(str(exc)) from None

    def proxy_status(self) -> ProxyStatus:
        """`sandbox proxy-status`: each sidecar's sync state (SYNCED, STALE, NACK, DISCONNECTED)."""
        from sandbox.operator.views import proxy_status_table

        rows = list(self._json(self.record.control_plane, "/debug/syncz"))
        expected = [(p.node, p.workload, p.namespace) for p in self.record.proxies]
        return ProxyStatus(rows, proxy_status_table(rows, expected))

    def metrics(self, promql: str) -> list[Sample]:
        """A PromQL instant query on the mesh's Prometheus (it scrapes every 5 s: poll with
        `eventually`). Needs Prometheus: `--sandbox-prometheus`, or `mesh_factory(prometheus=True)`."""
        base = self.record.urls.get("prometheus")
        if not base:
            raise MeshError("this mesh runs no Prometheus: start it with prometheus=True (--sandbox-prometheus)")
        data = self._json(base, "/api/v1/query", {"query": promql})
        return [Sample(dict(r["metric"]), float(r["value"][1])) for r in data["data"]["result"]]

    def traces(self, service: str, limit: int = 20, namespace: str = "default") -> list[dict[str, Any]]:
        """Recent traces through the service, in Jaeger's JSON (`traceID`, `spans`, `processes`).
        Needs the console (it collects the spans): `--sandbox-console`, or `mesh_factory(console=True)`."""
        base = self.record.urls.get("tracing")
        if not base:
            raise MeshError("this mesh collects no traces: start it with console=True (--sandbox-console)")
        name = service if "." in service else f"{service}.{namespace}"
        data = self._json(base, "/api/traces", {"service": name, "limit": str(limit)})
        return list(data.get("data") or [])

    def eventually(self, check: Callable[[], T | None], timeout: float = 10.0, interval: float = 0.1) -> T:
        """check() until it returns something truthy (metrics and logs arrive a little later)."""
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"still {value!r} after {timeout:g}s")
            time.sleep(interval)

    def _json(self, base: str, path: str, params: dict[str, str] | None = None) -> Any:
        try:
            return get_json(base, path, params)
        except Unreachable as exc:
            raise MeshError(str(exc)) from None

    def sidecars(self) -> Iterator[ProxyRecord]:
        return iter(self.record.proxies)
