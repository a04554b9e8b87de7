"""ProxySnapshot: everything one sidecar (or the ingress gateway) needs, and nothing global.

The control plane compiles it (`sandbox.control.compile`), pushes it, and the proxy keeps
it as its whole configuration: route configurations (Envoy RDS), clusters with their resolved
traffic policy and endpoints (CDS/EDS), the inbound listener, its identity and the mesh settings.
Every value is already resolved: Istio's defaults are filled in here, so the data path never has
to know them. Reference for every default: docs/reference/istio-semantics.md §1.

Snapshots are frozen, JSON-serialisable (`to_json`/`from_json`, canonical: sorted keys, no
whitespace, fields at their default left out) and versioned by a hash of that canonical JSON
(`version`), which is what ACK/NACK and `/config_dump` speak about. `to_data` has every field
(for people: config dumps, proxy-config). Durations are float seconds; `None` means "not set /
disabled".
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from dataclasses import field
from functools import cached_property
from typing import Any

from sandbox.mesh.resources.common import model
from sandbox.xds.access import AccessPolicy
from sandbox.xds.canonical import canonical_json, compact, decode, encode
from sandbox.xds.identity import ProxyIdentity

# Istio overrides Envoy's circuit-breaker defaults with MaxUint32 (§1.2, getDefaultCircuitBreakerThresholds).
MAX_UINT32 = 2**32 - 1
# §1.1 Retries: the policy Istio applies when a route sets no `retries` (retry.go, since 1.24 no 503).
DEFAULT_RETRY_ON = ("connect-failure", "refused-stream", "unavailable", "cancelled", "retriable-status-codes")
DEFAULT_RETRY_ATTEMPTS = 2
DEFAULT_BACKOFF_BASE = 0.025  # 25 ms; Envoy caps fully-jittered exponential backoff at 10x base
DEFAULT_HOST_SELECTION_RETRY_MAX_ATTEMPTS = 5
# §1.2 ConnectionPoolSettings: MeshConfig connectTimeout 10s, idle timeouts 1h.
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_IDLE_TIMEOUT = 3600.0
# §1.2 OutlierDetection defaults (used for the fields a DR leaves out).
DEFAULT_CONSECUTIVE_5XX = 5
DEFAULT_OUTLIER_INTERVAL = 10.0
DEFAULT_BASE_EJECTION_TIME = 30.0
DEFAULT_MAX_EJECTION_PERCENT = 10
MAX_EJECTION_TIME = 300.0  # Envoy's default cap; Istio sets no max_ejection_time

PASSTHROUGH_CLUSTER = "PassthroughCluster"
BLACKHOLE_CLUSTER = "BlackHoleCluster"


# --------------------------------------------------------------------------- matching


@model
class StringMatcher:
    """Istio's StringMatch after compilation. `kind` is exact | prefix | regex | present.

    `present` is the header/query `{}` form ("the key exists"); regex is a full match (RE2 in
    Envoy; Python `re` with `fullmatch` here). `ignore_case` is only set for uri exact/prefix
    (`ignoreUriCase`, §1.1)."""

    kind: str
    value: str = ""
    ignore_case: bool = False


@model
class KeyMatcher:
    """One `headers`/`withoutHeaders`/`queryParams` entry: the key (lowercase for headers)."""

    name: str
    match: StringMatcher


@model
class RouteMatch:
    """One HTTPMatchRequest: every set field must hold (AND). `port` and sourceLabels were already
    applied when compiling (they select which proxies and listeners get the route)."""

    name: str = ""
    uri: StringMatcher | None = None
    scheme: StringMatcher | None = None
    method: StringMatcher | None = None
    authority: StringMatcher | None = None
    headers: tuple[KeyMatcher, ...] = ()
    without_headers: tuple[KeyMatcher, ...] = ()
    query_params: tuple[KeyMatcher, ...] = ()
    # `@request.auth.claims.<path>` keys: matched against the claims of the request's verified JWT
    # (name: the claim path, dot-separated); a request without verified claims matches none of them
    claims: tuple[KeyMatcher, ...] = ()
    without_claims: tuple[KeyMatcher, ...] = ()


# --------------------------------------------------------------------------- actions


@model
class HeaderMutation:
    """`set` overwrites, `add` appends (a comma list), `remove` deletes; applied remove, set, add."""

    set: tuple[tuple[str, str], ...] = ()
    add: tuple[tuple[str, str], ...] = ()
    remove: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.set or self.add or self.remove)


@model
class HeaderOperations:
    request: HeaderMutation = field(default_factory=HeaderMutation)
    response: HeaderMutation = field(default_factory=HeaderMutation)


@model
class WeightedCluster:
    """One HTTPRouteDestination: `cluster` is Istio's cluster name, `weight` relative to the sum."""

    cluster: str
    weight: int = 100
    headers: HeaderOperations = field(default_factory=HeaderOperations)
    authority: str | None = None  # a Host/:authority `set` at destination level; the route's wins


@model
class Rewrite:
    """HTTPRewrite: `uri` replaces the matched prefix (prefix match) or the whole path (§1.1)."""

    uri: str | None = None
    authority: str | None = None
    uri_regex_match: str | None = None
    uri_regex_rewrite: str | None = None


@model
class Redirect:
    """HTTPRedirect. `port` is explicit; `derive_port` FROM_PROTOCOL_DEFAULT | FROM_REQUEST_PORT."""

    uri: str | None = None
    authority: str | None = None
    port: int | None = None
    derive_port: str | None = None
    scheme: str | None = None
    code: int = 301  # §1.1: redirectCode defaults to 301


@model
class DirectResponse:
    status: int
    body: str = ""


@model
class RetryPolicy:
    """HTTPRetry resolved: `attempts` retries, so at most 1 + attempts tries (§1.1)."""

    attempts: int = DEFAULT_RETRY_ATTEMPTS
    retry_on: tuple[str, ...] = DEFAULT_RETRY_ON
    retriable_status_codes: tuple[int, ...] = ()
    per_try_timeout: float | None = None  # None: the route timeout
    backoff_base: float = DEFAULT_BACKOFF_BASE
    backoff_max: float = DEFAULT_BACKOFF_BASE * 10
    retry_ignore_previous_hosts: bool = True
    host_selection_max_attempts: int = DEFAULT_HOST_SELECTION_RETRY_MAX_ATTEMPTS


NO_RETRY = RetryPolicy(attempts=0, retry_on=())


@model
class Fault:
    """HTTPFaultInjection resolved. Percentages are 0..100; a missing percentage is 0 (never)."""

    delay: float | None = None
    delay_percentage: float = 0.0
    abort_status: int | None = None
    abort_grpc_status: str | None = None
    abort_percentage: float = 0.0


@model
class Mirror:
    """One mirror target; `percentage` defaults to 100 when mirrorPercentage is absent (§1.1)."""

    cluster: str
    percentage: float = 100.0


@model
class Cors:
    allow_origins: tuple[StringMatcher, ...] = ()
    allow_methods: tuple[str, ...] = ()
    allow_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    max_age: float | None = None
    allow_credentials: bool | None = None
    unmatched_preflights: str = "FORWARD"  # §1.1 default


@model
class Route:
    """One Envoy route: Istio emits one per (HTTPRoute, match block), so OR-ed match blocks become
    consecutive routes sharing the action (route.go BuildHTTPRoutesForVirtualService). Exactly
    one of `clusters` / `redirect` / `direct_response` is the action."""

    name: str = ""  # Istio: the HTTPRoute name, plus "." + the match name when both are set
    match: RouteMatch = field(default_factory=RouteMatch)  # no uri: Envoy's implicit prefix "/"
    operation: str = ""  # Envoy decorator, the span name: `reviews.default.svc.cluster.local:9080/*`
    clusters: tuple[WeightedCluster, ...] = ()
    redirect: Redirect | None = None
    direct_response: DirectResponse | None = None
    rewrite: Rewrite | None = None
    timeout: float | None = None  # §1.1: disabled by default
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    fault: Fault | None = None
    mirrors: tuple[Mirror, ...] = ()
    cors: Cors | None = None
    headers: HeaderOperations = field(default_factory=HeaderOperations)


@model
class VirtualHost:
    """An Envoy virtual host: `name` like `reviews.default.svc.cluster.local:9080`, `domains` the
    Host header values it answers (exact, `*.suffix` or `*`), `source` the VS it came from."""

    name: str
    domains: tuple[str, ...]
    routes: tuple[Route, ...]
    service: str = ""  # FQDN of the destination service, for telemetry
    source: str = ""  # "VirtualService/ns/name"; empty for default routing


@model
class ServerTLS:
    """A Gateway server's TLS termination (ServerTLSSettings), resolved for its port. `mode` SIMPLE,
    MUTUAL or ISTIO_MUTUAL; `hosts`: the SNI names it answers ("*": any, and clients without SNI).
    Certificates are files the gateway reads (a `credentialName` resolved to its secret's files, or
    the server's own serverCertificate/privateKey/caCertificates): no key travels in a snapshot."""

    mode: str
    hosts: tuple[str, ...] = ("*",)
    server_certificate: str = ""
    private_key: str = ""
    ca_certificates: str = ""  # MUTUAL: the CA client certificates must chain to
    subject_alt_names: tuple[str, ...] = ()  # MUTUAL: a client certificate must carry one of these
    min_protocol_version: str = ""  # TLSV1_2, TLSV1_3 ("": Istio's default, TLS 1.2)
    max_protocol_version: str = ""
    credential_name: str = ""
    problem: str = ""  # why the certificate could not be resolved (the server then refuses handshakes)
    source: str = ""  # Gateway/ns/name


@model
class RouteConfiguration:
    """Envoy RDS: sidecars have one per port (`9080`), gateways one per server port (`http.8080`).
    A gateway port whose servers terminate TLS has their `tls` (empty: plaintext HTTP)."""

    name: str
    port: int
    virtual_hosts: tuple[VirtualHost, ...]
    tls: tuple[ServerTLS, ...] = ()


# --------------------------------------------------------------------------- clusters


@model
class ConsistentHash:
    http_header_name: str | None = None
    http_cookie_name: str | None = None
    http_cookie_path: str | None = None
    http_cookie_ttl: float | None = None
    use_source_ip: bool = False
    http_query_parameter_name: str | None = None
    minimum_ring_size: int = 1024  # §1.2 ringHash default
    maglev_table_size: int | None = None


@model
class LoadBalancer:
    """`simple` is one of LEAST_REQUEST (Istio's default, §1.2), ROUND_ROBIN, RANDOM, PASSTHROUGH."""

    simple: str = "LEAST_REQUEST"
    consistent_hash: ConsistentHash | None = None


@model
class ConnectionPool:
    max_connections: int = MAX_UINT32
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    tcp_idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    max_connection_duration: float | None = None
    http1_max_pending_requests: int = MAX_UINT32
    http2_max_requests: int = MAX_UINT32
    max_requests_per_connection: int = 0  # 0: unlimited; 1 disables keep-alive
    max_retries: int = MAX_UINT32
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT


@model
class OutlierDetectionPolicy:
    """Present only when a DestinationRule sets outlierDetection (Istio configures none otherwise)."""

    consecutive_5xx_errors: int = DEFAULT_CONSECUTIVE_5XX  # 0 disables
    consecutive_gateway_errors: int = 0
    consecutive_local_origin_failures: int = 5
    split_external_local_origin_errors: bool = False
    interval: float = DEFAULT_OUTLIER_INTERVAL
    base_ejection_time: float = DEFAULT_BASE_EJECTION_TIME
    max_ejection_time: float = MAX_EJECTION_TIME
    max_ejection_percent: int = DEFAULT_MAX_EJECTION_PERCENT
    min_health_percent: int = 0


@model
class TLSSettings:
    """ClientTLSSettings. `mode` ISTIO_MUTUAL / SIMPLE / MUTUAL / DISABLE; `auto` when the DR set no
    tls and auto mTLS chooses per endpoint (`Endpoint.mtls`; `mode` then says what all of them do).
    For ISTIO_MUTUAL `subject_alt_names` are the SPIFFE IDs a server may present (the service's
    service accounts); for SIMPLE and MUTUAL the DR's, with the CA, client certificate and key as
    files the proxy reads (a `credential_name` secret resolved to its files by the control plane)."""

    mode: str = "DISABLE"
    auto: bool = True
    sni: str | None = None
    subject_alt_names: tuple[str, ...] = ()
    ca_certificates: str | None = None
    client_certificate: str | None = None
    private_key: str | None = None
    credential_name: str | None = None
    insecure_skip_verify: bool = False
    problem: str = ""  # why the `credential_name` secret cannot be used (connections then fail, UF)


@model
class TrafficPolicy:
    load_balancer: LoadBalancer = field(default_factory=LoadBalancer)
    connection_pool: ConnectionPool = field(default_factory=ConnectionPool)
    outlier_detection: OutlierDetectionPolicy | None = None
    tls: TLSSettings = field(default_factory=TLSSettings)


@model
class Endpoint:
    """One replica of a workload. `address` is what the proxy connects to (`host:port`): the peer's
    sidecar inbound for injected workloads; how it is spelled depends on the runtime."""

    address: str
    workload: str
    namespace: str
    service_account: str
    labels: dict[str, str] = field(default_factory=dict)
    replica: int = 0
    sidecar: bool = True
    mtls: bool = False  # auto mTLS: the endpoint has a sidecar whose PeerAuthentication accepts mTLS

    @property
    def host(self) -> str:
        return self.address.rpartition(":")[0]

    @property
    def port(self) -> int:
        return int(self.address.rpartition(":")[2])


@model
class Cluster:
    """An outbound cluster (`outbound|9080|v2|reviews.default.svc.cluster.local`), or
    PassthroughCluster (endpoints empty: connect to the request's own authority)."""

    name: str
    service: str  # FQDN
    port: int
    subset: str = ""
    traffic_policy: TrafficPolicy = field(default_factory=TrafficPolicy)
    endpoints: tuple[Endpoint, ...] = ()
    source: str = ""  # "DestinationRule/ns/name" whose policy applies; empty for defaults


# --------------------------------------------------------------------------- the proxy


@model
class InboundListener:
    """The inbound side: requests for `port` (the service port) go to the app at `app_address`."""

    port: int
    app_address: str
    cluster: str  # inbound|9080||
    mtls: str = "PERMISSIVE"  # PeerAuthentication in force: STRICT, PERMISSIVE or DISABLE (mesh.peerauth)


@model
class MeshConfig:
    outbound_traffic_policy: str = "ALLOW_ANY"  # §1.4 default; or REGISTRY_ONLY
    trust_domain: str = "cluster.local"


@model
class SpanTag:
    """A Telemetry custom tag: a literal, an environment variable of the proxy, or a request header."""

    name: str
    literal: str | None = None
    environment: str | None = None
    header: str | None = None
    default: str = ""


@model
class TelemetryPolicy:
    """The Telemetry resources that apply to this proxy, merged (mesh, namespace, workload)."""

    access_log_client: bool = True  # the outbound (client) side writes access log lines
    access_log_server: bool = True  # the inbound (server) side does
    sampling: float | None = None  # percent; None: the proxy's default
    span_reporting: bool = True
    custom_tags: tuple[SpanTag, ...] = ()


@model
class ProxySnapshot:
    identity: ProxyIdentity
    route_configs: tuple[RouteConfiguration, ...] = ()
    clusters: tuple[Cluster, ...] = ()
    inbound: tuple[InboundListener, ...] = ()
    mesh: MeshConfig = field(default_factory=MeshConfig)
    telemetry: TelemetryPolicy = field(default_factory=TelemetryPolicy)
    access: AccessPolicy = field(default_factory=AccessPolicy)  # JWT and authorization (xds/access.py)
    version: str = ""  # filled by `seal`; the hash of everything else

    def cluster(self, name: str) -> Cluster | None:
        return self.clusters_by_name.get(name)

    @cached_property
    def clusters_by_name(self) -> dict[str, Cluster]:
        return {c.name: c for c in self.clusters}

    def route_config(self, port: int) -> RouteConfiguration | None:
        return next((rc for rc in self.route_configs if rc.port == port), None)

    def to_data(self) -> dict[str, Any]:
        data = encode(self)
        assert isinstance(data, dict)
        return data

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, no whitespace, defaults left out); a sealed snapshot's was
        made once, by `seal`."""
        cached = self.__dict__.get("_canonical")
        return cached if cached is not None else canonical_json(compact(self))

    @classmethod
    def from_data(cls, data: Any) -> ProxySnapshot:
        snapshot = decode(cls, data, "snapshot")
        assert isinstance(snapshot, ProxySnapshot)
        return snapshot

    @classmethod
    def from_json(cls, text: str | bytes) -> ProxySnapshot:
        """Parse a snapshot; raises ValueError (with the failing path) on anything malformed."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"snapshot is not JSON: {exc}") from None
        return cls.from_data(data)

    def seal(self, encode_cluster: Callable[[Cluster], Any] = compact) -> ProxySnapshot:
        """The same snapshot with `version` set to the content hash. Encoding a snapshot is most of
        a push's cost, so the canonical JSON made for the hash is kept for `to_json` (the push).
        Proxies compiled against one config share Cluster objects: the control plane's compile
        cache passes an `encode_cluster` that encodes each of them once."""
        data = compact(dataclasses.replace(self, version="", clusters=()))
        if self.clusters:
            data["clusters"] = [encode_cluster(c) for c in self.clusters]
        text = canonical_json(data)
        version = _hash(text)
        sealed = dataclasses.replace(self, version=version)
        # "version" sorts after every other top-level key, so it goes last in the canonical text.
        sealed.__dict__["_canonical"] = f'{text[:-1]}{"," if data else ""}"version":{json.dumps(version)}}}'
        return sealed


def _hash(canonical: str) -> str:
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def content_version(snapshot: ProxySnapshot) -> str:
    """First 16 hex chars of sha256 over the canonical JSON without the version itself."""
    return _hash(canonical_json(compact(dataclasses.replace(snapshot, version=""))))
