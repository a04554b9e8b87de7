"""What the console reads over HTTP: the control plane's /ready and /debug/syncz, and probes of
the other components (Prometheus /-/ready). Every call is bounded by the session's timeout and
never raises: an unreachable component is a report with `reachable=False` and the reason.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from typing import Any

import aiohttp

DEFAULT_CONTROL_PLANE = "http://127.0.0.1:15010"


@dataclass(frozen=True)
class Probe:
    url: str | None
    reachable: bool = False
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"url": self.url, "reachable": self.reachable, "error": self.error}


@dataclass(frozen=True)
class ControlPlaneReport:
    url: str
    reachable: bool = False
    ready: bool = False
    proxies: tuple[dict[str, Any], ...] = field(default=())  # /debug/syncz rows, as the control plane wrote them
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "reachable": self.reachable,
            "ready": self.ready,
            "proxies": len(self.proxies),
            "error": self.error,
        }


def describe_error(exc: BaseException) -> str:
    """A short reason a person can act on (not a traceback)."""
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return "timed out"
    if isinstance(exc, aiohttp.ClientConnectorError):
        err = exc.os_error
        reason = os.strerror(err.errno) if err.errno else str(err)
        return f"cannot connect to {exc.host}:{exc.port}: {reason.lower()}"
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"HTTP {exc.status}"
    if isinstance(exc, aiohttp.ContentTypeError | ValueError):
        return "answered something that is not the expected JSON"
    return str(exc) or type(exc).__name__


def join(base: str, path: str) -> str:
    return base.rstrip("/") + path


async def get_json(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url) as resp:
        resp.raise_for_status()
        return await resp.json(content_type=None)


async def probe(session: aiohttp.ClientSession, base: str | None, path: str) -> Probe:
    """GET base+path; reachable when it answers 2xx."""
    if not base:
        return Probe(None)
    try:
        async with session.get(join(base, path)) as resp:
            resp.raise_for_status()
            await resp.read()
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        return Probe(base, False, describe_error(exc))
    return Probe(base, True)


async def read_control_plane(session: aiohttp.ClientSession, base: str) -> ControlPlaneReport:
    """/debug/syncz (per-proxy sync state) and /ready, fetched together."""
    ready, syncz = await asyncio.gather(
        probe(session, base, "/ready"), _syncz(session, join(base, "/debug/syncz")), return_exceptions=False
    )
    if isinstance(syncz, str):
        return ControlPlaneReport(base, reachable=ready.reachable, ready=ready.reachable, error=syncz)
    return ControlPlaneReport(base, reachable=True, ready=ready.reachable, proxies=syncz, error=ready.error)


async def _syncz(session: aiohttp.ClientSession, url: str) -> tuple[dict[str, Any], ...] | str:
    try:
        data = await get_json(session, url)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        return describe_error(exc)
    if not isinstance(data, list) or not all(isinstance(row, dict) for row in data):
        return "answered something that is not the expected JSON"
    return tuple(data)
