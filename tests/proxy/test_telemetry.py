"""One RequestRecord feeds metrics, span and access log."""

from __future__ import annotations

import ast
import asyncio
import random
import re
from pathlib import Path

from bookinfo_proxies import RATINGS, REVIEWS
from dataplane_support import Upstream, compose_for, fetch, mesh_snapshot, running_sidecar, socket_test
from prometheus_client.parser import text_string_to_metric_families

import sandbox.proxy
from sandbox.proxy.accesslog import AccessLog
from sandbox.proxy.metrics import Peer
from sandbox.proxy.record import RequestRecord, record
from sandbox.proxy.telemetry import Telemetry
from sandbox.proxy.tracing import SpanBuilder, SpanReporter


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
    rec = record(1_700_000_000.0, method="GET", path="/ratings/0", authority="ratings:9080", response_code=200)
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
    rec = record(1.0, response_code=200)
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
    rec = record(1.0, response_code=200, edge=edge)
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


# --------------------------------------------------------------------------- through sidecars


def _labels(text: str, reporter: str) -> dict[str, str]:
    (labels,) = [
        s.labels
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "istio_requests_total" and s.labels["reporter"] == reporter
    ]
    return labels


@socket_test
async def test_a_mesh_hop_reports_connection_security_policy_as_istio_does() -> None:
    # docs/reference/istio-semantics.md §3.1: `unknown` on reporter=source;
    # `none` on reporter=destination in plaintext (mesh_snapshot's mesh is plaintext).
    compose = compose_for(("productpage-v1", "productpage", "v1"), ("reviews-v1", "reviews", "v1"))
    async with Upstream() as app:
        server = mesh_snapshot(compose, "", "reviews-v1", {}, app_address=app.address)
        async with running_sidecar(server) as inbound:
            client = mesh_snapshot(compose, "", "productpage-v1", {"reviews-v1": f"127.0.0.1:{inbound.inbound}"})
            async with running_sidecar(client) as outbound:
                assert (await fetch(outbound.outbound, "/r", host="reviews:9080")).status == 200
                source = _labels(outbound.sidecar.telemetry.prometheus_text(), "source")
                destination = _labels(inbound.sidecar.telemetry.prometheus_text(), "destination")
    assert source["connection_security_policy"] == "unknown"
    assert destination["connection_security_policy"] == "none"
    assert (source["source_workload"], source["destination_workload"]) == ("productpage-v1", "reviews-v1")
    # In plaintext nothing vouches for the caller (test_mtls.py has the mutual TLS case).
    assert (destination["source_workload"], destination["destination_workload"]) == ("unknown", "reviews-v1")
    for labels in (source, destination):
        assert labels["destination_service"] == "reviews.default.svc.cluster.local"
        assert (labels["response_code"], labels["response_flags"]) == ("200", "-")


@socket_test
async def test_a_proxied_request_logs_every_field_of_istios_format() -> None:
    compose = compose_for(("productpage-v1", "productpage", "v1"), ("reviews-v1", "reviews", "v1"))
    async with Upstream() as up:
        snapshot = mesh_snapshot(compose, "", "productpage-v1", {"reviews-v1": up.address})
        async with running_sidecar(snapshot) as sc:
            headers = {"user-agent": "ua/1", "x-forwarded-for": "10.1.2.3", "x-request-id": "rid-1"}
            response = await fetch(sc.outbound, "/reviews/0?x=1", host="reviews:9080", headers=headers)
            (line,) = sc.lines()
    assert response.status == 200
    pattern = (
        r'\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\] "GET /reviews/0\?x=1 HTTP/1\.1" 200 - via_upstream - "-" '
        r"0 19 \d+ \d+ "
        r'"10\.1\.2\.3" "ua/1" "rid-1" "reviews:9080" "' + re.escape(up.address) + r'" '
        r"outbound\|9080\|\|reviews\.default\.svc\.cluster\.local - 127\.0\.0\.1:\d+ 127\.0\.0\.1:\d+ - default"
    )
    assert re.fullmatch(pattern, line), line


def record_fields() -> list[str]:
    """RequestRecord's fields, read from its source (compiled classes keep no annotations)."""
    source = (Path(sandbox.proxy.__file__).parent / "record.py").read_text()
    (cls,) = [n for n in ast.parse(source).body if isinstance(n, ast.ClassDef) and n.name == "RequestRecord"]
    return [n.target.id for n in cls.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)]


def test_detached_copies_every_field_and_nothing_of_the_exchange() -> None:
    fields = record_fields()
    assert len(fields) >= 29 and "response_code_details" in fields
    rec = RequestRecord()
    values: dict[str, object] = {}
    for i, name in enumerate(fields):
        default = getattr(rec, name)
        value: object = (
            f"v{i}"
            if isinstance(default, str)
            else i + 0.5
            if isinstance(default, float)
            else i
            if isinstance(default, int)
            else (("tag", f"v{i}"),)
            if isinstance(default, tuple)
            else object()
        )
        if name in ("edge", "trace"):
            continue  # typed objects: checked below by identity
        setattr(rec, name, value)
        values[name] = value
    copy = rec.detached()
    assert type(copy) is RequestRecord and copy is not rec
    assert {name: getattr(copy, name) for name in values} == values
