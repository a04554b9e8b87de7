"""networking.istio.io VirtualService (v1alpha3, v1beta1 and v1 share one schema)."""

from __future__ import annotations

from dataclasses import field
from enum import StrEnum

from sandbox.mesh.resources.common import Duration, Percent, PortSelector, StringMatch, model


@model
class Destination:
    host: str
    subset: str | None = None
    port: PortSelector | None = None


@model
class HeaderOperations:
    set: dict[str, str] = field(default_factory=dict)
    add: dict[str, str] = field(default_factory=dict)
    remove: tuple[str, ...] = ()


@model
class Headers:
    request: HeaderOperations | None = None
    response: HeaderOperations | None = None


@model
class HTTPMatchRequest:
    name: str | None = None
    uri: StringMatch | None = None
    scheme: StringMatch | None = None
    method: StringMatch | None = None
    authority: StringMatch | None = None
    headers: dict[str, StringMatch] = field(default_factory=dict)
    port: int | None = None
    source_labels: dict[str, str] = field(default_factory=dict)
    gateways: tuple[str, ...] = ()
    query_params: dict[str, StringMatch] = field(default_factory=dict)
    ignore_uri_case: bool = False
    without_headers: dict[str, StringMatch] = field(default_factory=dict)
    source_namespace: str | None = None
    stat_prefix: str | None = None


@model
class HTTPRouteDestination:
    destination: Destination
    weight: int | None = None
    headers: Headers | None = None


class RedirectPortSelection(StrEnum):
    FROM_PROTOCOL_DEFAULT = "FROM_PROTOCOL_DEFAULT"
    FROM_REQUEST_PORT = "FROM_REQUEST_PORT"


@model
class HTTPRedirect:
    uri: str | None = None
    authority: str | None = None
    port: int | None = None
    derive_port: RedirectPortSelection | None = None
    scheme: str | None = None
    redirect_code: int | None = None  # Envoy's default is 301


@model
class HTTPBody:
    string: str | None = None
    bytes: str | None = None  # base64


@model
class HTTPDirectResponse:
    status: int
    body: HTTPBody | None = None


@model
class Delegate:
    name: str | None = None
    namespace: str | None = None


@model
class RegexRewrite:
    match: str | None = None
    rewrite: str | None = None


@model
class HTTPRewrite:
    uri: str | None = None
    authority: str | None = None
    uri_regex_rewrite: RegexRewrite | None = None


@model
class HTTPRetry:
    attempts: int | None = None
    per_try_timeout: Duration | None = None
    retry_on: str | None = None
    retry_remote_localities: bool | None = None
    retry_ignore_previous_hosts: bool | None = None
    backoff: Duration | None = None


@model
class Delay:
    fixed_delay: Duration | None = None
    exponential_delay: Duration | None = None
    percentage: Percent | None = None
    percent: int | None = None  # deprecated int form


@model
class Abort:
    http_status: int | None = None
    grpc_status: str | None = None
    http2_error: str | None = None
    percentage: Percent | None = None


@model
class HTTPFaultInjection:
    delay: Delay | None = None
    abort: Abort | None = None


@model
class HTTPMirrorPolicy:
    destination: Destination
    percentage: Percent | None = None


class UnmatchedPreflights(StrEnum):
    UNSPECIFIED = "UNSPECIFIED"
    FORWARD = "FORWARD"
    IGNORE = "IGNORE"


@model
class CorsPolicy:
    allow_origins: tuple[StringMatch, ...] = ()
    allow_origin: tuple[str, ...] = ()  # deprecated string form
    allow_methods: tuple[str, ...] = ()
    allow_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    max_age: Duration | None = None
    allow_credentials: bool | None = None
    unmatched_preflights: UnmatchedPreflights | None = None


@model
class HTTPRoute:
    name: str | None = None
    match: tuple[HTTPMatchRequest, ...] = ()
    route: tuple[HTTPRouteDestination, ...] = ()
    redirect: HTTPRedirect | None = None
    direct_response: HTTPDirectResponse | None = None
    delegate: Delegate | None = None
    rewrite: HTTPRewrite | None = None
    timeout: Duration | None = None
    retries: HTTPRetry | None = None
    fault: HTTPFaultInjection | None = None
    mirror: Destination | None = None
    mirrors: tuple[HTTPMirrorPolicy, ...] = ()
    mirror_percentage: Percent | None = None
    mirror_percent: int | None = None  # deprecated
    cors_policy: CorsPolicy | None = None
    headers: Headers | None = None


@model
class RouteDestination:
    destination: Destination
    weight: int | None = None


@model
class L4MatchAttributes:
    destination_subnets: tuple[str, ...] = ()
    port: int | None = None
    source_labels: dict[str, str] = field(default_factory=dict)
    gateways: tuple[str, ...] = ()
    source_namespace: str | None = None


@model
class TLSMatchAttributes:
    sni_hosts: tuple[str, ...] = ()
    destination_subnets: tuple[str, ...] = ()
    port: int | None = None
    source_labels: dict[str, str] = field(default_factory=dict)
    gateways: tuple[str, ...] = ()
    source_namespace: str | None = None


@model
class TCPRoute:
    match: tuple[L4MatchAttributes, ...] = ()
    route: tuple[RouteDestination, ...] = ()


@model
class TLSRoute:
    match: tuple[TLSMatchAttributes, ...] = ()
    route: tuple[RouteDestination, ...] = ()


@model
class VirtualServiceSpec:
    hosts: tuple[str, ...] = ()
    gateways: tuple[str, ...] = ()
    http: tuple[HTTPRoute, ...] = ()
    tls: tuple[TLSRoute, ...] = ()
    tcp: tuple[TCPRoute, ...] = ()
    export_to: tuple[str, ...] = ()
