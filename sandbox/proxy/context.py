"""ForwardContext: what every exchange of one listener shares (clusters, pools, telemetry, ids).

The listener classes follow Istio's HTTP connection managers (pilot's ProxyHeaders): the sidecar's
outbound side writes `server: envoy` and counts attempts in `x-envoy-attempt-count`; its inbound
side writes `server: istio-envoy` and passes the caller's attempt count through to the app; a
gateway writes `server: istio-envoy` and, as the mesh's edge (use_remote_address), appends the
client to X-Forwarded-For.

X-Forwarded-Client-Cert, as Istio configures forward_client_cert_details: the sidecar's outbound
side and a plaintext connection never pass a client's header on (SANITIZE); the inbound side of a
mutual TLS connection appends its element (APPEND_FORWARD); a gateway replaces it with the TLS
client's (SANITIZE_SET).
"""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Callable
from enum import Enum
from typing import Any

from sandbox.proxy import http1
from sandbox.proxy.balancing import Passthrough
from sandbox.proxy.cluster import ClusterManager
from sandbox.proxy.decision import RequestHead, RouteDecision
from sandbox.proxy.metrics import PEER_METADATA_HEADER, PEER_METADATA_ID_HEADER
from sandbox.proxy.record import RequestRecord
from sandbox.proxy.retry import RetryOn
from sandbox.proxy.telemetry import Telemetry
from sandbox.proxy.timers import Timers
from sandbox.proxy.upstream import Upstreams
from sandbox.xds.snapshot import RetryPolicy

_SERVER = b"server"
_HOP = http1.HOP_BY_HOP_BYTES
# The trace context: this hop's span replaces the caller's (tracecontext.py writes them anew).
_TRACE_HEADERS = frozenset({"x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid", "x-b3-sampled", "traceparent"})
XFCC = "x-forwarded-client-cert"
_OWN_ALWAYS = frozenset({"host", "x-envoy-expected-rq-timeout-ms", XFCC})


Router = Callable[[RequestHead], RouteDecision]


class HttpFilters:
    """The HTTP filters a listener runs before its router (filters.AccessFilters: authentication
    and authorization). `run` routes the exchange with `router` and starts it, or answers it."""

    def run(self, exchange: Any, router: Router) -> None:  # exchange: forwarder.Exchange (it imports us)
        raise NotImplementedError


class ListenerClass(Enum):
    """Istio's listener classes, which decide the HTTP connection manager's header behaviour."""

    SIDECAR_OUTBOUND = "outbound"
    SIDECAR_INBOUND = "inbound"
    GATEWAY = "gateway"


class ForwardContext:
    """What every exchange of one listener shares."""

    def __init__(
        self,
        timers: Timers,
        clusters: ClusterManager,
        upstreams: Upstreams,
        listener_class: ListenerClass,
        telemetry: Telemetry | None = None,
        on_complete: Callable[[RequestRecord], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.timers = timers
        self.clusters = clusters
        self.upstreams = upstreams
        self.listener_class = listener_class
        inbound = listener_class is ListenerClass.SIDECAR_INBOUND
        # Telemetry reports a gateway's requests as the source, as the sidecar's outbound side.
        self.outbound = not inbound
        self.telemetry = telemetry
        self.on_complete = on_complete
        self.rng = rng or random.Random()
        self.filters: HttpFilters | None = None  # set per snapshot by the sidecar (None: no policy applies)
        # Istio's ProxyHeaders: outbound keeps Envoy's default name, inbound and gateways say istio-envoy.
        self.server_name = b"envoy" if listener_class is ListenerClass.SIDECAR_OUTBOUND else b"istio-envoy"
        self.server_line = b"server: " + self.server_name + b"\r\n"  # server_header_transformation OVERWRITE
        self.use_remote_address = listener_class is ListenerClass.GATEWAY
        # Istio's inbound route does not count attempts: the app sees the count of the attempt that reached it.
        self.attempt_count = not inbound
        self.append_xfcc = inbound  # APPEND_FORWARD; a gateway's SANITIZE_SET replaces
        self.peer_line = f"{PEER_METADATA_HEADER}: {telemetry.peer_header()}\r\n" if telemetry is not None else ""
        # Headers never copied upstream: hop-by-hop ones, and those this hop writes itself.
        own = set(_OWN_ALWAYS)
        if self.attempt_count:
            own.add("x-envoy-attempt-count")
        if telemetry is not None:
            own |= _TRACE_HEADERS | {PEER_METADATA_HEADER, PEER_METADATA_ID_HEADER}
        if self.use_remote_address:
            own.add("x-forwarded-proto")  # the edge writes the scheme it was reached by
        self.skip_request = http1.HOP_BY_HOP | own
        self.skip_response = _HOP | {_SERVER}
        # x-request-id: a UUID v4 per process (random) plus a counter: unique, and ~10x cheaper than uuid4().
        self._rid_prefix = str(uuid.UUID(bytes=os.urandom(16), version=4))[:28]
        self._rid_counter = 0
        self._retry_on: dict[int, tuple[RetryPolicy, RetryOn]] = {}
        self.passthrough = Passthrough()  # PassthroughCluster: the original destination, or the authority

    def request_id(self) -> str:
        self._rid_counter = counter = (self._rid_counter + 1) & 0xFFFFFFFF
        # hex() of a 33-bit number, minus `0x1`: eight digits, ~3x faster compiled than `:08x`
        return self._rid_prefix + hex(0x100000000 | counter)[3:]

    def retry_on(self, policy: RetryPolicy) -> RetryOn:
        cached = self._retry_on.get(id(policy))
        if cached is None or cached[0] is not policy:
            parsed = RetryOn.parse(",".join(policy.retry_on), policy.retriable_status_codes)
            cached = self._retry_on[id(policy)] = (policy, parsed)
        return cached[1]
