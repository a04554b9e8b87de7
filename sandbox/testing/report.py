"""What a failing test's report shows of the mesh: the access log lines each sidecar wrote while
the test ran (the sidecars involved are the ones that saw its traffic), and `proxy-status`.

Sidecars write their access log once a second (as Envoy flushes its own), so the report waits
until a flush has passed since the test ended before it reads them.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence

from sandbox.testing.errors import MeshError
from sandbox.testing.mesh import Mesh

LINES_PER_SIDECAR = 15
FLUSH_WAIT = 1.2  # seconds: the sidecar's access log flush interval (proxy/accesslog.py) and a margin


def logged_at(line: str) -> float | None:
    """The start time of an access log line, `[2026-12-03T10:11:53.078Z] "GET ...`, as a timestamp."""
    if not line.startswith("[") or "]" not in line:
        return None
    try:
        return dt.datetime.fromisoformat(line[1 : line.index("]")]).timestamp()
    except ValueError:
        return None


def during(lines: Sequence[str], since: float) -> list[str]:
    """The access log lines of requests that started at or after `since` (with a little slack for
    the clock's millisecond rounding)."""
    return [line for line in lines if (stamp := logged_at(line)) is not None and stamp >= since - 0.01]


def failure_section(mesh: Mesh, since: float, ended: float | None = None) -> str:
    wait = FLUSH_WAIT - (time.time() - (ended or time.time()))
    if wait > 0:
        time.sleep(wait)
    out = [
        f"mesh {mesh.record.project} ({mesh.record.runtime} runtime) from {mesh.source or mesh.compose_file}",
        f"ingress {mesh.ingress}; its working copy: {mesh.compose_file} (logs in .sandbox/logs beside it)",
    ]
    quiet = []
    for proxy in mesh.record.proxies:
        try:
            lines = during(mesh.logs(proxy.node, proxy=True, tail=500), since)
        except MeshError as exc:
            out.append(f"{proxy.node}: cannot read its log: {exc}")
            continue
        if not lines:
            quiet.append(proxy.node)
            continue
        shown = lines[-LINES_PER_SIDECAR:]
        more = f", the last {len(shown)}" if len(shown) < len(lines) else ""
        out.append(f"\n{proxy.node} sidecar: {len(lines)} access log line(s) during the test{more}")
        out += [f"  {line}" for line in shown]
    if quiet:
        out.append(f"\nno traffic during the test through: {', '.join(quiet)}")
    try:
        out += ["", "proxy-status:", str(mesh.proxy_status())]
    except MeshError as exc:
        out += ["", f"proxy-status: {exc}"]
    return "\n".join(out)
