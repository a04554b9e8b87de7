"""One finished request as telemetry reads it: metrics, span and access log from one record.

`RequestRecord` is a base class, not a Protocol: the data path's Exchange is one (it fills these
fields as the request goes), so a request builds no record of its own, and compiled, the access
log, the span builder and `Telemetry.finish` read its fields directly. A CONNECT tunnel is one too
(tunnel.py: Envoy's TCP proxy fields, the request's left empty). A plain RequestRecord is for
everything else (tests). Field names follow Envoy's access-log operators
(docs/reference/istio-semantics.md §3.3); an empty string prints as `-`.
"""

from __future__ import annotations

from sandbox.proxy.metrics import Edge
from sandbox.proxy.tracecontext import TraceContext


class RequestRecord:
    # Class-level defaults: a request sets only what differs, at tens of thousands a second.
    start_time: float = 0.0  # wall clock, seconds since the epoch (START_TIME, span timestamp)
    method: str = ""
    path: str = ""  # as the client sent it, before any rewrite (X-ENVOY-ORIGINAL-PATH?:PATH)
    protocol: str = "HTTP/1.1"
    authority: str = ""
    request_id: str = ""
    user_agent: str = ""
    x_forwarded_for: str = ""
    scheme: str = "http"
    # outcome
    duration: float = 0.0  # seconds, first byte in to last byte out (DURATION)
    response_code: int = 0  # 0: no response was sent
    response_flags: str = ""  # e.g. "UF,URX"
    response_code_details: str = ""  # e.g. via_upstream, route_not_found
    connection_termination_details: str = ""
    upstream_transport_failure_reason: str = ""
    grpc_status: str = ""  # empty for non-gRPC
    bytes_received: int = 0  # request body bytes
    bytes_sent: int = 0  # response body bytes
    upstream_service_time: int = -1  # whole milliseconds (x-envoy-upstream-service-time); -1: none
    # where it went
    upstream_host: str = ""
    upstream_cluster: str = ""
    upstream_local_address: str = ""
    downstream_local_address: str = ""
    downstream_remote_address: str = ""
    requested_server_name: str = ""
    route_name: str = ""
    operation: str = ""  # span name, e.g. reviews.default.svc.cluster.local:9080/*
    # who: metric labels; and the trace this hop belongs to (None: tracing off)
    edge: Edge | None = None
    trace: TraceContext | None = None
    span_tags: tuple[tuple[str, str], ...] = ()  # the Telemetry API's custom tags read from request headers

    def __init__(self, start_time: float = 0.0) -> None:
        # (The Exchange has its own __init__ and sets its fields as the request goes.)
        self.start_time = start_time

    def detached(self) -> RequestRecord:
        """A plain copy, for whatever keeps records a while (the span queue): an Exchange drags its
        connection, head and buffers along, and hundreds alive make the cyclic GC run more often."""
        copy = RequestRecord()
        copy.start_time = self.start_time
        copy.method = self.method
        copy.path = self.path
        copy.protocol = self.protocol
        copy.authority = self.authority
        copy.request_id = self.request_id
        copy.user_agent = self.user_agent
        copy.x_forwarded_for = self.x_forwarded_for
        copy.scheme = self.scheme
        copy.duration = self.duration
        copy.response_code = self.response_code
        copy.response_flags = self.response_flags
        copy.response_code_details = self.response_code_details
        copy.connection_termination_details = self.connection_termination_details
        copy.upstream_transport_failure_reason = self.upstream_transport_failure_reason
        copy.grpc_status = self.grpc_status
        copy.bytes_received = self.bytes_received
        copy.bytes_sent = self.bytes_sent
        copy.upstream_service_time = self.upstream_service_time
        copy.upstream_host = self.upstream_host
        copy.upstream_cluster = self.upstream_cluster
        copy.upstream_local_address = self.upstream_local_address
        copy.downstream_local_address = self.downstream_local_address
        copy.downstream_remote_address = self.downstream_remote_address
        copy.requested_server_name = self.requested_server_name
        copy.route_name = self.route_name
        copy.operation = self.operation
        copy.edge = self.edge
        copy.trace = self.trace
        copy.span_tags = self.span_tags
        return copy


def record(start_time: float, **fields: object) -> RequestRecord:
    """A RequestRecord with the given fields (tests, and telemetry outside the data path).
    (No default for `start_time`: mypyc cannot compile a default before **kwargs.)"""
    rec = RequestRecord(start_time)
    for name, value in fields.items():
        if not hasattr(RequestRecord, name):
            raise TypeError(f"RequestRecord has no field {name!r}")
        setattr(rec, name, value)
    return rec
