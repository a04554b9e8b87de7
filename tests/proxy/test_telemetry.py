"""One RequestRecord feeds metrics, span and access log."""

from __future__ import annotations

import asyncio
import random

from prometheus_client.parser import text_string_to_metric_families

from sandbox.control.snapshot import Endpoint, ProxyIdentity
from sandbox.proxy.accesslog import AccessLog
from sandbox.proxy.metrics import Peer
from sandbox.proxy.record import RequestRecord
from sandbox.proxy.telemetry import Telemetry
from sandbox.proxy.tracing import SpanBuilder, SpanReporter

REVIEWS = ProxyIdentity(
    workload="reviews-v2",
    namespace="default",
    service_account="bookinfo-reviews",
    spiffe_id="spiffe://cluster.local/ns/default/sa/bookinfo-reviews",
    labels={"app": "reviews", "version": "v2"},
    app="reviews",
    version="v2",
)
RATINGS = Endpoint(
    address="127.0.0.1:15106", workload="ratings-v1", namespace="default", service_account="bookinfo-ratings",
    labels={"app": "ratings", "version": "v1"},
)  # fmt: skip


def make(sampling: float = 100.0) -> tuple[Telemetry, list[str], list[bytes]]:
    lines: list[str] = []
    bodies: list[bytes] = []

    async def post(body: bytes) -> None:
        bodies.append(body)

    tel = Telemetry(
        REVIEWS,
        access_log=AccessLog(lines.append),
        spans=SpanReporter(SpanBuilder(REVIEWS), post=post),
        sampling=sampling,
        rng=random.Random(3),
    )
    return tel, lines, bodies


def requests_total(tel: Telemetry) -> list[dict[str, str]]:
    text = tel.prometheus_text()
    return [
        s.labels for f in text_string_to_metric_families(text) for s in f.samples if s.name == "istio_requests_total"
    ]


def test_finish_feeds_all_three() -> None:
    tel, lines, bodies = make()
    rec = RequestRecord(1_700_000_000.0, method="GET", path="/ratings/0", authority="ratings:9080", response_code=200)
    rec.trace = tel.trace_ids.outbound({})
    rec.edge = tel.outbound_edge(RATINGS, "ratings.default.svc.cluster.local", mtls=True)
    tel.finish(rec)
    tel.access_log.flush()  # type: ignore[union-attr]
    asyncio.run(tel.spans.flush())  # type: ignore[union-attr]
    (labels,) = requests_total(tel)
    assert labels["reporter"] == "source" and labels["destination_workload"] == "ratings-v1"
    assert labels["source_principal"] == REVIEWS.spiffe_id
    assert len(lines) == 1 and '"GET /ratings/0 HTTP/1.1" 200' in lines[0]
    assert len(bodies) == 1


def test_unsampled_requests_make_no_span() -> None:
    tel, _, _ = make(sampling=0.0)
    rec = RequestRecord(1.0, response_code=200)
    rec.trace = tel.trace_ids.outbound({})
    tel.finish(rec)
    assert tel.spans is not None and tel.spans._queue == []


def test_edges_are_interned() -> None:
    tel, _, _ = make()
    a = tel.outbound_edge(RATINGS, "ratings.default.svc.cluster.local", True)
    assert tel.outbound_edge(RATINGS, "ratings.default.svc.cluster.local", True) is a
    assert tel.outbound_edge(RATINGS, "ratings.default.svc.cluster.local", False) is not a


def test_inbound_edge_reads_the_peer_header() -> None:
    tel, _, _ = make()
    header = Peer.from_labels("productpage-v1", "default", {"app": "productpage", "version": "v1"}).to_header()
    edge = tel.inbound_edge(
        header,
        "spiffe://cluster.local/ns/default/sa/bookinfo-productpage",
        "reviews.default.svc.cluster.local",
        mtls=True,
    )
    rec = RequestRecord(1.0, response_code=200, edge=edge)
    tel.finish(rec)
    (labels,) = requests_total(tel)
    assert labels["reporter"] == "destination" and labels["source_workload"] == "productpage-v1"
    assert labels["source_principal"] == "spiffe://cluster.local/ns/default/sa/bookinfo-productpage"
    assert labels["connection_security_policy"] == "mutual_tls"
    assert labels["destination_workload"] == "reviews-v2"
    plain = tel.inbound_edge(header, "spiffe://forged", "reviews.default.svc.cluster.local", mtls=False)
    assert plain.source.principal == "unknown" and plain.security_policy == "none"


def test_zipkin_url_makes_a_reporter() -> None:
    tel = Telemetry(REVIEWS, zipkin_url="http://127.0.0.1:9411/api/v2/spans")
    assert tel.spans is not None and tel.spans.url.endswith("/api/v2/spans")
    assert tel.spans.builder.service_name == "reviews.default"
    assert Telemetry(REVIEWS).spans is None
