"""Readiness probes over loopback (stdlib only: the local supervisor process stays small)."""

from __future__ import annotations

import http.client
import json
import socket
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sandbox.runtime.supervisor import Probe


def check(probe: Probe, timeout: float = 0.5) -> bool:
    """One attempt: a TCP port accepting, or an HTTP GET answering 2xx."""
    try:
        if probe.kind == "tcp":
            with socket.create_connection((probe.host, probe.port), timeout=timeout):
                return True
        connection = http.client.HTTPConnection(probe.host, probe.port, timeout=timeout)
        try:
            connection.request("GET", probe.path, headers={"Connection": "close"})
            return 200 <= connection.getresponse().status < 300
        finally:
            connection.close()
    except (OSError, http.client.HTTPException):
        return False


def check_all(probes: dict[str, Probe], timeout: float = 0.5) -> dict[str, bool]:
    """Every probe at once (threads: a slow component does not delay the others)."""
    if not probes:
        return {}
    with ThreadPoolExecutor(max_workers=min(16, len(probes))) as pool:
        results = pool.map(lambda item: (item[0], check(item[1], timeout)), probes.items())
        return dict(results)


def get_json(url: str, timeout: float = 1.0) -> Any:
    """GET a JSON document over plain HTTP; None when it cannot be had."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        return None
    connection = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
    try:
        connection.request("GET", parts.path or "/")
        response = connection.getresponse()
        return json.loads(response.read()) if response.status == 200 else None
    except (OSError, http.client.HTTPException, ValueError):
        return None
    finally:
        connection.close()
