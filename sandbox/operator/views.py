"""What the operator verbs print, from the JSON the control plane and the sidecars serve. Pure.

Tables follow kubectl and istioctl: upper-case headers, two spaces between columns, ages like
`45s`, `3m20s`, `5h`.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Sequence
from typing import Any

from sandbox.control.proxyconfig import table
from sandbox.mesh.yamlsrc import dump_all_yaml, dump_yaml

OUTPUTS = ("table", "yaml", "json")


def age(seconds: float | None) -> str:
    """kubectl's HumanDuration, abridged."""
    if seconds is None:
        return "<none>"
    s = max(0, int(seconds))
    if s < 120:
        return f"{s}s"
    m = s // 60
    if m < 10:
        return f"{m}m{s % 60}s" if s % 60 else f"{m}m"
    h = m // 60
    if h < 3:
        return f"{m}m"
    if h < 8:
        return f"{h}h{m % 60}m" if m % 60 else f"{h}h"
    d = h // 24
    if h < 48:
        return f"{h}h"
    if d < 8:
        return f"{d}d{h % 24}h" if h % 24 else f"{d}d"
    return f"{d}d"


def _where(file: str, line: int, cwd: str | None) -> str:
    if cwd is not None:
        try:
            rel = os.path.relpath(file, cwd)
        except ValueError:  # another drive (Windows)
            rel = file
        if not rel.startswith(".."):
            file = rel
    return f"{file}:{line}"


def resources_output(resources: Sequence[dict[str, Any]], fmt: str, now: float, cwd: str | None = None) -> str:
    """`sandbox get`: a table, or the manifests (one object for one resource, else a List / a stream)."""
    if fmt == "table":
        rows = [
            [
                r["name"],
                r["namespace"],
                age(now - r["applied"] if r.get("applied") is not None else None),
                _where(r["file"], r["line"], cwd),
            ]
            for r in resources
        ]
        return table(["NAME", "NAMESPACE", "AGE", "FILE"], rows)
    manifests = [r["manifest"] for r in resources]
    if fmt == "json":
        data: Any = manifests[0] if len(manifests) == 1 else {"apiVersion": "v1", "kind": "List", "items": manifests}
        return json.dumps(data, indent=2)
    if fmt == "yaml":
        return (dump_yaml(manifests[0]) if len(manifests) == 1 else dump_all_yaml(manifests)).rstrip("\n")
    raise ValueError(f"unknown output {fmt!r} (one of {', '.join(OUTPUTS)})")


def proxy_status_table(proxies: Sequence[dict[str, Any]], expected: Sequence[tuple[str, str, str]] = ()) -> str:
    """Like `istioctl proxy-status`: one line per sidecar, its sync state, the mTLS mode its inbound
    listener enforces (the PeerAuthentication in force for its port: STRICT, PERMISSIVE, DISABLE;
    "-" for a gateway) and the version it runs. `expected` (node, workload, namespace) are the
    mesh's sidecars: one that never connected shows too."""
    rows = []
    seen = {p["proxy"] for p in proxies}
    for node, workload, namespace in expected:
        if node not in seen:
            rows.append([f"{node}.{namespace}", workload, "DISCONNECTED", "-", "-", "never", "never connected"])
    for p in proxies:
        state = p["state"]
        reason = ""
        if state == "NACK":
            reason = f"rejected {p['nackVersion']}: {p['nackReason']}"
        elif state == "STALE":
            reason = f"sent {p['versionSent'] or '-'}, waiting for its ACK" if p["versionSent"] else "nothing sent yet"
        elif state == "DISCONNECTED":
            reason = "not connected (keeps serving its last config)"
        last = p.get("sinceLastAck")
        rows.append(
            [
                f"{p['proxy']}.{p['namespace']}",
                p["workload"],
                state,
                p.get("mtls") or "-",
                p["versionAcked"] or "-",
                f"{age(last)} ago" if last is not None else "never",
                reason,
            ]
        )
    return table(["NAME", "WORKLOAD", "STATUS", "MTLS", "VERSION", "LAST ACK", "REASON"], rows)


def not_synced(sync: dict[str, Any], expected: Sequence[str] = ()) -> list[str]:
    """What keeps the mesh from being in sync: changes on disk not applied yet, connected proxies
    that have not ACKed the current config, and expected proxies that are not connected."""
    problems = [f"pending: {name} (changed on disk, not applied yet)" for name in sync.get("pending", [])]
    connected = set()
    for p in sync.get("proxies", []):
        if not p["connected"]:
            continue
        connected.add(p["proxy"])
        if p["state"] == "SYNCED":
            continue
        if p["state"] == "NACK":
            problems.append(f"{p['proxy']}: NACK of {p['nackVersion']}: {p['nackReason']}")
        else:
            problems.append(
                f"{p['proxy']}: STALE (current {p['versionCurrent'] or '-'}, acked {p['versionAcked'] or '-'})"
            )
    problems += [f"{node}: not connected to the control plane" for node in expected if node not in connected]
    return problems


def secrets_table(certs: dict[str, Any], now_iso: str | None = None) -> str:
    """`proxy-config secrets`: istioctl's columns plus the SPIFFE ID, from the sidecar's /certs: the
    workload certificate in use (`default`), the mesh root it trusts (`ROOTCA`) and the root's
    SHA-256 fingerprint. Never a key (the endpoint has none)."""
    now = _instant(now_iso) if now_iso else None
    rows, fingerprints = [], []
    for entry in certs.get("certificates", []):
        kinds = (("cert_chain", entry.get("name", "default"), "Cert Chain"), ("ca_cert", "ROOTCA", "CA"))
        for key, default_name, kind in kinds:
            for cert in entry.get(key, []):
                sans = ", ".join(v for s in cert.get("subject_alt_names", []) for v in s.values()) or "-"
                start, end = _instant(cert.get("valid_from", "")), _instant(cert.get("expiration_time", ""))
                valid = now is None or (start is not None and end is not None and start <= now <= end)
                name = cert.get("name", default_name)
                rows.append(
                    [
                        name,
                        kind,
                        "ACTIVE",
                        "true" if valid else "false",
                        cert.get("serial_number", "") or "-",
                        sans,
                        cert.get("expiration_time", "") or "-",
                        cert.get("valid_from", "") or "-",
                    ]
                )
                if cert.get("sha256_fingerprint"):
                    fingerprints.append(f"{name} SHA-256 fingerprint: {cert['sha256_fingerprint']}")
    if not rows:
        return "no workload certificate yet (a sidecar started from a snapshot file has none)"
    header = ["RESOURCE NAME", "TYPE", "STATUS", "VALID CERT", "SERIAL NUMBER", "SPIFFE ID", "NOT AFTER", "NOT BEFORE"]
    return "\n".join([table(header, rows), *fingerprints])


def _instant(text: str) -> dt.datetime | None:
    """An ISO 8601 time (Envoy's `Z` or an offset; none means UTC), None when unreadable."""
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def live_endpoints_table(clusters: dict[str, Any]) -> str:
    """`proxy-config endpoints` from a live sidecar's /clusters?format=json: health as it sees it."""
    rows = []
    for c in clusters.get("cluster_statuses", []):
        for h in c.get("host_statuses", []):
            address = h["address"]["socket_address"]
            ejected = h.get("health_status", {}).get("failed_outlier_check", False)
            rows.append(
                [
                    f"{address['address']}:{address['port_value']}",
                    "HEALTHY",
                    "FAILED" if ejected else "OK",
                    c["name"],
                    h.get("workload", ""),
                ]
            )
    return table(["ENDPOINT", "STATUS", "OUTLIER CHECK", "CLUSTER", "WORKLOAD"], rows)
