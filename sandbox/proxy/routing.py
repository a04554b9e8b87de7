"""route(head, snapshot, rng) -> RouteDecision: Istio's HTTP routing, pure and precompiled.

`RouteTable(snapshot)` compiles a snapshot's route configurations once (the sidecar builds one
per snapshot it takes); each call then costs a domain lookup, the first matching route's checks and
one decision. Random draws (weighted clusters, fault and mirror percentages) come from the
injected `rng`, so tests seed it. Semantics: docs/reference/istio-semantics.md §1.1 and §1.5.

The data path routes with `prototypes=True`: where the route rewrites neither path nor authority
and adds nothing per request, it returns one decision built ahead of time, whose empty `path`
and `authority` mean "as the request has them" (the forwarder reads them that way).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from sandbox.proxy.decision import (
    FLAG_FAULT_ABORT,
    FLAG_FAULT_DELAY,
    FLAG_NO_CLUSTER,
    DecisionKind,
    RequestHead,
    RouteDecision,
    no_route,
)
from sandbox.proxy.matching import CompiledMatch, regex_substitution, string_test
from sandbox.xds.snapshot import (
    HeaderMutation,
    ProxySnapshot,
    Redirect,
    Route,
    RouteConfiguration,
    VirtualHost,
    WeightedCluster,
)

__all__ = ["DecisionKind", "RandomSource", "RequestHead", "RouteDecision", "RouteTable", "route"]

MILLION = 1_000_000
TIMEOUT_HEADER = "x-envoy-upstream-rq-timeout-ms"  # per-request override of the route timeout (§1.1)
_EMPTY: tuple[HeaderMutation, ...] = ()


class RandomSource(Protocol):
    def random(self) -> float: ...


def per_million(percentage: float) -> int:
    """Istio: a Percent becomes an Envoy FractionalPercent of value*10000 per MILLION (§1.1)."""
    return int(percentage * 10000)


def _mutations(*levels: HeaderMutation) -> tuple[HeaderMutation, ...]:
    return tuple(m for m in levels if not m.empty)


# The hot path builds RouteDecision positionally (3x faster than by keyword): _Target.tail follows its
# field order after (kind, cluster, path, authority); tests/proxy/test_routing.py guards that order.


class _Target:
    """One weighted cluster with everything about it computed ahead of time."""

    __slots__ = ("authority", "cluster", "prototype", "request_headers", "response_headers", "tail", "weight")

    def __init__(self, wc: WeightedCluster, route: Route, vh: VirtualHost) -> None:
        self.cluster = wc.cluster
        self.weight = wc.weight
        # destination level first, then route level: the route's `set` wins (Envoy's default order)
        self.request_headers = _mutations(wc.headers.request, route.headers.request)
        self.response_headers = _mutations(wc.headers.response, route.headers.response)
        rewrite = route.rewrite.authority if route.rewrite is not None else None
        self.authority = rewrite or wc.authority
        # RouteDecision fields after kind, cluster, path, authority, for a plain forward
        self.tail = (
            route.timeout,
            route.retry,
            (),
            None,
            None,
            None,
            0,
            "",
            "",
            self.request_headers,
            self.response_headers,
            route.name,
            vh.name,
            vh.service,
            route.operation,
            "-",
        )
        # forward_route's decision for a plain route without a path rewrite: "" = the request's own
        self.prototype = RouteDecision(DecisionKind.FORWARD, self.cluster, "", self.authority or "", *self.tail)


class _CompiledRoute:
    __slots__ = (
        "abort_pm",
        "cors",
        "cors_origins",
        "delay_pm",
        "direct",
        "match",
        "mirrors",
        "path_rewrite",
        "plain",
        "redirect",
        "route",
        "targets",
        "total_weight",
    )

    def __init__(self, route: Route, vh: VirtualHost) -> None:
        self.route = route
        self.match = CompiledMatch(route.match)
        single = len(route.clusters) == 1
        self.targets = tuple(_Target(wc, route, vh) for wc in route.clusters if single or wc.weight > 0)
        self.total_weight = sum(t.weight for t in self.targets)
        self.redirect = route.redirect
        self.direct = route.direct_response
        fault = route.fault
        self.delay_pm = per_million(fault.delay_percentage) if fault and fault.delay is not None else 0
        aborts = fault is not None and (fault.abort_status is not None or fault.abort_grpc_status is not None)
        self.abort_pm = per_million(fault.abort_percentage) if fault and aborts else 0
        self.mirrors = tuple((m.cluster, per_million(m.percentage)) for m in route.mirrors)
        self.cors = route.cors
        self.cors_origins = tuple(string_test(o) for o in route.cors.allow_origins) if route.cors else ()
        self.path_rewrite = self._path_rewrite(route)
        # nothing to draw or add per request beyond the cluster pick: the fast path applies
        self.plain = not (self.delay_pm or self.abort_pm or self.mirrors or self.cors)

    def _path_rewrite(self, route: Route) -> Callable[[str], str] | None:
        rw = route.rewrite
        if rw is None:
            return None
        if rw.uri_regex_match is not None:
            return regex_substitution(rw.uri_regex_match, rw.uri_regex_rewrite or "")
        if rw.uri is None:
            return None
        new = rw.uri
        if self.match.uri_kind == "prefix":
            # Envoy prefix_rewrite: only the matched prefix is replaced (no uri match = prefix "/")
            cut = len(self.match.uri_value)
            return lambda path: new + path[cut:]
        return lambda path: new  # exact or regex: the whole path

    def pick(self, rng: RandomSource) -> _Target | None:
        targets = self.targets
        if len(targets) == 1:
            return targets[0]
        if self.total_weight <= 0:
            return None
        draw = rng.random() * self.total_weight  # weight / sum(weights), §1.1
        for target in targets:
            draw -= target.weight
            if draw < 0:
                return target
        return targets[-1]


class _VirtualHost:
    __slots__ = ("name", "routes", "service")

    def __init__(self, vh: VirtualHost) -> None:
        self.name = vh.name
        self.service = vh.service
        self.routes = tuple(_CompiledRoute(r, vh) for r in vh.routes)


class _PortTable:
    """Envoy virtual host selection: exact domain, then the longest `*.suffix`, then `prefix.*`, then `*`."""

    __slots__ = ("exact", "prefixes", "star", "suffixes")

    def __init__(self, rc: RouteConfiguration) -> None:
        self.exact: dict[str, _VirtualHost] = {}
        suffixes: list[tuple[str, _VirtualHost]] = []
        prefixes: list[tuple[str, _VirtualHost]] = []
        self.star: _VirtualHost | None = None
        for vh in rc.virtual_hosts:
            compiled = _VirtualHost(vh)
            for domain in vh.domains:
                d = domain.lower()
                if d == "*":
                    self.star = self.star or compiled
                elif d.startswith("*"):
                    suffixes.append((d[1:], compiled))
                elif d.endswith("*"):
                    prefixes.append((d[:-1], compiled))
                else:
                    self.exact.setdefault(d, compiled)
        self.suffixes = tuple(sorted(suffixes, key=lambda s: -len(s[0])))
        self.prefixes = tuple(sorted(prefixes, key=lambda s: -len(s[0])))

    def lookup(self, host: str) -> _VirtualHost | None:
        found = self.exact.get(host)
        if found is not None:
            return found
        for suffix, vh in self.suffixes:
            if host.endswith(suffix) and len(host) > len(suffix):
                return vh
        for prefix, vh in self.prefixes:
            if host.startswith(prefix) and len(host) > len(prefix):
                return vh
        return self.star


class RouteTable:
    """A snapshot's routes, compiled."""

    def __init__(self, snapshot: ProxySnapshot) -> None:
        self.version = snapshot.version
        self.ports = {rc.port: _PortTable(rc) for rc in snapshot.route_configs}
        self.router = snapshot.identity.kind == "router"
        self.clusters = frozenset(c.name for c in snapshot.clusters)
        self.fallback: _PortTable | None = None
        if not self.router:  # ports with no route config still reach the allow_any/block_all host
            for rc in snapshot.route_configs:
                table = self.ports[rc.port]
                if table.star is not None:
                    self.fallback = _PortTable(RouteConfiguration(name="fallback", port=0, virtual_hosts=()))
                    self.fallback.star = table.star
                    break

    def virtual_host(self, head: RequestHead) -> _VirtualHost | None:
        table = self.ports.get(head.port) or self.fallback
        if table is None:
            return None
        host = head.authority.lower()
        vh = table.lookup(host)
        if vh is table.star and self.router and ":" in host:
            # gateways answer `host:port` for a host-only domain (Istio strips the port there)
            vh = table.lookup(host.rsplit(":", 1)[0])
        return vh

    def route(self, head: RequestHead, rng: RandomSource, prototypes: bool = False) -> RouteDecision:
        """The decision for `head`; with `prototypes`, forward_route's shared decisions where they apply."""
        vh = self.virtual_host(head)
        if vh is None:
            return no_route()
        path, sep, query = head.path.partition("?")
        for compiled in vh.routes:
            if compiled.match.matches(path, head, query):
                return self._decide(compiled, vh, head, path, sep + query, rng, prototypes)
        return no_route(vh.name)

    def _decide(
        self,
        cr: _CompiledRoute,
        vh: _VirtualHost,
        head: RequestHead,
        path: str,
        query: str,
        rng: RandomSource,
        prototypes: bool = False,
    ) -> RouteDecision:
        route = cr.route
        if cr.cors is not None:
            preflight = _preflight(cr, vh, head)
            if preflight is not None:
                return preflight
        if cr.redirect is not None:
            return RouteDecision(
                DecisionKind.REDIRECT,
                status=cr.redirect.code,
                location=_location(cr.redirect, head, path, query),
                response_headers=_mutations(route.headers.response),
                route_name=route.name,
                virtual_host=vh.name,
                service=vh.service,
            )
        if cr.direct is not None:
            return RouteDecision(
                DecisionKind.DIRECT_RESPONSE,
                status=cr.direct.status,
                body=cr.direct.body,
                response_headers=_mutations(route.headers.response),
                route_name=route.name,
                virtual_host=vh.name,
                service=vh.service,
            )
        target = cr.pick(rng)
        if target is None or target.cluster not in self.clusters:
            # Envoy: the route names a cluster that does not exist (e.g. an undefined subset) -> 503 NC
            return RouteDecision(
                DecisionKind.NO_CLUSTER,
                cluster=target.cluster if target else "",
                status=503,
                route_name=route.name,
                virtual_host=vh.name,
                service=vh.service,
                response_flags=FLAG_NO_CLUSTER,
            )
        if cr.plain and TIMEOUT_HEADER not in head.headers:
            if cr.path_rewrite is None:
                if prototypes:
                    return target.prototype
                return RouteDecision(
                    DecisionKind.FORWARD, target.cluster, head.path, target.authority or head.authority, *target.tail
                )
            new_path = cr.path_rewrite(path) + query
            return RouteDecision(
                DecisionKind.FORWARD, target.cluster, new_path, target.authority or head.authority, *target.tail
            )
        new_path = head.path if cr.path_rewrite is None else cr.path_rewrite(path) + query
        delay = abort = None
        flags = "-"
        fault = route.fault
        if fault is not None:
            # delay and abort are drawn independently (Envoy's fault filter)
            if cr.delay_pm and rng.random() * MILLION < cr.delay_pm:
                delay = fault.delay
                flags = FLAG_FAULT_DELAY
            if cr.abort_pm and rng.random() * MILLION < cr.abort_pm:
                abort = fault.abort_status if fault.abort_status is not None else 200  # gRPC aborts answer 200
                flags = FLAG_FAULT_ABORT if flags == "-" else f"{FLAG_FAULT_DELAY},{FLAG_FAULT_ABORT}"
        mirrors: tuple[str, ...] = ()
        if cr.mirrors:
            mirrors = tuple(c for c, pm in cr.mirrors if pm >= MILLION or rng.random() * MILLION < pm)
        timeout = route.timeout
        override = head.headers.get(TIMEOUT_HEADER)
        if override is not None and override.isdigit():
            timeout = int(override) / 1000 or None
        response_headers = target.response_headers
        if cr.cors is not None:
            response_headers = response_headers + _cors_headers(cr, head)
        return RouteDecision(
            DecisionKind.FORWARD,
            cluster=target.cluster,
            path=new_path,
            authority=target.authority or head.authority,
            timeout=timeout,
            retry=route.retry,
            mirrors=mirrors,
            delay=delay,
            abort_status=abort,
            abort_grpc_status=fault.abort_grpc_status if abort is not None and fault is not None else None,
            status=abort or 0,
            body="fault filter abort" if abort is not None else "",
            request_headers=target.request_headers,
            response_headers=response_headers,
            route_name=route.name,
            virtual_host=vh.name,
            service=vh.service,
            operation=route.operation,
            response_flags=flags,
        )


def route(head: RequestHead, snapshot: ProxySnapshot, rng: RandomSource) -> RouteDecision:
    """Where this request goes under `snapshot` (first matching route of the matching virtual host).
    Compiles the snapshot's routes for this one call: whoever routes many requests keeps a RouteTable."""
    return RouteTable(snapshot).route(head, rng)


class OutboundRouter:
    """The outbound listener's router, a compiled callable (a listener calls it once per request)
    over the current snapshot's RouteTable, which the sidecar replaces with each snapshot."""

    def __init__(self, table: RouteTable, rng: RandomSource) -> None:
        self.table = table
        self.rng = rng

    def __call__(self, head: RequestHead) -> RouteDecision:
        return self.table.route(head, self.rng, True)


class GatewayRouter:
    """A gateway listener's router: it routes with its Gateway server port's table, whatever port
    it binds and whatever port the Host header names (Envoy picks the route config by listener).
    Reads the table from the sidecar's outbound router, so pushes reach it too."""

    def __init__(self, port: int, outbound: OutboundRouter) -> None:
        self.port = port
        self.outbound = outbound

    def __call__(self, head: RequestHead) -> RouteDecision:
        if head.port != self.port:
            claims = head.claims
            head = RequestHead(head.method, head.path, head.authority, head.headers, self.port, head.scheme)
            head.claims = claims
        return self.outbound.table.route(head, self.outbound.rng, True)


class CachingRouter:
    """Decisions by (port, authority), each made once by `decide`: the inbound listener's router,
    whose decision depends on nothing else. Cleared with each snapshot."""

    def __init__(self, decide: Callable[[RequestHead], RouteDecision]) -> None:
        self.decide = decide
        self.cache: dict[tuple[int, str], RouteDecision] = {}

    def __call__(self, head: RequestHead) -> RouteDecision:
        key = (head.port, head.authority)
        decision = self.cache.get(key)
        if decision is None:
            decision = self.decide(head)
            if len(self.cache) > 1024:  # authorities are client input: keep the cache bounded
                self.cache.clear()
            self.cache[key] = decision
        return decision

    def clear(self) -> None:
        self.cache.clear()


# --------------------------------------------------------------------------- redirect and CORS


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _location(r: Redirect, head: RequestHead, path: str, query: str) -> str:
    """Envoy's redirect URI (http/utility.cc newUri) as Istio's ApplyRedirect configures it."""
    scheme = r.scheme or head.scheme
    port = r.port
    if port is None and r.derive_port == "FROM_REQUEST_PORT":
        port = head.port  # Istio writes the listener port; FROM_PROTOCOL_DEFAULT sets no port at all
    if port is not None and _DEFAULT_PORTS.get(scheme) == port:
        port = None  # Istio drops an explicit :80 for http and :443 for https
    final_port = f":{port}" if port else ""
    if r.authority:
        host = r.authority
    else:
        # Envoy processRequestHost: the request's port goes when a port is set, or when the scheme
        # changes away from the old scheme's default port
        host = head.authority
        request_port = host.rpartition(":")[2] if ":" in host and not host.endswith("]") else ""
        remove = bool(final_port) or (
            scheme != head.scheme and request_port == str(_DEFAULT_PORTS.get(head.scheme, ""))
        )
        if request_port and remove:
            host = _strip_port(host)
    new_path = path if r.uri is None else r.uri
    if "?" not in new_path:  # a redirect path without a query keeps the request's query
        new_path += query
    return f"{scheme}://{host}{final_port}{new_path}"


def _strip_port(host: str) -> str:
    if host.startswith("["):  # IPv6 literal
        end = host.find("]")
        return host[: end + 1] if end > 0 else host
    return host.rsplit(":", 1)[0] if ":" in host else host


def _origin_allowed(cr: _CompiledRoute, origin: str) -> bool:
    # Envoy's CORS filter: a matcher that accepts "*" allows every origin
    return any(test(origin) or test("*") for test in cr.cors_origins)


def _cors_headers(cr: _CompiledRoute, head: RequestHead) -> tuple[HeaderMutation, ...]:
    cors = cr.cors
    origin = head.headers.get("origin")
    if cors is None or not origin or not _origin_allowed(cr, origin):
        return _EMPTY
    values = [("access-control-allow-origin", origin)]
    if cors.allow_credentials:
        values.append(("access-control-allow-credentials", "true"))
    if cors.expose_headers:
        values.append(("access-control-expose-headers", ",".join(cors.expose_headers)))
    return (HeaderMutation(set=tuple(values)),)


def _preflight(cr: _CompiledRoute, vh: _VirtualHost, head: RequestHead) -> RouteDecision | None:
    """Envoy's CORS filter: a preflight (OPTIONS + Origin + Access-Control-Request-Method) is
    answered locally with 200; one from an origin not allowed is forwarded instead unless
    unmatchedPreflights is IGNORE (then the 200 carries no Access-Control-Allow-Origin)."""
    headers = head.headers
    origin = headers.get("origin")
    request_method = headers.get("access-control-request-method")
    if head.method != "OPTIONS" or not origin or not request_method:
        return None
    cors = cr.cors
    assert cors is not None
    allowed = _origin_allowed(cr, origin)
    if not allowed and cors.unmatched_preflights != "IGNORE":
        return None
    values = [("access-control-allow-origin", origin)] if allowed else []
    if cors.allow_credentials:
        values.append(("access-control-allow-credentials", "true"))
    methods = ",".join(cors.allow_methods)
    if methods:
        values.append(("access-control-allow-methods", request_method if methods == "*" else methods))
    allow_headers = ",".join(cors.allow_headers)
    if allow_headers == "*":
        allow_headers = headers.get("access-control-request-headers", "")
    if allow_headers:
        values.append(("access-control-allow-headers", allow_headers))
    if cors.max_age is not None:
        values.append(("access-control-max-age", str(int(cors.max_age))))
    return RouteDecision(
        DecisionKind.DIRECT_RESPONSE,
        status=200,
        response_headers=(HeaderMutation(set=tuple(values)),) if values else (),
        route_name=cr.route.name,
        virtual_host=vh.name,
        service=vh.service,
        details="cors_response",  # Envoy's CORS filter answers it, not the router
    )
