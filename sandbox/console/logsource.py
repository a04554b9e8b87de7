"""Where a workload's logs are: the local runtime's per-process files (.sandbox/logs/<node>.log
for the app, <node>.proxy.log for its sidecar). Reading only; logs.py merges them."""

from __future__ import annotations

from collections.abc import Sequence

from sandbox.console.logs import PROXY_CONTAINER
from sandbox.runtime.base import PROXY_SUFFIX
from sandbox.runtime.logfiles import tail
from sandbox.runtime.project import Project


def read_logs(project: Project | None, nodes: Sequence[str], lines: int) -> list[tuple[str, list[str]]]:
    """(container, last lines) per source: each node's app log and its sidecar's access log."""
    if project is None:
        return []
    out: list[tuple[str, list[str]]] = []
    for node in nodes:
        app = project.logs_dir / f"{node}.log"
        proxy = project.logs_dir / f"{node}{PROXY_SUFFIX}.log"
        if proxy.exists():
            out.append((node, tail(app, lines)))
            out.append((PROXY_CONTAINER, tail(proxy, lines)))
        else:  # the ingress gateway: the node is the proxy itself
            out.append((PROXY_CONTAINER, tail(app, lines)))
    return out
