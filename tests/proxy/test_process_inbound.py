"""The inbound route of a sidecar: the span is named after the workload's own service (Istio's
TraceOperation(service hostname, port)) whatever Host the request carries; telemetry's
destination service follows a named Host."""

from __future__ import annotations

import pytest

from sandbox.proxy.decision import RequestHead
from sandbox.proxy.sidecar import ProxyOptions, Sidecar
from tests.proxy.dataplane_support import compose_for, mesh_snapshot, socket_test

REVIEWS = "reviews.default.svc.cluster.local"


@pytest.mark.parametrize(
    ("authority", "service"),
    [
        ("127.0.0.1:43063", REVIEWS),  # the loopback runtime: the client's sidecar dials an address
        ("localhost:9080", REVIEWS),
        ("reviews:9080", REVIEWS),
        ("reviews.default.svc.cluster.local:9080", REVIEWS),
        ("bookinfo.example.com", "bookinfo.example.com"),  # the Host a gateway passed on
    ],
)
@socket_test
async def test_the_inbound_span_is_named_after_the_workloads_service(authority: str, service: str) -> None:
    snapshot = mesh_snapshot(
        compose_for(("reviews-v2", "reviews", "v2")), "", "reviews-v2", {}, app_address="127.0.0.1:1"
    )
    sidecar = Sidecar(snapshot, ProxyOptions(access_log=None))
    decision = sidecar.route_inbound(RequestHead("GET", "/reviews/0", authority, {}, 9080))
    assert decision.operation == f"{REVIEWS}:9080/*"
    assert decision.service == service
