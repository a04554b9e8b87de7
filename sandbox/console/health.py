"""Health as Kiali computes it (business/health_calculator.go, config AddHealthDefault;
docs/reference/kiali-console.md §4). Pure.

Request health: for each direction (inbound, outbound), protocol and tolerance whose code, protocol
and direction patterns match, the error ratio is the matching requests over all requests of that
protocol, in percent; 0 is Healthy, at least `failure` is Failure, at least `degraded` is Degraded.
The worst result wins. No traffic at all is NA ("No health information").

Workload health is the worse of its request health and its replicas' status; app health the worst
of its request health and every workload's status; service health is request health alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

HEALTHY, DEGRADED, FAILURE, NOT_READY, NA = "Healthy", "Degraded", "Failure", "Not Ready", "NA"
PRIORITY = {FAILURE: 4, DEGRADED: 3, NOT_READY: 2, HEALTHY: 1, NA: 0}

# Requests[direction][protocol][code] = rate (Kiali's RequestHealth maps)
Rates = Mapping[str, Mapping[str, float]]


@dataclass(frozen=True, eq=False)  # hashed by identity: a cache key thousands of times per graph
class Tolerance:
    code: str  # a regex; X/x stands for a digit (Kiali's compileCodePattern)
    protocol: str
    direction: str = ".*"
    degraded: float = 0.0
    failure: float = 0.0


DEFAULT_TOLERANCES = (
    Tolerance("5XX", "http", failure=10),
    Tolerance("4XX", "http", degraded=10, failure=20),
    Tolerance("^[1-9]$|^1[0-6]$", "grpc", failure=10),
    Tolerance("^-$", "http|grpc", failure=10),
)


@lru_cache(maxsize=64)
def _pattern(text: str) -> re.Pattern[str]:
    return re.compile(text.replace("X", r"\d").replace("x", r"\d"))


@lru_cache(maxsize=4096)
def _matches(pattern: str, value: str) -> bool:
    """Go's MatchString (unanchored), remembered: a graph asks the same few codes thousands of times."""
    return _pattern(pattern).search(value) is not None


def worst(statuses: Iterable[str]) -> str:
    return max(statuses, key=lambda s: PRIORITY[s], default=NA)


def ratio_status(ratio: float, tolerance: Tolerance) -> str:
    if ratio <= 0:
        return HEALTHY
    if ratio >= tolerance.failure:
        return FAILURE
    if ratio >= tolerance.degraded:
        return DEGRADED
    return HEALTHY


@lru_cache(maxsize=4096)
def _hits(tolerances: tuple[Tolerance, ...], direction: str, protocol: str, code: str) -> tuple[int, ...]:
    """Which tolerances count `code` of `protocol` requests in `direction` as errors."""
    return tuple(
        i
        for i, tol in enumerate(tolerances)
        if _matches(tol.protocol, protocol) and _matches(tol.direction, direction) and _matches(tol.code, code)
    )


def request_status(requests: Mapping[str, Rates], tolerances: tuple[Tolerance, ...] = DEFAULT_TOLERANCES) -> str:
    """`requests` = {"inbound": {protocol: {code: rate}}, "outbound": {...}}: the worst status."""
    worst_found = NA
    for direction in ("inbound", "outbound"):
        for protocol, codes in (requests.get(direction) or {}).items():
            total = sum(codes.values())
            if total <= 0:
                continue
            if worst_found == NA:
                worst_found = HEALTHY
            errors: dict[int, float] = {}
            for code, rate in codes.items():
                for i in _hits(tolerances, direction, protocol, code):
                    errors[i] = errors.get(i, 0.0) + rate
            for i, rate in errors.items():
                status = ratio_status(rate / total * 100, tolerances[i])
                if PRIORITY[status] > PRIORITY[worst_found]:
                    worst_found = status
    return worst_found


@dataclass(frozen=True)
class WorkloadStatus:
    """Kiali's WorkloadStatus: replicas wanted, running, ready, and sidecars in sync (-1: no sidecar)."""

    name: str
    desired: int
    current: int
    available: int
    synced: int

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "desiredReplicas": self.desired,
            "currentReplicas": self.current,
            "availableReplicas": self.available,
            "syncedProxies": self.synced,
        }

    def status(self) -> str:
        """Kiali's WorkloadStatus health."""
        if self.desired == 0:
            return NOT_READY
        if self.available == 0:
            return FAILURE
        if self.available < self.desired or self.current < self.desired:
            return DEGRADED
        if self.current != self.available:
            return FAILURE
        if 0 <= self.synced < self.desired:
            return DEGRADED
        return HEALTHY


def requests_json(requests: Mapping[str, Rates]) -> dict[str, Any]:
    return {
        "inbound": {p: dict(c) for p, c in (requests.get("inbound") or {}).items()},
        "outbound": {p: dict(c) for p, c in (requests.get("outbound") or {}).items()},
        "healthAnnotations": {},
    }


def app_health(requests: Mapping[str, Rates], workloads: Iterable[WorkloadStatus]) -> dict[str, Any]:
    statuses = list(workloads)
    status = worst([request_status(requests), *(w.status() for w in statuses)])
    return {
        "workloadStatuses": [w.to_json() for w in statuses],
        "requests": requests_json(requests),
        "status": {"status": status},
    }


def workload_health(requests: Mapping[str, Rates], workload: WorkloadStatus) -> dict[str, Any]:
    return {
        "workloadStatus": workload.to_json(),
        "requests": requests_json(requests),
        "status": {"status": worst([request_status(requests), workload.status()])},
    }


def service_health(requests: Mapping[str, Rates]) -> dict[str, Any]:
    return {"requests": requests_json(requests), "status": {"status": request_status(requests)}}


def edge_health(protocol: str, responses: Mapping[str, Mapping[str, Mapping[str, float]]], total: float) -> str:
    """An edge's status from its responses (Kiali's health appender: the source's outbound and the
    destination's inbound tolerances; with the defaults both are the same)."""
    if total <= 0 or protocol == "tcp":
        return NA
    codes = {code: sum(detail["flags"].values()) for code, detail in responses.items()}
    return request_status({"inbound": {protocol: codes}})


def node_health(requests: Mapping[str, Rates]) -> str:
    return request_status(requests)
