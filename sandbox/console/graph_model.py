"""The traffic graph's nodes and edges, as graph.py builds them and graph_appenders decorates them."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any


@dataclass
class Node:
    key: str  # Kiali's internal id, before hashing
    node_type: str  # app, workload, service, unknown
    cluster: str
    namespace: str
    workload: str = ""
    app: str = ""
    version: str = ""
    service: str = ""
    rates: dict[str, float] = field(default_factory=dict)
    dest_services: set[tuple[str, str]] = field(default_factory=set)  # (namespace, name)
    flags: dict[str, Any] = field(default_factory=dict)  # isRoot, isOutside, hasVS, ...

    @cached_property
    def id(self) -> str:
        return hashlib.sha256(self.key.encode()).hexdigest()


@dataclass
class Edge:
    source: Node
    dest: Node
    protocol: str
    rates: dict[str, float] = field(default_factory=dict)
    responses: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)  # code -> flags|hosts -> v
    mtls: float = 0.0  # rate of requests over mutual TLS
    response_time: float | None = None  # ms, the chosen quantile
