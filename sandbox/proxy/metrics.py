"""Istio's standard metrics for one proxy, in Prometheus text format.

Names, label sets (in the order Istio's stats filter pushes them) and Envoy's default histogram
buckets follow docs/reference/istio-semantics.md §3.1. Recording must be cheap, so the series live in plain
Python lists, looked up by (edge, code, grpc status, flags) in one dict (prometheus_client's own
Counter/Histogram cost ~1 us per inc and ~2 us per observe, four of them per request, measured
here). Scrapes use `exposition()`, which writes the text directly; `collect()` yields the same
data as prometheus_client metric families, for a CollectorRegistry (the tests check both agree).

An `Edge` holds the labels that stay the same for many requests (reporter, both peers, the
destination service, protocol, mTLS): intern it once per upstream host and reuse it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from sandbox.xds.identity import ProxyIdentity
from sandbox.xds.snapshot import Endpoint

# Envoy's default buckets (histogram_impl.cc defaultBuckets), used by all three Istio histograms.
DEFAULT_BUCKETS: tuple[float, ...] = (
    0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000,
)  # fmt: skip
PEER_LABELS = (
    "workload", "canonical_service", "canonical_revision", "workload_namespace", "principal", "app", "version",
    "cluster",
)  # fmt: skip
HTTP_LABELS = (
    "reporter",
    "source_workload", "source_canonical_service", "source_canonical_revision", "source_workload_namespace",
    "source_principal", "source_app", "source_version", "source_cluster",
    "destination_workload", "destination_workload_namespace", "destination_principal", "destination_app",
    "destination_version", "destination_service", "destination_canonical_service",
    "destination_canonical_revision", "destination_service_name", "destination_service_namespace",
    "destination_cluster",
    "request_protocol", "response_code", "grpc_response_status", "response_flags", "connection_security_policy",
)  # fmt: skip
TCP_LABELS = tuple(n for n in HTTP_LABELS if n not in ("response_code", "grpc_response_status"))
UNKNOWN = "unknown"
DEFAULT_CLUSTER_ID = "Kubernetes"  # Istio's default cluster name (source_cluster/destination_cluster)
PEER_METADATA_HEADER = "x-envoy-peer-metadata"
PEER_METADATA_ID_HEADER = "x-envoy-peer-metadata-id"


@dataclass(frozen=True, slots=True)
class Peer:
    """One side of a request as Istio's labels describe it; unknown values are `unknown`."""

    workload: str = UNKNOWN
    namespace: str = UNKNOWN
    principal: str = UNKNOWN  # spiffe://... under mTLS, else unknown
    app: str = UNKNOWN
    version: str = UNKNOWN
    canonical_service: str = UNKNOWN
    canonical_revision: str = "latest"
    cluster: str = DEFAULT_CLUSTER_ID

    @classmethod
    def from_labels(cls, workload: str, namespace: str, labels: dict[str, str], principal: str = UNKNOWN) -> Peer:
        # Istio's canonical service/revision label precedence (pkg/model/labels).
        service = (
            labels.get("service.istio.io/canonical-name")
            or labels.get("app.kubernetes.io/name")
            or labels.get("app")
            or workload
        )
        revision = (
            labels.get("service.istio.io/canonical-revision")
            or labels.get("app.kubernetes.io/version")
            or labels.get("version")
            or "latest"
        )
        return cls(
            workload=workload or UNKNOWN,
            namespace=namespace or UNKNOWN,
            principal=principal or UNKNOWN,
            app=labels.get("app", UNKNOWN),
            version=labels.get("version", UNKNOWN),
            canonical_service=service or UNKNOWN,
            canonical_revision=revision,
        )

    @classmethod
    def from_identity(cls, identity: ProxyIdentity, mtls: bool) -> Peer:
        labels = dict(identity.labels)
        if identity.app:
            labels.setdefault("app", identity.app)
        if identity.version:
            labels.setdefault("version", identity.version)
        return cls.from_labels(identity.workload, identity.namespace, labels, identity.spiffe_id if mtls else UNKNOWN)

    @classmethod
    def from_endpoint(cls, endpoint: Endpoint, trust_domain: str, mtls: bool) -> Peer:
        principal = f"spiffe://{trust_domain}/ns/{endpoint.namespace}/sa/{endpoint.service_account}" if mtls else ""
        return cls.from_labels(endpoint.workload, endpoint.namespace, endpoint.labels, principal)

    def values(self) -> tuple[str, ...]:
        return (
            self.workload,
            self.canonical_service,
            self.canonical_revision,
            self.namespace,
            self.principal,
            self.app,
            self.version,
            self.cluster,
        )

    def to_header(self) -> str:
        """Our stand-in for Istio's metadata exchange header (Istio sends a base64 protobuf Struct)."""
        data = dict(zip(PEER_LABELS, self.values(), strict=True))
        return base64.b64encode(json.dumps(data, separators=(",", ":")).encode()).decode()

    @classmethod
    def from_header(cls, value: str | None, principal: str | None = None) -> Peer:
        """The client as the server sees it: its metadata header, believed only when a verified mutual
        TLS certificate (`principal`, its SPIFFE ID) vouches for the namespace the header claims. A
        plaintext client is unknown whatever it sends; anything malformed is unknown, never an error."""
        if not principal:
            return cls()
        namespace_of_cert = principal.partition("/ns/")[2].partition("/")[0] or UNKNOWN
        vouched = cls(namespace=namespace_of_cert, principal=principal)
        if not value:
            return vouched
        try:
            data = json.loads(base64.b64decode(value, validate=True))
            values = [str(data.get(name) or UNKNOWN)[:253] for name in PEER_LABELS]
        except (ValueError, TypeError, AttributeError):
            return vouched
        workload, service, revision, namespace, _claimed, app, version, cluster = values
        if namespace != namespace_of_cert:
            return vouched  # a header naming another namespace than the certificate's is not believed
        return cls(workload, namespace, principal, app, version, service, revision, cluster)


@dataclass(frozen=True, eq=False)
class Edge:
    """The labels shared by every request between two peers for one service (identity-hashed)."""

    reporter: str  # source | destination
    source: Peer
    destination: Peer
    service: str  # destination service FQDN, or unknown
    protocol: str = "http"  # http | grpc | tcp
    security_policy: str = UNKNOWN  # mutual_tls | none on reporter=destination; unknown on source
    # destination_service_name when it is not the service's: Istio's PassthroughCluster or
    # BlackHoleCluster for traffic the registry does not know (the namespace is then unknown)
    service_name: str = ""

    def head(self) -> tuple[str, ...]:
        """Labels 1..21 (everything before response_code)."""
        d = self.destination
        name, _, rest = self.service.partition(".")
        namespace = rest.partition(".")[0] if rest else UNKNOWN
        if self.service == UNKNOWN:
            name = namespace = UNKNOWN
        if self.service_name:
            name, namespace = self.service_name, UNKNOWN
        return (
            self.reporter,
            *self.source.values(),
            d.workload,
            d.namespace,
            d.principal,
            d.app,
            d.version,
            self.service,
            d.canonical_service,
            d.canonical_revision,
            name,
            namespace,
            d.cluster,
            self.protocol,
        )


class _Histogram:
    __slots__ = ("counts", "sum")

    def __init__(self, size: int) -> None:
        self.counts = [0] * size  # per bucket, not cumulative; last is +Inf
        self.sum = 0.0


class _HttpSeries:
    __slots__ = ("duration", "label_text", "labels", "request_bytes", "requests", "response_bytes")

    def __init__(self, labels: tuple[str, ...], size: int) -> None:
        self.labels = labels
        self.label_text = _label_text(HTTP_LABELS, labels)
        self.requests = 0
        self.duration = _Histogram(size)
        self.request_bytes = _Histogram(size)
        self.response_bytes = _Histogram(size)


class _TcpSeries:
    __slots__ = ("closed", "label_text", "labels", "opened", "received", "sent")

    def __init__(self, labels: tuple[str, ...]) -> None:
        self.labels = labels
        self.label_text = _label_text(TCP_LABELS, labels)
        self.sent = self.received = self.opened = self.closed = 0


def _bucket(buckets: tuple[float, ...], value: float) -> int:
    """bisect_left(buckets, value), scanning up from the smallest bucket: the values a request
    records (sub-millisecond durations, small bodies) sit in the first few, and compiled, the
    scan is cheaper than a call to bisect."""
    i = 0
    n = len(buckets)
    while i < n and buckets[i] < value:
        i += 1
    return i


class IstioMetrics:
    """The istio_* metrics of one proxy. Register once; record per request; scrape at any time.

    A prometheus_client collector by its methods (`collect`; the registry never checks the class),
    not by subclassing `Collector`: mypyc compiles this class, and a compiled class must not
    inherit from a third-party one (in pip's isolated build, where that base is unknown, it
    crashed the process)."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        buckets: tuple[float, ...] = DEFAULT_BUCKETS,
        version: str = "sandbox",
    ) -> None:
        self.buckets = tuple(float(b) for b in buckets)
        self.version = version
        self._http: dict[tuple[Edge, int, str, str], _HttpSeries] = {}
        self._by_labels: dict[tuple[str, ...], _HttpSeries] = {}  # the series; _http only indexes them
        self._tcp: dict[tuple[Edge, str], _TcpSeries] = {}
        self._tcp_by_labels: dict[tuple[str, ...], _TcpSeries] = {}
        self._heads: dict[Edge, tuple[str, ...]] = {}
        if registry is not None:
            registry.register(self)  # a Collector by its methods, see above

    def _series(self, edge: Edge, code: int, grpc_status: str, flags: str) -> _HttpSeries:
        """The slow path: find (or make) the series by its labels, and remember it for this edge."""
        if len(self._http) > 50_000:  # stale edges (a caller's cache was reset): drop the aliases only
            self._http.clear()
            self._heads.clear()
        head = self._heads.get(edge)
        if head is None:
            head = self._heads[edge] = edge.head()
        labels = (*head, str(code), grpc_status, flags, edge.security_policy)
        series = self._by_labels.get(labels)
        if series is None:
            series = self._by_labels[labels] = _HttpSeries(labels, len(self.buckets) + 1)
        self._http[(edge, code, grpc_status, flags)] = series
        return series

    def record_http(
        self,
        edge: Edge,
        code: int,
        flags: str,
        duration_ms: float,
        request_bytes: int,
        response_bytes: int,
        grpc_status: str = "",
    ) -> None:
        if not flags:
            flags = "-"  # "" and "-" must be one series, or the exposition repeats a label set
        series = self._http.get((edge, code, grpc_status, flags))
        if series is None:
            series = self._series(edge, code, grpc_status, flags)
        series.requests += 1
        buckets = self.buckets
        h = series.duration
        h.counts[_bucket(buckets, duration_ms)] += 1
        h.sum += duration_ms
        h = series.request_bytes
        h.counts[_bucket(buckets, request_bytes)] += 1
        h.sum += request_bytes
        h = series.response_bytes
        h.counts[_bucket(buckets, response_bytes)] += 1
        h.sum += response_bytes

    def _tcp_series(self, edge: Edge, flags: str) -> _TcpSeries:
        flags = flags or "-"
        series = self._tcp.get((edge, flags))
        if series is None:
            if len(self._tcp) > 50_000:
                self._tcp.clear()
            labels = (*edge.head()[:-1], "tcp", flags, edge.security_policy)
            series = self._tcp_by_labels.get(labels)
            if series is None:
                series = self._tcp_by_labels[labels] = _TcpSeries(labels)
            self._tcp[(edge, flags)] = series
        return series

    def tcp_opened(self, edge: Edge, flags: str = "-") -> None:
        self._tcp_series(edge, flags).opened += 1

    def tcp_closed(self, edge: Edge, flags: str = "-") -> None:
        self._tcp_series(edge, flags).closed += 1

    def tcp_bytes(self, edge: Edge, sent: int, received: int, flags: str = "-") -> None:
        """Bytes sent to / received from the downstream since the last report."""
        series = self._tcp_series(edge, flags)
        series.sent += sent
        series.received += received

    # -- exposition (runs on scrape, not per request)

    def _histogram(self, name: str, doc: str, pick: str) -> HistogramMetricFamily:
        family = HistogramMetricFamily(name, doc, labels=HTTP_LABELS)
        bounds = [*(_fmt(b) for b in self.buckets), "+Inf"]
        for series in list(self._by_labels.values()):
            h: _Histogram = getattr(series, pick)
            running, cumulative = 0, []
            for bound, count in zip(bounds, h.counts, strict=True):
                running += count
                cumulative.append((bound, running))
            family.add_metric(list(series.labels), cumulative, h.sum)
        return family

    def collect(self) -> Iterator[Metric]:
        build = GaugeMetricFamily("istio_build", "Istio component build info", labels=("component", "tag"))
        build.add_metric(["proxy", self.version], 1)
        yield build
        requests = CounterMetricFamily("istio_requests", "Total requests", labels=HTTP_LABELS)
        for series in list(self._by_labels.values()):
            requests.add_metric(list(series.labels), series.requests)
        yield requests
        yield self._histogram("istio_request_duration_milliseconds", "Request duration", "duration")
        yield self._histogram("istio_request_bytes", "Request body size", "request_bytes")
        yield self._histogram("istio_response_bytes", "Response body size", "response_bytes")
        tcp = list(self._tcp_by_labels.values())
        for name, doc, attr in (
            ("istio_tcp_sent_bytes", "Bytes sent during a TCP connection", "sent"),
            ("istio_tcp_received_bytes", "Bytes received during a TCP connection", "received"),
            ("istio_tcp_connections_opened", "TCP connections opened", "opened"),
            ("istio_tcp_connections_closed", "TCP connections closed", "closed"),
        ):
            family = CounterMetricFamily(name, doc, labels=TCP_LABELS)
            for tcp_series in tcp:
                family.add_metric(list(tcp_series.labels), getattr(tcp_series, attr))
            yield family

    def exposition(self) -> str:
        """The same metrics as `collect()`, in Prometheus text format, written directly.

        prometheus_client's generate_latest formats every label of every sample again on each
        scrape: about 5 ms per Istio series (25 labels, three 20-bucket histograms), which would
        stall the event loop; here each series' label text is escaped once, when it is created."""
        out = [
            "# HELP istio_build Istio component build info\n# TYPE istio_build gauge\n",
            f'istio_build{{component="proxy",tag="{_escape(self.version)}"}} 1\n',
        ]
        series = list(self._by_labels.values())
        out.append("# HELP istio_requests_total Total requests\n# TYPE istio_requests_total counter\n")
        out.extend(f"istio_requests_total{{{s.label_text}}} {s.requests}\n" for s in series)
        bounds = [*(_fmt(b) for b in self.buckets), "+Inf"]
        for name, doc, attr in (
            ("istio_request_duration_milliseconds", "Request duration", "duration"),
            ("istio_request_bytes", "Request body size", "request_bytes"),
            ("istio_response_bytes", "Response body size", "response_bytes"),
        ):
            out.append(f"# HELP {name} {doc}\n# TYPE {name} histogram\n")
            for s in series:
                h: _Histogram = getattr(s, attr)
                labels = s.label_text
                running = 0
                for bound, count in zip(bounds, h.counts, strict=True):
                    running += count
                    out.append(f'{name}_bucket{{{labels},le="{bound}"}} {running}\n')
                out.append(f"{name}_count{{{labels}}} {running}\n{name}_sum{{{labels}}} {_num(h.sum)}\n")
        tcp = list(self._tcp_by_labels.values())
        for name, doc, attr in (
            ("istio_tcp_sent_bytes_total", "Bytes sent during a TCP connection", "sent"),
            ("istio_tcp_received_bytes_total", "Bytes received during a TCP connection", "received"),
            ("istio_tcp_connections_opened_total", "TCP connections opened", "opened"),
            ("istio_tcp_connections_closed_total", "TCP connections closed", "closed"),
        ):
            out.append(f"# HELP {name} {doc}\n# TYPE {name} counter\n")
            out.extend(f"{name}{{{t.label_text}}} {getattr(t, attr)}\n" for t in tcp)
        return "".join(out)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _label_text(names: tuple[str, ...], values: tuple[str, ...]) -> str:
    return ",".join(f'{name}="{_escape(value)}"' for name, value in zip(names, values, strict=True))


def _num(value: float) -> str:
    return str(value) if isinstance(value, int) else repr(float(value))


def _fmt(bound: float) -> str:
    return str(int(bound)) if bound == int(bound) else repr(bound)
