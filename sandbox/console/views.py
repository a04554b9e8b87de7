"""The overview's view data: one JSON-ready dict that `/api/status` returns and the page renders.

Workloads come from the Compose file when the console knows it (so a workload whose sidecar never
connected still shows), proxies from the mesh record and from the control plane's /debug/syncz.
A proxy's badge is its sync state as the control plane reports it (SYNCED, STALE, NACK,
DISCONNECTED); a proxy the record or the Compose file expects but the control plane has never
seen is DISCONNECTED, and every proxy is UNKNOWN while the control plane cannot be reached. A
workload shows its worst proxy.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sandbox.console.jaeger import TraceSummary
from sandbox.console.mesh import ControlPlaneReport, Probe
from sandbox.mesh.names import node_name
from sandbox.runtime.project import URL_KEYS, MeshRecord

# Worst first when a workload has several proxies.
SEVERITY = {"NACK": 5, "DISCONNECTED": 4, "UNKNOWN": 3, "STALE": 2, "SYNCED": 1, "NO SIDECAR": 0}


@dataclass(frozen=True)
class WorkloadInfo:
    """What the Compose file says about a workload (mesh.topology.Workload, flattened)."""

    name: str
    app: str
    version: str
    namespace: str
    replicas: int = 1
    inject: bool = True


def _proxy_row(node: str, workload: str, namespace: str) -> dict[str, Any]:
    return {
        "node": node,
        "workload": workload,
        "namespace": namespace,
        "state": "DISCONNECTED",
        "connected": False,
        "versionAcked": "",
        "sinceLastAck": None,
        "nackReason": "",
        "admin": None,
    }


def workloads_view(
    topology: Sequence[WorkloadInfo], record: MeshRecord | None, control_plane: ControlPlaneReport
) -> list[dict[str, Any]]:
    proxies: dict[str, dict[str, Any]] = {}
    workloads: dict[str, dict[str, Any]] = {}
    for w in topology:
        workloads[w.name] = {"name": w.name, "app": w.app, "version": w.version, "namespace": w.namespace}
        if w.inject:
            for replica in range(w.replicas):
                node = node_name(w.name, replica, w.replicas)
                proxies[node] = _proxy_row(node, w.name, w.namespace)
    for p in record.proxies if record else ():
        row = proxies.setdefault(p.node, _proxy_row(p.node, p.workload, p.namespace))
        row["admin"] = p.admin
    for synced in control_plane.proxies:
        node = str(synced.get("proxy", ""))
        row = proxies.setdefault(
            node, _proxy_row(node, str(synced.get("workload", node)), str(synced.get("namespace", "")))
        )
        row.update(
            state=str(synced.get("state", "UNKNOWN")),
            connected=bool(synced.get("connected", False)),
            versionAcked=str(synced.get("versionAcked", "")),
            sinceLastAck=synced.get("sinceLastAck"),
            nackReason=str(synced.get("nackReason", "")),
        )
    if not control_plane.reachable:
        for row in proxies.values():
            row["state"] = "UNKNOWN"
    for row in proxies.values():
        workloads.setdefault(
            row["workload"], {"name": row["workload"], "app": "", "version": "", "namespace": row["namespace"]}
        )
    out = []
    for name in sorted(workloads, key=lambda n: (workloads[n]["namespace"], n)):
        rows = sorted((p for p in proxies.values() if p["workload"] == name), key=lambda p: p["node"])
        state = max((p["state"] for p in rows), key=lambda s: SEVERITY.get(s, 3), default="NO SIDECAR")
        out.append({**workloads[name], "state": state, "proxies": rows})
    return out


def expected_nodes(topology: Any) -> list[str]:
    """Every sidecar a Compose topology runs (one per replica of a workload with a sidecar, and the
    gateways): what a mesh is in sync with when it has no record to list them."""
    return [
        node_name(w.name, replica, w.replicas)
        for w in topology.workloads
        if w.inject or w.builtin
        for replica in range(w.replicas)
    ]


def _count_states(workloads: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    counts = {state: 0 for state in SEVERITY if state != "NO SIDECAR"}
    for w in workloads:
        for p in w["proxies"]:
            counts[p["state"]] = counts.get(p["state"], 0) + 1
    return counts


def trace_link(summary: TraceSummary, tracing: Mapping[str, Any], jaeger_ui: str | None) -> str:
    """Where a trace row points: the Jaeger UI when one runs, else our own trace page."""
    if tracing.get("mode") == "jaeger" and jaeger_ui:
        return f"{jaeger_ui.rstrip('/')}/trace/{summary.trace_id}"
    return f"/console/traces/{summary.trace_id}"


def overview(
    *,
    now: float,
    record: MeshRecord | None,
    compose_file: str | None,
    topology: Sequence[WorkloadInfo],
    control_plane: ControlPlaneReport,
    prometheus: Probe,
    tracing: Mapping[str, Any],
    traces: Sequence[TraceSummary],
    traces_error: str | None,
    console_url: str,
) -> dict[str, Any]:
    # Links: the record's URLs (as seen from the host, what `sandbox up` prints) win over the ones
    # the console itself reads from, which in Compose are container names a browser cannot reach.
    ours = {
        "console": console_url,
        "prometheus": prometheus.url,
        "tracing": tracing.get("url") if tracing.get("mode") == "jaeger" else None,
    }
    theirs = record.urls if record is not None else {}
    urls: dict[str, str | None] = {key: theirs.get(key) or ours.get(key) for key in URL_KEYS}
    workloads = workloads_view(topology, record, control_plane)
    return {
        "generatedAt": dt.datetime.fromtimestamp(now, dt.UTC).isoformat(timespec="seconds"),
        "project": record.project if record else None,
        "runtime": record.runtime if record else None,
        "composeFile": record.compose_file if record else compose_file,
        "startedAt": record.started_at if record and record.started_at else None,
        "urls": urls,
        "controlPlane": control_plane.to_json(),
        "prometheus": prometheus.to_json(),
        "tracing": {**tracing, "error": tracing.get("error") or traces_error},
        "workloads": workloads,
        "proxyStates": _count_states(workloads),
        "recentTraces": [{**t.to_json(), "link": trace_link(t, tracing, urls["tracing"])} for t in traces],
    }


def format_duration(microseconds: int | float | None) -> str:
    """2.41ms, 153µs, 1.20s, 2m03s: what a person reads at a glance."""
    if microseconds is None:
        return "-"
    us = float(microseconds)
    if us < 1_000:
        return f"{us:.0f}µs"
    if us < 1_000_000:
        return f"{us / 1_000:.2f}ms"
    if us < 60_000_000:
        return f"{us / 1_000_000:.2f}s"
    minutes, seconds = divmod(int(us // 1_000_000), 60)
    return f"{minutes}m{seconds:02d}s"


def format_age(start_us: int | float, now: float) -> str:
    """How long ago, coarse: 4s ago, 3m ago, 2h ago, 5d ago."""
    seconds = max(0, int(now - start_us / 1_000_000))
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


SPAN_DETAIL_TAGS = ("http.method", "http.url", "upstream_cluster", "response_flags", "peer.address")


def _node(node_id: Any) -> tuple[str, str] | None:
    """(proxy node, namespace) from Istio's node id `sidecar~IP~<node>.<namespace>~<domain>`."""
    parts = str(node_id or "").split("~")
    if len(parts) != 4 or "." not in parts[2]:
        return None
    node, _, namespace = parts[2].rpartition(".")
    return node, namespace


def trace_view(trace: Mapping[str, Any]) -> dict[str, Any]:
    """A Jaeger JSON trace -> the trace page's rows: spans depth-first under their parents, each
    with its offset and width as a share of the whole trace (the waterfall)."""
    spans: list[Mapping[str, Any]] = list(trace.get("spans") or ())
    processes: Mapping[str, Any] = trace.get("processes") or {}
    ids = {s["spanID"] for s in spans}
    children: dict[str | None, list[Mapping[str, Any]]] = {}
    for span in spans:
        parent = next((r["spanID"] for r in span.get("references") or () if r.get("refType") == "CHILD_OF"), None)
        children.setdefault(parent if parent in ids else None, []).append(span)
    start = min((int(s["startTime"]) for s in spans), default=0)
    end = max((int(s["startTime"]) + int(s["duration"]) for s in spans), default=0)
    total = max(1, end - start)
    rows: list[dict[str, Any]] = []

    seen: set[int] = set()

    def walk(parent: str | None, depth: int) -> None:
        for span in sorted(children.get(parent, ()), key=lambda s: int(s["startTime"])):
            if id(span) in seen:  # a reference cycle in bad input
                continue
            seen.add(id(span))
            tags = {t["key"]: t["value"] for t in span.get("tags") or ()}
            status = tags.get("http.status_code")
            rows.append(
                {
                    "spanID": span["spanID"],
                    "depth": depth,
                    "service": (processes.get(span.get("processID", "")) or {}).get("serviceName", ""),
                    "operation": span.get("operationName", ""),
                    "kind": tags.get("span.kind", ""),
                    "offset": int(span["startTime"]) - start,
                    "duration": int(span["duration"]),
                    "left": round(100 * (int(span["startTime"]) - start) / total, 2),
                    "width": max(0.5, round(100 * int(span["duration"]) / total, 2)),
                    "statusCode": int(str(status)) if str(status).isdigit() else None,
                    "error": tags.get("error") in (True, "true"),
                    "details": [(k, tags[k]) for k in SPAN_DETAIL_TAGS if k in tags],
                    "node": _node(tags.get("node_id")),
                }
            )
            walk(span["spanID"], depth + 1)

    walk(None, 0)
    for span in spans:  # spans only reachable through a cycle: shown flat at the end
        if id(span) not in seen:
            children[f"orphan-{id(span)}"] = [span]
            walk(f"orphan-{id(span)}", 0)
    return {"traceID": trace.get("traceID", ""), "startTime": start, "duration": end - start, "spans": rows}
