"""What the console reads, and from where: the control plane's HTTP API (/api/v1/resources,
/debug/syncz), the sidecars' admin ports, Prometheus (PromQL over HTTP), the Compose file and the
local runtime's log files. I/O only: every answer goes to the pure modules as plain data.

Validations are recomputed only when the control plane's generation or the Compose file changes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from sandbox.console.inventory import ProxyRow
from sandbox.console.mesh import DEFAULT_CONTROL_PLANE, describe_error, get_json, join
from sandbox.console.prom import Prometheus
from sandbox.console.validations import Validated, validate
from sandbox.mesh.topology import Topology, empty_topology
from sandbox.runtime.project import MeshRecord, Project, read_record

log = logging.getLogger(__name__)


class UpstreamError(Exception):
    """The control plane (or a sidecar) could not answer; the message says which and why."""


class TopologyFile:
    """The Compose file's topology, re-read when the file changes (a bad file keeps the last good one)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._mtime: float | None = None
        self.topology: Topology = empty_topology()

    def read(self) -> Topology:
        if self.path is None:
            return self.topology
        try:
            mtime = self.path.stat().st_mtime
        except OSError:
            return self.topology
        if mtime != self._mtime:
            from sandbox.mesh.topology import load_compose

            try:
                self.topology = load_compose(self.path)
            except Exception:  # an unreadable file is analyze's to report; the console keeps the last one
                log.warning("cannot read %s; keeping the last topology", self.path, exc_info=True)
                return self.topology
            self._mtime = mtime
        return self.topology


class MeshReader:
    def __init__(
        self,
        project: Project | None,
        control_plane: str | None,
        prometheus: str | None,
        session: Callable[[], aiohttp.ClientSession],
    ) -> None:
        self.project = project
        self._control_plane = control_plane
        self._prometheus = prometheus
        self._session = session
        self.topology_file = TopologyFile(project.compose_file if project else None)
        self._validated: tuple[tuple[Any, ...], Validated] | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        return self._session()

    def record(self) -> MeshRecord | None:
        return read_record(self.project) if self.project else None

    def topology(self) -> Topology:
        return self.topology_file.read()

    def control_plane(self) -> str:
        record = self.record()
        return self._control_plane or (record.control_plane if record else None) or DEFAULT_CONTROL_PLANE

    def prometheus(self) -> Prometheus | None:
        record = self.record()
        base = self._prometheus or (record.urls.get("prometheus") if record else None)
        return Prometheus(base, self.session) if base else None

    async def _cp_json(self, path: str) -> Any:
        base = self.control_plane()
        try:
            return await get_json(self.session, join(base, path))
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise UpstreamError(f"control plane {base}: {describe_error(exc)}") from None

    async def resources(self) -> tuple[int, list[dict[str, Any]]]:
        """(generation, resources in force) from /api/v1/resources."""
        data = await self._cp_json("/api/v1/resources")
        if not isinstance(data, dict) or not isinstance(data.get("resources"), list):
            raise UpstreamError("control plane: /api/v1/resources answered something unexpected")
        return int(data.get("generation") or 0), [r for r in data["resources"] if isinstance(r, dict)]

    async def sync(self) -> dict[str, Any]:
        """The control plane's /api/v1/sync: changes on disk not applied yet, each sidecar's ACK state."""
        data = await self._cp_json("/api/v1/sync")
        if not isinstance(data, dict) or not isinstance(data.get("proxies"), list):
            raise UpstreamError("control plane: /api/v1/sync answered something unexpected")
        return data

    async def proxies(self) -> list[ProxyRow]:
        """Every sidecar the mesh record or the control plane knows, with its sync state."""
        record = self.record()
        rows: dict[str, ProxyRow] = {}
        for p in record.proxies if record else ():
            rows[p.node] = ProxyRow(p.node, p.workload, p.namespace, admin=p.admin)
        try:
            syncz = await self._cp_json("/debug/syncz")
        except UpstreamError:
            return [ProxyRow(r.node, r.workload, r.namespace, state="UNKNOWN", admin=r.admin) for r in rows.values()]
        for s in syncz if isinstance(syncz, list) else ():
            node = str(s.get("proxy", ""))
            known = rows.get(node)
            rows[node] = ProxyRow(
                node,
                str(s.get("workload", known.workload if known else node)),
                str(s.get("namespace", known.namespace if known else "")),
                state=str(s.get("state", "UNKNOWN")),
                connected=bool(s.get("connected", False)),
                version_acked=str(s.get("versionAcked", "")),
                since_last_ack=s.get("sinceLastAck"),
                nack_reason=str(s.get("nackReason", "")),
                admin=known.admin if known else None,
            )
        return sorted(rows.values(), key=lambda r: (r.namespace, r.node))

    async def validated(self) -> tuple[list[dict[str, Any]], Validated]:
        generation, resources = await self.resources()
        topology = self.topology()
        key = (self.control_plane(), generation, id(topology))
        if self._validated is None or self._validated[0] != key:
            validated = await asyncio.get_running_loop().run_in_executor(None, validate, resources, topology)
            self._validated = (key, validated)
        return resources, self._validated[1]

    async def admin(self, proxy: ProxyRow, path: str) -> Any:
        if not proxy.admin:
            raise UpstreamError(f"{proxy.node}: no admin URL in the mesh record")
        try:
            return await get_json(self.session, join(proxy.admin, path))
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise UpstreamError(f"{proxy.node} admin {proxy.admin}: {describe_error(exc)}") from None

    async def endpoints(self, proxies: list[ProxyRow]) -> dict[str, list[dict[str, str]]]:
        """service FQDN -> endpoint addresses, as a sidecar sees them (the ingress gateway's /clusters)."""
        gateway = next((p for p in proxies if p.admin and p.namespace == "istio-system"), None)
        gateway = gateway or next((p for p in proxies if p.admin), None)
        if gateway is None:
            return {}
        try:
            data = await self.admin(gateway, "/clusters?format=json")
        except UpstreamError:
            return {}
        out: dict[str, list[dict[str, str]]] = {}
        for cluster in data.get("cluster_statuses") or () if isinstance(data, dict) else ():
            name = str(cluster.get("name", ""))
            parts = name.split("|")
            if len(parts) != 4 or parts[0] != "outbound" or parts[2]:
                continue
            for host in cluster.get("host_statuses") or ():
                address = (host.get("address") or {}).get("socket_address") or {}
                entry = {
                    "address": f"{address.get('address')}:{address.get('port_value')}",
                    "workload": str(host.get("workload", "")),
                }
                if entry not in out.setdefault(parts[3], []):
                    out[parts[3]].append(entry)
        return out
