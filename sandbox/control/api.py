"""The control plane's read API over the live store (what `sandbox get`, `wait` and the console read).

  GET /api/v1/resources[?kind=vs&namespace=default&name=reviews]
      the resources in force (the last good version of every file), each with its manifest
      (apiVersion, kind, metadata, spec as YAML would write it), file, line and when its file
      was last applied; `kind` takes short names and plurals like kubectl
  GET /api/v1/files   each watched file's state (ok / rejected) and diagnostics, plus the
                      Compose file's and the endpoints file's
  GET /api/v1/sync    {synced, pending (changes on disk not applied yet), proxies (as
                      /debug/syncz), rejected files}: `sandbox wait --synced` polls it
  GET /debug/syncz    (served by server.py) each proxy's sync state, and the mTLS mode its
                      inbound listener enforces (`mtls`: STRICT, PERMISSIVE, DISABLE or "-",
                      `mtlsPolicy`: the PeerAuthentication that decided it) for proxy-status

Views are pure functions of the store and push state; the handlers only serialise them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from aiohttp import web

from sandbox.control.push import SyncState
from sandbox.control.store import FileState, FileStatus
from sandbox.mesh.legacy.common import document
from sandbox.mesh.peerauth import inbound_mode
from sandbox.mesh.resources import Resource, lookup_kind

if TYPE_CHECKING:
    from sandbox.control.plane import ControlPlane

PREFIX = "/api/v1"


class BadQuery(ValueError):
    """A query parameter the API cannot answer (the message says which)."""


def resource_json(resource: Resource[Any], applied: float | None) -> dict[str, Any]:
    return {
        "kind": resource.kind,
        "apiVersion": resource.api_version,
        "namespace": resource.namespace,
        "name": resource.name,
        "file": resource.origin.file,
        "line": resource.origin.line,
        "applied": applied,
        "manifest": document(resource),
    }


def select_resources(
    resources: Iterable[Resource[Any]],
    applied: Mapping[str, float | None],
    kind: str | None = None,
    namespace: str | None = None,
    name: str | None = None,
) -> list[dict[str, Any]]:
    """Resources matching every given filter, by kind, namespace and name."""
    wanted_kind = None
    if kind:
        info = lookup_kind(kind)
        if info is None:
            raise BadQuery(f"unknown kind {kind!r}")
        wanted_kind = info.kind
    found = [
        r
        for r in resources
        if (wanted_kind is None or r.kind == wanted_kind)
        and (not namespace or r.namespace == namespace)
        and (not name or r.name == name)
    ]
    found.sort(key=lambda r: (r.kind, r.namespace, r.name))
    return [resource_json(r, applied.get(r.origin.file)) for r in found]


def status_json(status: FileStatus) -> dict[str, Any]:
    return {
        "file": status.file,
        "state": status.state.value,
        "lastGood": status.last_good,
        "changed": status.changed,
        "resources": list(status.resources),
        "diagnostics": [d.to_data() for d in status.diagnostics],
    }


def files_json(plane: ControlPlane) -> dict[str, Any]:
    endpoints = plane.endpoints_status
    return {
        "generation": plane.store.generation,
        "files": [status_json(s) for s in plane.store.statuses.values()],
        "compose": status_json(plane.store.topology_status),
        "endpoints": status_json(endpoints) if endpoints is not None else None,
    }


def proxies_json(plane: ControlPlane) -> list[dict[str, Any]]:
    """/debug/syncz: the push server's per-proxy state, with the mTLS mode each sidecar enforces
    on its inbound port under the config in force."""
    state = plane.store.state
    rows = plane.push.sync_status()
    for row in rows:
        workload = state.topology.workload(row["workload"])
        mode = inbound_mode(state, workload) if workload is not None else None
        row["mtls"] = mode.mode.value if mode is not None else "-"
        row["mtlsPolicy"] = mode.source if mode is not None else ""
    return rows


def sync_json(plane: ControlPlane) -> dict[str, Any]:
    pending = plane.watcher.pending
    proxies = plane.push.sync_status()
    connected = [p for p in proxies if p["connected"]]
    rejected = [s.file for s in plane.store.statuses.values() if s.state is FileState.REJECTED]
    return {
        "generation": plane.store.generation,
        "synced": not pending and all(p["state"] == SyncState.SYNCED.value for p in connected),
        "pending": pending,
        "rejected": rejected,
        "proxies": proxies,
    }


def add_routes(app: web.Application, plane: ControlPlane) -> None:
    async def resources(request: web.Request) -> web.Response:
        q = request.query
        applied = {name: status.last_good for name, status in plane.store.statuses.items()}
        try:
            found = select_resources(
                plane.store.state.resources, applied, q.get("kind"), q.get("namespace"), q.get("name")
            )
        except BadQuery as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"generation": plane.store.generation, "resources": found})

    async def files(_request: web.Request) -> web.Response:
        return web.json_response(files_json(plane))

    async def sync(_request: web.Request) -> web.Response:
        return web.json_response(sync_json(plane))

    app.router.add_get(f"{PREFIX}/resources", resources)
    app.router.add_get(f"{PREFIX}/files", files)
    app.router.add_get(f"{PREFIX}/sync", sync)
