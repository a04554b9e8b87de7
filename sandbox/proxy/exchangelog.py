"""A detached RequestRecord copy of one exchange.

The data path hands the Exchange itself to telemetry (it is a record.LogRecord); `exchange_record`
is for callers that want a plain, self-contained record of it (e.g. an `on_complete` hook that
keeps records past the exchange's life)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sandbox.proxy.record import RequestRecord
from sandbox.proxy.telemetry import Telemetry

if TYPE_CHECKING:
    from sandbox.proxy.forwarder import Exchange

# RequestRecord's fields in the order exchange_record() passes them positionally.
RECORD_FIELDS = (
    "start_time", "method", "path", "protocol", "authority", "request_id", "user_agent", "x_forwarded_for",
    "scheme", "duration", "response_code", "response_flags", "response_code_details",
    "connection_termination_details", "upstream_transport_failure_reason", "grpc_status", "bytes_received",
    "bytes_sent", "upstream_service_time", "upstream_host", "upstream_cluster", "upstream_local_address",
    "downstream_local_address", "downstream_remote_address", "requested_server_name", "route_name", "operation",
    "edge", "trace",
)  # fmt: skip


def exchange_record(exchange: Exchange, telemetry: Telemetry) -> RequestRecord:
    """A RequestRecord with this exchange's values (its edge computed as the data path does)."""
    head = exchange.head
    headers = head.headers
    decision = exchange.decision
    service = decision.service if decision is not None else ""
    if not service and exchange.cluster is not None:
        service = exchange.cluster.config.service
    if exchange.ctx.outbound:
        edge = telemetry.outbound_edge(exchange.endpoint, service, False)
    else:
        edge = telemetry.inbound_edge(exchange.peer_header, None, service, False)
    # Positional: three times cheaper than keywords; RECORD_FIELDS guards the order (tests check it).
    return RequestRecord(
        exchange.start_time,
        head.method,
        head.path,
        exchange.protocol,
        head.authority,
        exchange.request_id,
        headers.get("user-agent"),
        headers.get("x-forwarded-for"),
        head.scheme,
        exchange.duration or exchange.ctx.loop.time() - exchange.started,
        exchange.response_code,
        exchange.flags or "-",
        None,
        None,
        None,
        "",
        exchange.bytes_received,
        exchange.bytes_sent,
        exchange.service_time / 1000 if exchange.service_time >= 0 else None,
        exchange.upstream_host or None,
        exchange.cluster.name if exchange.cluster is not None else None,
        None,
        exchange.down.local_address,
        exchange.down.remote_address,
        None,
        decision.route_name if decision is not None else None,
        decision.operation if decision is not None else "",
        edge,
        exchange.trace,
    )
