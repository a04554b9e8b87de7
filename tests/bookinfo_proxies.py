"""Bookinfo's proxies as the sidecars know themselves, and the endpoints they call: shared by the
telemetry, tracing and console tests, so each request they build names the same workloads."""

from __future__ import annotations

from sandbox.xds.snapshot import Endpoint, ProxyIdentity

INGRESS = ProxyIdentity(
    workload="istio-ingressgateway",
    namespace="istio-system",
    service_account="istio-ingressgateway-service-account",
    spiffe_id="spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account",
    labels={"app": "istio-ingressgateway", "istio": "ingressgateway"},
    app="istio-ingressgateway",
    kind="router",
)
PRODUCTPAGE = ProxyIdentity(
    workload="productpage-v1",
    namespace="default",
    service_account="bookinfo-productpage",
    spiffe_id="spiffe://cluster.local/ns/default/sa/bookinfo-productpage",
    labels={"app": "productpage", "version": "v1"},
    app="productpage",
    version="v1",
)
REVIEWS = ProxyIdentity(
    workload="reviews-v2",
    namespace="default",
    service_account="bookinfo-reviews",
    spiffe_id="spiffe://cluster.local/ns/default/sa/bookinfo-reviews",
    labels={"app": "reviews", "version": "v2"},
    app="reviews",
    version="v2",
)
REVIEWS_V2 = Endpoint(  # reviews-v2's inbound listener, as productpage's sidecar has it
    address="127.0.0.1:15006",
    workload="reviews-v2",
    namespace="default",
    service_account="bookinfo-reviews",
    labels={"app": "reviews", "version": "v2"},
)
RATINGS = Endpoint(  # ratings-v1's inbound listener, as reviews' sidecar has it
    address="127.0.0.1:15106",
    workload="ratings-v1",
    namespace="default",
    service_account="bookinfo-ratings",
    labels={"app": "ratings", "version": "v1"},
)
