"""PromQL over HTTP: Prometheus' /api/v1/query and /api/v1/query_range, as Kiali's client calls them.

Answers are read into plain tuples (labels, value) or (labels, [(t, v)...]); NaN and Inf values,
which histogram_quantile returns for empty buckets, are dropped as Kiali drops them. A query that
fails raises PromError with Prometheus' own message (or why it could not be reached).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from sandbox.console.mesh import describe_error

QUERY_TIMEOUT = 10.0  # seconds: a big mesh's histogram query takes longer than the console's 2 s for the rest
Labels = Mapping[str, str]
Sample = tuple[Labels, float]
Series = tuple[Labels, list[tuple[float, float]]]


class PromError(Exception):
    """Prometheus answered an error, or could not be reached (the message says which)."""


def _number(text: Any) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def parse_vector(data: Any) -> list[Sample]:
    """A /api/v1/query answer of resultType vector -> [(labels, value)]."""
    result = _result(data, "vector")
    out: list[Sample] = []
    for item in result:
        value = _number((item.get("value") or (None, None))[1])
        if value is not None:
            out.append((item.get("metric") or {}, value))
    return out


def parse_matrix(data: Any) -> list[Series]:
    """A /api/v1/query_range answer (resultType matrix) -> [(labels, [(t, v)])]."""
    out: list[Series] = []
    for item in _result(data, "matrix"):
        points = []
        for t, v in item.get("values") or ():
            value = _number(v)
            if value is not None:
                points.append((float(t), value))
        out.append((dict(item.get("metric") or {}), points))
    return out


def _result(data: Any, kind: str) -> list[dict[str, Any]]:
    if not isinstance(data, dict):
        raise PromError("Prometheus answered something that is not its JSON")
    if data.get("status") != "success":
        raise PromError(f"Prometheus: {data.get('errorType', 'error')}: {data.get('error', 'unknown error')}")
    body = data.get("data") or {}
    if body.get("resultType") != kind:
        raise PromError(f"Prometheus answered a {body.get('resultType')!r}, not a {kind}")
    return [r for r in body.get("result") or () if isinstance(r, dict)]


@dataclass
class Prometheus:
    """One Prometheus base URL, queried through the console's session."""

    base: str
    session: aiohttp.ClientSession

    async def query(self, promql: str, at: float | None = None) -> list[Sample]:
        params = {"query": promql}
        if at is not None:
            params["time"] = f"{at:.3f}"
        return parse_vector(await self._post("/api/v1/query", params))

    async def query_range(self, promql: str, start: float, end: float, step: float) -> list[Series]:
        params = {"query": promql, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
        return parse_matrix(await self._post("/api/v1/query_range", params))

    async def _post(self, path: str, params: dict[str, str]) -> Any:
        # POST with a form body, as Prometheus' own clients do for long queries
        try:
            timeout = aiohttp.ClientTimeout(total=QUERY_TIMEOUT)
            async with self.session.post(self.base.rstrip("/") + path, data=params, timeout=timeout) as resp:
                data = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise PromError(f"Prometheus at {self.base}: {describe_error(exc)}") from None
        return data
