"""RouteDecision: what `route()` tells the data path to do with one request (pure data).

The data path only carries it out: forward to `cluster` (with `path`/`authority` rewritten,
after `delay`, unless `abort_status` is set), or answer locally (`redirect`, `direct_response`,
`no_route`, `no_cluster`) with `status`, `body` and `response_flags`. Statuses, bodies and flags
follow Envoy as Istio configures it (docs/reference/istio-semantics.md §1.5).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sandbox.xds.snapshot import NO_RETRY, HeaderMutation, RetryPolicy

FAULT_ABORT_BODY = "fault filter abort"  # Envoy's fault filter local reply (§1.1 Fault)
FLAG_NO_ROUTE = "NR"
FLAG_NO_CLUSTER = "NC"
FLAG_FAULT_ABORT = "FI"
FLAG_FAULT_DELAY = "DI"


class DecisionKind(StrEnum):
    FORWARD = "forward"
    REDIRECT = "redirect"
    DIRECT_RESPONSE = "direct_response"
    NO_ROUTE = "no_route"  # 404 NR, empty body
    NO_CLUSTER = "no_cluster"  # 503 NC: the route names a cluster the snapshot lacks (e.g. unknown subset)


@dataclass(slots=True, eq=True)
class RouteDecision:
    """Treat as immutable. Not `frozen` on purpose: a frozen dataclass's __init__ costs ~4 us for
    these fields (one object.__setattr__ each), and route() builds one per request."""

    kind: DecisionKind
    # where it goes (FORWARD)
    cluster: str = ""
    path: str = ""  # path+query to send upstream (rewritten)
    authority: str = ""  # Host/:authority to send upstream (rewritten)
    timeout: float | None = None  # seconds; None: no route timeout (Istio's default)
    retry: RetryPolicy = NO_RETRY
    mirrors: tuple[str, ...] = ()  # clusters to shadow this request to (already sampled); Host gets -shadow
    # fault injection, already sampled against the route's percentages
    delay: float | None = None  # seconds to wait before forwarding (flag DI)
    abort_status: int | None = None  # answer this status with FAULT_ABORT_BODY instead (flag FI)
    abort_grpc_status: str | None = None
    # local replies (REDIRECT, DIRECT_RESPONSE, NO_ROUTE, NO_CLUSTER, CORS preflight)
    status: int = 0
    body: str = ""
    location: str = ""  # REDIRECT
    # header operations in the order to apply them (destination level first, then route: the
    # less specific level wins on conflicts, as with Envoy's default most_specific_header_mutations_wins=false)
    request_headers: tuple[HeaderMutation, ...] = ()
    response_headers: tuple[HeaderMutation, ...] = ()
    # for telemetry: the Envoy route name, virtual host, span name (operation), response flags
    route_name: str = ""
    virtual_host: str = ""
    service: str = ""  # destination service FQDN when known
    operation: str = ""  # Envoy's decorator: the span name, e.g. `reviews.default.svc.cluster.local:9080/*`
    response_flags: str = "-"
    details: str = ""  # RESPONSE_CODE_DETAILS of a local reply, where its kind does not say (cors_response)

    @property
    def local_reply(self) -> bool:
        return self.kind is not DecisionKind.FORWARD or self.abort_status is not None


def no_route(virtual_host: str = "") -> RouteDecision:
    return RouteDecision(DecisionKind.NO_ROUTE, status=404, virtual_host=virtual_host, response_flags=FLAG_NO_ROUTE)


@dataclass(slots=True, eq=False, init=False)
class RequestHead:
    """What routing sees of a request. Header names are lowercase; repeated headers joined by ','.
    `port` is the destination port (from SO_ORIGINAL_DST, the absolute-form URL, or the listener).

    Treat as immutable. Not `frozen`: a frozen dataclass's __init__ costs ~3 us (one
    object.__setattr__ per field), and the data path builds one per request. The __init__ is
    written out because mypyc compiles it; the one @dataclass generates stays interpreted."""

    method: str
    path: str  # path + query, as on the request line
    authority: str
    headers: dict[str, str]
    port: int
    scheme: str
    claims: dict[str, Any] | None  # the verified JWT's payload (jwt_authn), for `@request.auth.claims` matches

    def __init__(
        self, method: str, path: str, authority: str, headers: dict[str, str], port: int, scheme: str = "http"
    ) -> None:
        self.method = method
        self.path = path
        self.authority = authority
        self.headers = headers
        self.port = port
        self.scheme = scheme
        self.claims = None


def shadow_authority(authority: str) -> str:
    """The Host a mirrored request carries: `httpbin:8000` -> `httpbin-shadow:8000` (§1.1 Mirror)."""
    if authority.startswith("["):  # an IPv6 literal keeps its brackets
        end = authority.find("]") + 1
        return authority[:end] + "-shadow" + authority[end:]
    host, sep, port = authority.partition(":")
    return f"{host}-shadow{sep}{port}"
