"""The HTTP filters before the router on a sidecar's inbound side and on a gateway. Compiled.

Envoy's order there, as Istio builds it: jwt_authn (RequestAuthentication), then ext_authz for
CUSTOM policies, then RBAC (DENY, then ALLOW), then the router. `AccessFilters(snapshot.access)`
is compiled once per snapshot (Sidecar.update) and sits on the listener's ForwardContext; a proxy
that no policy selects has none there and pays nothing per request.

A request the filters refuse gets a local reply through its Exchange, so it is logged, traced and
counted like any: 401/403 `jwt_authn_access_denied{...}` for a bad token, 403 `RBAC: access denied`
with `rbac_access_denied_matched_policy[...]` for RBAC, the provider's answer with flag UAEX for
CUSTOM. The route is resolved first (Envoy's HCM does, and logs the route and cluster it chose).
Verified claims go on the RequestHead before routing, so VirtualService matches on
`@request.auth.claims` see them. Dry-run policies are logged as Envoy's RBAC filter logs them
(`shadow denied, matched policy ...`), tagged on the span and counted.
"""

from __future__ import annotations

import logging
from typing import Any

from sandbox.proxy.authz import DENIED_BODY, Authorizer, AuthzRequest
from sandbox.proxy.context import HttpFilters, Router
from sandbox.proxy.decision import RequestHead, RouteDecision
from sandbox.proxy.extauthz import FLAG, CheckResult, ExtAuthz, ExtAuthzCheck
from sandbox.proxy.forwarder import Exchange
from sandbox.proxy.jwt_authn import MAX_URI, JwtAuthenticator
from sandbox.xds.access import AccessPolicy
from sandbox.xds.snapshot import HeaderMutation

log = logging.getLogger("sandbox.proxy.rbac")


class FilterStats:
    """Envoy's per-filter counters (`http.<prefix>.rbac.denied`, ...), for the admin /stats."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.counts: dict[str, int] = {}

    def add(self, name: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1

    def items(self) -> list[tuple[str, int]]:
        return sorted((f"http.{self.prefix}.{name}", n) for name, n in self.counts.items())


class AccessFilters(HttpFilters):
    def __init__(self, access: AccessPolicy, stats: FilterStats | None = None) -> None:
        self.access = access
        self.jwt = JwtAuthenticator(access.jwt) if access.jwt else None
        self.authz = Authorizer(access.policies) if access.policies else None
        self.providers = {p.name: ExtAuthz(p) for p in access.providers}
        self.stats = stats if stats is not None else FilterStats("inbound_0.0.0.0_0")  # kept across snapshots

    def run(self, exchange: Any, router: Router) -> None:
        ex: Exchange = exchange
        head = ex.head
        principal = ""
        claims: dict[str, Any] | None = None
        jwt = self.jwt
        if jwt is not None:
            outcome = jwt.authenticate(head.headers, head.path)
            if outcome is not None and outcome.failure:
                self.stats.add("jwt_authn.denied")
                realm = f'Bearer realm="{_original_uri(head)}", error="invalid_token"'
                ex.deny(
                    _route_quietly(router, head),
                    outcome.status,
                    outcome.failure,
                    (("www-authenticate", realm),),
                    outcome.details,
                    "",
                )
                return
            self.stats.add("jwt_authn.allowed")
            if outcome is not None and outcome.verified is not None:
                principal = outcome.verified.principal
                claims = head.claims = outcome.verified.payload
        try:
            decision = router(head)
        except Exception:  # a routing bug must cost one request, not the connection or the process
            ex.local_reply(500, "internal routing error", (), "internal_error")
            return
        authz = self.authz
        if authz is None:
            ex.start(decision)
            return
        request = self.request(ex, principal, claims)
        if authz.custom:
            entry = authz.custom_match(request)
            if entry is not None:
                provider = self.providers.get(entry.provider)
                if provider is None:  # the control plane resolves every provider it names; never here
                    self.stats.add("ext_authz.error")
                    ex.deny(decision, 403, "", (), "ext_authz_error", FLAG)
                    return
                pending = PendingCheck(self, ex, decision, request)
                ExtAuthzCheck(provider, ex.ctx, head, pending.done).start()
                return
        self.authorize(ex, decision, request)

    def request(self, ex: Exchange, principal: str, claims: dict[str, Any] | None) -> AuthzRequest:
        head = ex.head
        down = ex.down
        xff = head.headers.get("x-forwarded-for")
        # remote.ip: the original client, the last X-Forwarded-For hop (Envoy, xff_num_trusted_hops 0)
        remote = xff.rpartition(",")[2].strip() if xff else down.peer_ip
        local = down.local_address.rpartition(":")[0].strip("[]")
        request = AuthzRequest(
            head.method,
            head.path,
            head.authority,
            head.headers,
            head.port,
            down.peer_principal,
            down.peer_ip,
            remote,
            local,
            down.sni,
        )
        request.request_principal = principal
        request.claims = claims
        return request

    def authorize(self, ex: Exchange, decision: RouteDecision, request: AuthzRequest) -> None:
        authz = self.authz
        assert authz is not None
        if authz.dry_run:
            self._shadow(ex, request)
        verdict = authz.check(request)
        if verdict.allowed:
            self.stats.add("rbac.allowed")
            ex.start(decision)
        else:
            self.stats.add("rbac.denied")
            ex.deny(decision, 403, DENIED_BODY, (), verdict.details, "")

    def _shadow(self, ex: Exchange, request: AuthzRequest) -> None:
        authz = self.authz
        assert authz is not None
        tags: list[tuple[str, str]] = []
        for s in authz.shadow(request):
            log.info("shadow %s, matched policy %s", s.result, s.policy)  # Envoy's RBAC filter, word for word
            self.stats.add(f"rbac.istio_dry_run_{s.action}_shadow_{s.result}")
            tags.append((f"istio.authorization.dry_run.{s.action}_policy.name", s.policy))
            tags.append((f"istio.authorization.dry_run.{s.action}_policy.result", s.result))
        ex.span_tags = tuple(tags)


class PendingCheck:
    """A request waiting for its extension provider's answer."""

    def __init__(self, filters: AccessFilters, ex: Exchange, decision: RouteDecision, request: AuthzRequest) -> None:
        self.filters = filters
        self.ex = ex
        self.decision = decision
        self.request = request

    def done(self, result: CheckResult) -> None:
        ex = self.ex
        if ex.finished:
            return  # the client went away while the provider was deciding
        stats = self.filters.stats
        if not result.allowed:
            stats.add("ext_authz.denied" if result.details == "ext_authz_denied" else "ext_authz.error")
            ex.deny(self.decision, result.status, result.body, tuple(result.headers), result.details, FLAG)
            return
        stats.add("ext_authz.ok")
        headers = ex.head.headers
        for name, value in result.upstream:
            headers[name] = value
        decision = self.decision
        if result.headers:
            extra = HeaderMutation(add=tuple(result.headers))
            decision = _with_response_headers(decision, extra)
        self.filters.authorize(ex, decision, self.request)


def _with_response_headers(decision: RouteDecision, extra: HeaderMutation) -> RouteDecision:
    import dataclasses

    return dataclasses.replace(decision, response_headers=(*decision.response_headers, extra))


def _route_quietly(router: Router, head: RequestHead) -> RouteDecision | None:
    """The route a refused request would have taken, for its log line only."""
    try:
        return router(head)
    except Exception:
        return None


def _original_uri(head: RequestHead) -> str:
    """Envoy's buildOriginalUri: the WWW-Authenticate realm."""
    scheme = head.headers.get("x-forwarded-proto") or head.scheme
    path = head.path[:MAX_URI]
    return f"{scheme}://{head.authority}{path}"
