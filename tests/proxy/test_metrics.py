"""Istio standard metrics as Prometheus scrapes them from /stats/prometheus."""

from __future__ import annotations

import base64
from bisect import bisect_left

from bookinfo_proxies import PRODUCTPAGE, REVIEWS_V2
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from sandbox.proxy.metrics import DEFAULT_BUCKETS, HTTP_LABELS, TCP_LABELS, Edge, IstioMetrics, Peer, _bucket

SERVICE = "reviews.default.svc.cluster.local"


def scrape(registry: CollectorRegistry) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    out: dict[str, list[tuple[str, dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.name, s.labels, s.value))
    return out


def outbound_edge(mtls: bool = True) -> Edge:
    return Edge(
        "source", Peer.from_identity(PRODUCTPAGE, mtls), Peer.from_endpoint(REVIEWS_V2, "cluster.local", mtls), SERVICE
    )


def test_requests_total_has_istios_labels_for_reporter_source() -> None:
    registry = CollectorRegistry()
    metrics = IstioMetrics(registry)
    edge = outbound_edge()
    for _ in range(3):
        metrics.record_http(edge, 200, "-", 12.0, 0, 295)
    metrics.record_http(edge, 503, "UO", 0.2, 0, 81)
    samples = scrape(registry)["istio_requests_total"]
    by_code = {s[1]["response_code"]: s for s in samples}
    assert by_code["200"][2] == 3 and by_code["503"][2] == 1
    labels = by_code["503"][1]
    assert set(labels) == set(HTTP_LABELS)
    assert labels == {
        "reporter": "source",
        "source_workload": "productpage-v1",
        "source_canonical_service": "productpage",
        "source_canonical_revision": "v1",
        "source_workload_namespace": "default",
        "source_principal": "spiffe://cluster.local/ns/default/sa/bookinfo-productpage",
        "source_app": "productpage",
        "source_version": "v1",
        "source_cluster": "Kubernetes",
        "destination_workload": "reviews-v2",
        "destination_workload_namespace": "default",
        "destination_principal": "spiffe://cluster.local/ns/default/sa/bookinfo-reviews",
        "destination_app": "reviews",
        "destination_version": "v2",
        "destination_service": SERVICE,
        "destination_canonical_service": "reviews",
        "destination_canonical_revision": "v2",
        "destination_service_name": "reviews",
        "destination_service_namespace": "default",
        "destination_cluster": "Kubernetes",
        "request_protocol": "http",
        "response_code": "503",
        "grpc_response_status": "",
        "response_flags": "UO",
        "connection_security_policy": "unknown",
    }


def test_duration_histogram_uses_envoys_buckets() -> None:
    registry = CollectorRegistry()
    metrics = IstioMetrics(registry)
    edge = outbound_edge()
    for ms in (0.3, 0.5, 7.0, 7.0, 4000.0, 5_000_000.0):
        metrics.record_http(edge, 200, "-", ms, 10, 20)
    samples = scrape(registry)
    buckets = {float(s[1]["le"]): s[2] for s in samples["istio_request_duration_milliseconds_bucket"]}
    assert sorted(b for b in buckets if b != float("inf")) == [float(b) for b in DEFAULT_BUCKETS]
    assert buckets[0.5] == 2  # le is inclusive
    assert buckets[5.0] == 2 and buckets[10.0] == 4 and buckets[5000.0] == 5
    assert buckets[3_600_000.0] == 5 and buckets[float("inf")] == 6
    (count,) = samples["istio_request_duration_milliseconds_count"]
    (total,) = samples["istio_request_duration_milliseconds_sum"]
    assert count[2] == 6 and abs(total[2] - 5_004_014.8) < 1e-6
    (req_sum,) = samples["istio_request_bytes_sum"]
    (resp_sum,) = samples["istio_response_bytes_sum"]
    assert req_sum[2] == 60 and resp_sum[2] == 120


def test_reporter_destination_without_peer_metadata_is_unknown() -> None:
    registry = CollectorRegistry()
    metrics = IstioMetrics(registry)
    me = Peer.from_labels("reviews-v2", "default", {"app": "reviews", "version": "v2"})
    edge = Edge("destination", Peer(), me, SERVICE, security_policy="none")
    metrics.record_http(edge, 200, "", 1.0, 0, 0)
    (sample,) = scrape(registry)["istio_requests_total"]
    labels = sample[1]
    assert labels["reporter"] == "destination" and labels["connection_security_policy"] == "none"
    assert labels["source_workload"] == "unknown" and labels["source_canonical_revision"] == "latest"
    assert labels["destination_principal"] == "unknown"  # no mTLS: no principal
    assert labels["response_flags"] == "-"


def test_the_peer_header_is_believed_only_when_a_certificate_vouches_for_its_namespace() -> None:
    me = Peer.from_identity(PRODUCTPAGE, mtls=True)
    # Plaintext: anyone could have sent the header, so the source is unknown whatever it says.
    assert Peer.from_header(me.to_header()) == Peer()
    verified = Peer.from_header(me.to_header(), principal=PRODUCTPAGE.spiffe_id)
    assert (verified.workload, verified.app, verified.principal) == ("productpage-v1", "productpage", me.principal)
    # A certificate from another namespace: only what the certificate says is believed.
    stranger = Peer.from_header(me.to_header(), principal="spiffe://cluster.local/ns/legacy/sa/sleep")
    assert (stranger.workload, stranger.namespace, stranger.principal) == (
        "unknown",
        "legacy",
        "spiffe://cluster.local/ns/legacy/sa/sleep",
    )
    for garbage in ("", "%%%", "bm90IGpzb24=", "WzFd"):  # not base64, not JSON, a JSON list
        assert Peer.from_header(garbage) == Peer()
        vouched = Peer.from_header(garbage, principal=PRODUCTPAGE.spiffe_id)
        assert (vouched.workload, vouched.namespace) == ("unknown", "default")


def test_canonical_labels_take_istios_precedence() -> None:
    peer = Peer.from_labels(
        "w",
        "ns",
        {"app": "a", "version": "v", "service.istio.io/canonical-name": "svc", "app.kubernetes.io/version": "kv"},
    )
    assert (peer.canonical_service, peer.canonical_revision) == ("svc", "kv")
    bare = Peer.from_labels("w", "ns", {})
    assert (bare.canonical_service, bare.canonical_revision, bare.app) == ("w", "latest", "unknown")


def test_tcp_metrics_have_no_response_labels() -> None:
    registry = CollectorRegistry()
    metrics = IstioMetrics(registry)
    edge = outbound_edge()
    metrics.tcp_opened(edge)
    metrics.tcp_bytes(edge, sent=100, received=40)
    metrics.tcp_bytes(edge, sent=1, received=2)
    metrics.tcp_closed(edge)
    samples = scrape(registry)
    (sent,) = samples["istio_tcp_sent_bytes_total"]
    assert sent[2] == 101 and set(sent[1]) == set(TCP_LABELS) and sent[1]["request_protocol"] == "tcp"
    assert samples["istio_tcp_received_bytes_total"][0][2] == 42
    assert samples["istio_tcp_connections_opened_total"][0][2] == 1
    assert samples["istio_tcp_connections_closed_total"][0][2] == 1


def test_istio_build_and_separate_registries() -> None:
    a, b = CollectorRegistry(), CollectorRegistry()
    IstioMetrics(a).record_http(outbound_edge(), 200, "-", 1.0, 0, 0)
    IstioMetrics(b)
    assert "istio_requests_total" in scrape(a) and "istio_requests_total" not in scrape(b)
    assert scrape(b)["istio_build"][0][1] == {"component": "proxy", "tag": "sandbox"}


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.none(), st.text(max_size=200), st.binary(max_size=100).map(lambda b: base64.b64encode(b).decode())))
def test_peer_header_never_raises(value: str | None) -> None:
    peer = Peer.from_header(value)
    assert peer.principal == "unknown"


def test_one_label_set_is_one_series() -> None:
    # "" and "-" flags, and equal edges built separately, must not repeat a label set in the exposition.
    registry = CollectorRegistry()
    metrics = IstioMetrics(registry)
    metrics.record_http(outbound_edge(), 200, "", 1.0, 0, 0)
    metrics.record_http(outbound_edge(), 200, "-", 1.0, 0, 0)
    metrics.record_http(outbound_edge(), 200, "", 1.0, 0, 0)
    metrics.tcp_opened(outbound_edge(), "")
    metrics.tcp_opened(outbound_edge())
    samples = scrape(registry)
    assert [s[2] for s in samples["istio_requests_total"]] == [3.0]
    assert [s[2] for s in samples["istio_request_duration_milliseconds_count"]] == [3.0]
    assert [s[2] for s in samples["istio_tcp_connections_opened_total"]] == [2.0]


def test_direct_exposition_equals_prometheus_clients() -> None:
    registry = CollectorRegistry()
    metrics = IstioMetrics(registry)
    odd = Peer.from_labels('we"ird\\name', "default", {"app": "line\nbreak"})
    for edge in (outbound_edge(), Edge("destination", odd, Peer(), SERVICE, security_policy="none")):
        metrics.record_http(edge, 200, "-", 3.5, 10, 2000)
        metrics.record_http(edge, 503, "UF,URX", 70000.0, 0, 91, grpc_status="14")
        metrics.tcp_opened(edge)
        metrics.tcp_bytes(edge, 5, 7)

    def parsed(text: str) -> set[tuple[str, tuple[tuple[str, str], ...], float]]:
        return {
            (s.name, tuple(sorted(s.labels.items())), s.value)
            for f in text_string_to_metric_families(text)
            for s in f.samples
        }

    ours = parsed(metrics.exposition())
    assert ours == parsed(generate_latest(registry).decode())
    assert any(dict(labels).get("source_workload") == 'we"ird\\name' for _, labels, _ in ours)


def test_the_bucket_scan_agrees_with_bisect() -> None:
    values = [0, 0.1, 0.5, 0.50001, 1, 3, 5, 9.99, 10, 10.5, 299_999, 3_600_000, 3_600_001, 10**9]
    for value in values + [b for b in DEFAULT_BUCKETS] + [b * 1.0001 for b in DEFAULT_BUCKETS]:
        assert _bucket(DEFAULT_BUCKETS, value) == bisect_left(DEFAULT_BUCKETS, value), value
