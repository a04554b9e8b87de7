"""RequestRecord: what the data path writes down once per request, for metrics, span and access log.

The data path fills it as the request goes (cheap attribute stores, no formatting) and hands it to
`Telemetry.finish`; all formatting happens later, batched, off the request's path. Field names
follow Envoy's access-log operators (istio-semantics.md §3.3); `None` and "" print as `-`.
"""

from __future__ import annotations

from dataclasses import dataclass

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
