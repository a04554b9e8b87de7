"""What telemetry reads of one finished request, for metrics, span and access log.

`LogRecord` is the read-only view the access log, the span builder and `Telemetry.finish` use.
The data path's `Exchange` is one itself (attributes and properties with these names), so a
request costs no record of its own: its values are read when the batched access log and spans
are formatted, off the request's path. `RequestRecord` is a plain one, for everything else
(TCP proxying, tests). Field names follow Envoy's access-log operators (istio-semantics.md §3.3);
`None` and "" print as `-`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from sandbox.proxy.metrics import Edge
from sandbox.proxy.tracecontext import TraceContext


@dataclass(slots=True, eq=False)
class RequestRecord:
    start_time: float  # wall clock, seconds since the epoch (START_TIME, span timestamp)
    method: str = "-"
    path: str = "-"  # as the client sent it, before any rewrite (X-ENVOY-ORIGINAL-PATH?:PATH)
    protocol: str = "HTTP/1.1"
    authority: str = "-"
    request_id: str = "-"
    user_agent: str | None = None
    x_forwarded_for: str | None = None
    scheme: str = "http"
    # outcome
    duration: float = 0.0  # seconds, first byte in to last byte out (DURATION)
    response_code: int = 0  # 0: no response was sent
    response_flags: str = "-"
    response_code_details: str | None = None
    connection_termination_details: str | None = None
    upstream_transport_failure_reason: str | None = None
    grpc_status: str = ""  # empty for non-gRPC
    bytes_received: int = 0  # request body bytes
    bytes_sent: int = 0  # response body bytes
    upstream_service_time: float | None = None  # seconds; x-envoy-upstream-service-time
    # where it went
    upstream_host: str | None = None
    upstream_cluster: str | None = None
    upstream_local_address: str | None = None
    downstream_local_address: str | None = None
    downstream_remote_address: str | None = None
    requested_server_name: str | None = None
    route_name: str | None = None
    operation: str = ""  # span name, e.g. reviews.default.svc.cluster.local:9080/*
    # who: metric labels; and the trace this hop belongs to (None: tracing off)
    edge: Edge | None = None
    trace: TraceContext | None = None


class LogRecord(Protocol):
    """The fields of RequestRecord, read-only (an Exchange provides some as properties)."""

    @property
    def start_time(self) -> float: ...
    @property
    def method(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def protocol(self) -> str: ...
    @property
    def authority(self) -> str: ...
    @property
    def request_id(self) -> str: ...
    @property
    def user_agent(self) -> str | None: ...
    @property
    def x_forwarded_for(self) -> str | None: ...
    @property
    def scheme(self) -> str: ...
    @property
    def duration(self) -> float: ...
    @property
    def response_code(self) -> int: ...
    @property
    def response_flags(self) -> str: ...
    @property
    def response_code_details(self) -> str | None: ...
    @property
    def connection_termination_details(self) -> str | None: ...
    @property
    def upstream_transport_failure_reason(self) -> str | None: ...
    @property
    def grpc_status(self) -> str: ...
    @property
    def bytes_received(self) -> int: ...
    @property
    def bytes_sent(self) -> int: ...
    @property
    def upstream_service_time(self) -> float | None: ...
    @property
    def upstream_host(self) -> str | None: ...
    @property
    def upstream_cluster(self) -> str | None: ...
    @property
    def upstream_local_address(self) -> str | None: ...
    @property
    def downstream_local_address(self) -> str | None: ...
    @property
    def downstream_remote_address(self) -> str | None: ...
    @property
    def requested_server_name(self) -> str | None: ...
    @property
    def route_name(self) -> str | None: ...
    @property
    def operation(self) -> str: ...
    @property
    def edge(self) -> Edge | None: ...
    @property
    def trace(self) -> TraceContext | None: ...


def detached(rec: LogRecord) -> RequestRecord:
    """`rec` as a self-contained RequestRecord (one that is already is returned as is).

    For whatever keeps records a while (the span queue): an Exchange drags its connection, head
    and buffers along, and hundreds of them alive make the cyclic GC run far more often."""
    if isinstance(rec, RequestRecord):
        return rec
    return RequestRecord(
        rec.start_time, rec.method, rec.path, rec.protocol, rec.authority, rec.request_id, rec.user_agent,
        rec.x_forwarded_for, rec.scheme, rec.duration, rec.response_code, rec.response_flags,
        rec.response_code_details, rec.connection_termination_details, rec.upstream_transport_failure_reason,
        rec.grpc_status, rec.bytes_received, rec.bytes_sent, rec.upstream_service_time, rec.upstream_host,
        rec.upstream_cluster, rec.upstream_local_address, rec.downstream_local_address,
        rec.downstream_remote_address, rec.requested_server_name, rec.route_name, rec.operation, rec.edge,
        rec.trace,
    )  # fmt: skip
