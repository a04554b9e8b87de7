"""Kiali's ServiceEntry checks: KIA1211 (same host and port twice) and KIA1212 (with different protocols)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sandbox.mesh.analysis.context import Context
from sandbox.mesh.resources import Resource


def check_multi_match(ctx: Context) -> None:
    claims: dict[tuple[str, int], list[tuple[Resource[Any], int, str]]] = defaultdict(list)
    for se in ctx.state.service_entries:
        for host in {h.strip().lower() for h in se.spec.hosts}:
            for p, port in enumerate(se.spec.ports):
                claims[(host, port.number)].append((se, p, (port.protocol or "").upper()))
    reported: set[tuple[tuple[str, str, str], int]] = set()
    for entries in claims.values():
        if len({se.key for se, _, _ in entries}) < 2:
            continue
        code = "KIA1211" if len({protocol for _, _, protocol in entries}) == 1 else "KIA1212"
        for se, p, _ in entries:
            if (se.key, p) not in reported:
                reported.add((se.key, p))
                ctx.report(se, code, f"spec/ports[{p}]")


CHECKERS = (check_multi_match,)
