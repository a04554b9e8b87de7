"""VirtualService HTTPRoutes -> snapshot Routes, as Istio's route.go translates them for Envoy.

One Envoy route per (HTTPRoute, match block); a match whose `port` differs from the listener port,
or whose sourceLabels / sourceNamespace / gateways do not select this proxy, is dropped here;
a catch-all route ends the list. Reference: docs/reference/istio-semantics.md §1.1.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Collection, Mapping
from dataclasses import replace

from sandbox.mesh.names import ClusterKey
from sandbox.mesh.resources.common import StringMatch
from sandbox.mesh.resources.virtualservice import (
    CorsPolicy,
    Destination,
    HeaderOperations,
    Headers,
    HTTPFaultInjection,
    HTTPMatchRequest,
    HTTPRetry,
    HTTPRoute,
)
from sandbox.xds import snapshot as snap

ClusterNamer = Callable[[Destination], str]
SUPPORTED_REDIRECT_CODES = (301, 302, 303, 307, 308)  # route.go ApplyRedirect; others drop the action


def string_matcher(match: StringMatch | None, *, presence: bool = False) -> snap.StringMatcher | None:
    """`{}` and `regex: "*"` mean "present" for headers and query params (route.go
    canBeConvertedToPresentMatch)."""
    if match is None or match.kind is None:
        return snap.StringMatcher(kind="present") if presence else None
    if presence and match.regex == "*":
        return snap.StringMatcher(kind="present")
    kind = match.kind
    return snap.StringMatcher(kind=kind, value=getattr(match, kind))


CLAIMS = "@request.auth.claims"


def claim_path(key: str) -> str:
    """`@request.auth.claims.a.b` or `@request.auth.claims[a][b]` -> `a.b` (Istio's ToRoutingClaim)."""
    rest = key[len(CLAIMS) :]
    if rest.startswith("["):
        return ".".join(part for part in rest.strip("[]").split("][") if part)
    return rest.lstrip(".")


def _keyed(entries: Mapping[str, StringMatch], *, lower: bool, claims: bool = False) -> tuple[snap.KeyMatcher, ...]:
    """The entries that are (`claims`) or are not JWT claim keys, as matchers."""
    out = []
    for name in sorted(entries):
        if name.startswith(CLAIMS) != claims:
            continue
        matcher = string_matcher(entries[name], presence=True)
        assert matcher is not None
        key = claim_path(name) if claims else name.lower() if lower else name
        out.append(snap.KeyMatcher(name=key, match=matcher))
    return tuple(out)


def route_match(match: HTTPMatchRequest | None) -> snap.RouteMatch:
    if match is None:
        return snap.RouteMatch()
    uri = string_matcher(match.uri)
    if uri is not None and match.ignore_uri_case and uri.kind in ("exact", "prefix"):
        # §1.1: ignoreUriCase applies to exact and prefix matching only
        uri = snap.StringMatcher(kind=uri.kind, value=uri.value, ignore_case=True)
    return snap.RouteMatch(
        name=match.name or "",
        uri=uri,
        scheme=string_matcher(match.scheme),
        method=string_matcher(match.method),
        authority=string_matcher(match.authority),
        headers=_keyed({k: v for k, v in match.headers.items() if k not in _PSEUDO}, lower=True),
        without_headers=_keyed(match.without_headers, lower=True),
        query_params=_keyed(match.query_params, lower=False),
        claims=_keyed(match.headers, lower=False, claims=True),
        without_claims=_keyed(match.without_headers, lower=False, claims=True),
    )


_PSEUDO = frozenset({"uri", "scheme", "method", "authority"})  # §1.1: these header keys are ignored


def is_catch_all(m: snap.RouteMatch) -> bool:
    """route.go IsCatchAllRoute: prefix `/` (or regex `.*`) and no header/query conditions."""
    uri_all = (
        m.uri is None
        or (m.uri.kind == "prefix" and m.uri.value == "/")
        or (m.uri.kind == "regex" and m.uri.value == ".*")
    )
    conditions = m.headers or m.without_headers or m.query_params or m.claims or m.without_claims
    return uri_all and not (conditions or m.method or m.scheme or m.authority)


def selects_proxy(
    match: HTTPMatchRequest | None,
    vs_namespace: str,
    proxy_labels: Mapping[str, str],
    proxy_namespace: str,
    gateways: Collection[str],
) -> bool:
    """route.go sourceMatchHTTP: per-match `gateways` (qualified by the VS namespace) override;
    else sourceLabels/sourceNamespace select which client proxies get the route (they are not
    request-time conditions)."""
    if match is None:
        return True
    if match.gateways:
        return any((g if g == "mesh" or "/" in g else f"{vs_namespace}/{g}") in gateways for g in match.gateways)
    if not all(proxy_labels.get(k) == v for k, v in match.source_labels.items()):
        return False
    return not match.source_namespace or match.source_namespace == proxy_namespace


def header_operations(headers: Headers | None) -> tuple[snap.HeaderOperations, str | None]:
    """(operations, authority): a Host/:authority in `set` (or `add`) rewrites the authority and is
    not sent as a header (route.go TranslateHeadersOperations)."""
    if headers is None:
        return snap.HeaderOperations(), None
    request, authority = _mutation(headers.request)
    response, _ = _mutation(headers.response)
    return snap.HeaderOperations(request=request, response=response), authority


def _mutation(ops: HeaderOperations | None) -> tuple[snap.HeaderMutation, str | None]:
    if ops is None:
        return snap.HeaderMutation(), None
    authority = None
    for source in (ops.add, ops.set):  # `set` wins over `add`
        for key, value in source.items():
            if key.lower() in (":authority", "host"):
                authority = value

    def keep(entries: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
        return tuple(sorted((k.lower(), v) for k, v in entries.items() if not _internal(k)))

    return (
        snap.HeaderMutation(
            set=keep(ops.set), add=keep(ops.add), remove=tuple(k.lower() for k in ops.remove if not _internal(k))
        ),
        authority,
    )


def _internal(key: str) -> bool:
    return key.startswith(":") or key.lower() == "host"


def retry_policy(retries: HTTPRetry | None, consistent_hash: bool = False) -> snap.RetryPolicy:
    """retry.go ConvertPolicy: no `retries` -> Istio's default; attempts <= 0 -> none; otherwise
    the default with the given fields overridden (integers in retryOn become retriable codes)."""
    default = snap.RetryPolicy(retry_ignore_previous_hosts=not consistent_hash)
    if retries is None:
        return default
    if not retries.attempts or retries.attempts <= 0:
        return snap.NO_RETRY
    retry_on, codes = default.retry_on, default.retriable_status_codes
    if retries.retry_on:
        on: list[str] = []
        found: list[int] = []
        for part in (p.strip() for p in retries.retry_on.split(",")):
            if part.isdigit() and 100 <= int(part) <= 599:
                found.append(int(part))
            elif part:
                on.append(part)
        if found and "retriable-status-codes" not in on:
            on.append("retriable-status-codes")
        retry_on, codes = tuple(on), tuple(found)
    base = retries.backoff.seconds if retries.backoff else snap.DEFAULT_BACKOFF_BASE
    ignore_previous = default.retry_ignore_previous_hosts
    if retries.retry_ignore_previous_hosts is not None:
        ignore_previous = retries.retry_ignore_previous_hosts
    return snap.RetryPolicy(
        attempts=retries.attempts,
        retry_on=retry_on,
        retriable_status_codes=codes,
        per_try_timeout=retries.per_try_timeout.seconds if retries.per_try_timeout else None,
        backoff_base=base,
        backoff_max=base * 10,  # Envoy: max interval defaults to 10x the base
        retry_ignore_previous_hosts=ignore_previous,
    )


def fault(spec: HTTPFaultInjection | None) -> snap.Fault | None:
    """route.go TranslateFault: a delay without `percentage` falls back to the deprecated int
    `percent` (default 0); an abort without `percentage` never fires (§1.1)."""
    if spec is None:
        return None
    delay = delay_pct = None
    if spec.delay is not None and spec.delay.fixed_delay is not None:  # exponentialDelay is unsupported
        delay = spec.delay.fixed_delay.seconds
        delay_pct = spec.delay.percentage.value if spec.delay.percentage else float(spec.delay.percent or 0)
    abort_status = abort_grpc = None
    abort_pct = 0.0
    if spec.abort is not None and (spec.abort.http_status is not None or spec.abort.grpc_status):
        abort_status = spec.abort.http_status
        abort_grpc = spec.abort.grpc_status
        abort_pct = spec.abort.percentage.value if spec.abort.percentage else 0.0
    if delay is None and abort_status is None and abort_grpc is None:
        return None
    return snap.Fault(
        delay=delay,
        delay_percentage=delay_pct or 0.0,
        abort_status=abort_status,
        abort_grpc_status=abort_grpc,
        abort_percentage=abort_pct,
    )


def cors(policy: CorsPolicy | None) -> snap.Cors | None:
    if policy is None:
        return None
    origins: tuple[snap.StringMatcher, ...]
    if policy.allow_origins:
        origins = tuple(m for m in (string_matcher(o) for o in policy.allow_origins) if m is not None)
    else:  # deprecated string form: exact matches
        origins = tuple(snap.StringMatcher(kind="exact", value=o) for o in policy.allow_origin)
    unmatched = policy.unmatched_preflights
    return snap.Cors(
        allow_origins=origins,
        allow_methods=tuple(policy.allow_methods),
        allow_headers=tuple(policy.allow_headers),
        expose_headers=tuple(policy.expose_headers),
        max_age=float(int(policy.max_age.seconds)) if policy.max_age else None,
        allow_credentials=policy.allow_credentials,
        unmatched_preflights="IGNORE" if unmatched is not None and unmatched.value == "IGNORE" else "FORWARD",
    )


def operation(route: snap.Route, vs_name: str, port: int) -> str:
    """route.go GetRouteOperation: `host:port` + path pattern for one cluster, else `vs:port`."""
    uri = route.match.uri
    path = "/*" if uri is None else (uri.value + "*" if uri.kind == "prefix" else uri.value)
    if len(route.clusters) == 1:
        try:
            key = ClusterKey.parse(route.clusters[0].cluster)
        except ValueError:
            key = None
        if key is not None:
            return f"{key.host}:{key.port}{path}"
    return f"{vs_name}:{port}{path}"


def translate_route(
    http: HTTPRoute,
    match: HTTPMatchRequest | None,
    cluster_of: ClusterNamer,
    vs_name: str,
    port: int,
    hashed_clusters: Collection[str] = (),
) -> snap.Route | None:
    """One Envoy route, or None when Istio would build no action (an unsupported redirect code)."""
    name = http.name or ""
    if match is not None and match.name:
        name = f"{name}.{match.name}"
    ops, authority = header_operations(http.headers)
    if http.redirect is not None:
        r = http.redirect
        code = r.redirect_code or 301  # §1.1: default 301
        if code not in SUPPORTED_REDIRECT_CODES:
            return None
        redirect = snap.Redirect(
            uri=r.uri,
            authority=r.authority,
            port=r.port,
            derive_port=r.derive_port.value if r.derive_port is not None else None,
            scheme=r.scheme,
            code=code,
        )
        action = snap.Route(redirect=redirect, retry=snap.NO_RETRY)
    elif http.direct_response is not None:
        action = snap.Route(direct_response=_direct(http), retry=snap.NO_RETRY)
    else:
        action = _forward(http, cluster_of, authority, hashed_clusters)
    route = replace(
        action,
        name=name,
        match=route_match(match),
        headers=ops,
        fault=fault(http.fault),
        cors=cors(http.cors_policy),
    )
    return replace(route, operation=operation(route, vs_name, port))


def _direct(http: HTTPRoute) -> snap.DirectResponse:
    assert http.direct_response is not None
    body = http.direct_response.body
    text = ""
    if body is not None and body.string is not None:
        text = body.string
    elif body is not None and body.bytes is not None:
        try:
            text = base64.b64decode(body.bytes).decode("utf-8", "replace")
        except (binascii.Error, ValueError):
            text = ""
    return snap.DirectResponse(status=http.direct_response.status, body=text)


def _forward(
    http: HTTPRoute, cluster_of: ClusterNamer, authority: str | None, hashed_clusters: Collection[str]
) -> snap.Route:
    destinations = http.route
    clusters: list[snap.WeightedCluster] = []
    for dst in destinations:
        weight = dst.weight or 0
        if len(destinations) > 1 and weight == 0:
            continue  # route.go: zero-weight destinations are dropped when there are others
        ops, dst_authority = header_operations(dst.headers)
        clusters.append(
            snap.WeightedCluster(
                cluster=cluster_of(dst.destination),
                weight=weight if len(destinations) > 1 else 100,  # §1.1: a single destination gets 100%
                headers=ops,
                authority=dst_authority,
            )
        )
    rewrite = None
    rw = http.rewrite
    if rw is not None and rw.authority:
        authority = rw.authority
    if rw is not None or authority:
        regex = rw.uri_regex_rewrite if rw is not None else None
        rewrite = snap.Rewrite(
            uri=(rw.uri or None) if rw is not None and regex is None else None,
            authority=authority,
            uri_regex_match=regex.match if regex is not None else None,
            uri_regex_rewrite=(regex.rewrite or "") if regex is not None else None,
        )
    mirrors: list[snap.Mirror] = []
    if http.mirror is not None:
        pct = _mirror_percent(http)
        if pct > 0:
            mirrors.append(snap.Mirror(cluster=cluster_of(http.mirror), percentage=pct))
    for policy in http.mirrors:
        pct = policy.percentage.value if policy.percentage is not None else 100.0  # absent: 100% (§1.1)
        if pct > 0:
            mirrors.append(snap.Mirror(cluster=cluster_of(policy.destination), percentage=min(pct, 100.0)))
    return snap.Route(
        clusters=tuple(clusters),
        rewrite=rewrite,
        timeout=http.timeout.seconds if http.timeout and http.timeout.seconds > 0 else None,  # 0s: disabled
        # route.go: a single destination balanced by consistent hash retries without the previous-hosts predicate
        retry=retry_policy(
            http.retries, len(http.route) == 1 and bool(clusters) and clusters[0].cluster in hashed_clusters
        ),
        mirrors=tuple(mirrors),
    )


def _mirror_percent(http: HTTPRoute) -> float:
    """route.go MirrorPercent: mirrorPercentage, else the deprecated mirrorPercent, else 100."""
    if http.mirror_percentage is not None:
        return min(http.mirror_percentage.value, 100.0)
    if http.mirror_percent is not None:
        return float(min(http.mirror_percent, 100))
    return 100.0


def default_route(cluster: str, fqdn: str, port: int) -> snap.Route:
    """route.go BuildDefaultHTTPOutboundRoute: name `default`, Istio's default retry, no timeout."""
    return snap.Route(name="default", clusters=(snap.WeightedCluster(cluster=cluster),), operation=f"{fqdn}:{port}/*")


def cluster_namer(
    resolve: Callable[[str], str], service_port: Callable[[str], int | None], listen_port: int
) -> ClusterNamer:
    """route.go GetDestinationCluster: destination.port, else the service's only port, else the
    listener port."""

    def name(destination: Destination) -> str:
        host = resolve(destination.host)
        port = destination.port.number if destination.port and destination.port.number else None
        return str(ClusterKey.outbound(host, port or service_port(host) or listen_port, destination.subset))

    return name
