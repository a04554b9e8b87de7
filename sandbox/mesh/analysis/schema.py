"""Istio's own VirtualService validation (istio/istio `pkg/config/validation`), as SBX1xx codes.

These are the rules istiod's webhook and `istioctl validate` apply, with Istio's messages, so a
file this analyzer accepts is one a real cluster accepts too. Regexes are compiled with Python's
`re` as an approximation of RE2, plus a check for the Perl-only syntax RE2 refuses.
"""

from __future__ import annotations

import dataclasses
import re
from http import HTTPStatus
from typing import Any

from sandbox.mesh.analysis.context import Context
from sandbox.mesh.names import hosts_overlap
from sandbox.mesh.resources import Resource
from sandbox.mesh.resources.common import Percent, StringMatch
from sandbox.mesh.resources.virtualservice import (
    HTTPFaultInjection,
    HTTPMatchRequest,
    HTTPRetry,
    HTTPRoute,
)
from sandbox.mesh.schema import Duration

MAX_REGEX = 1024
_PERL_ONLY = re.compile(r"\(\?<?[=!]|(?<!\\)\\[1-9]")  # lookaround and backreferences: not RE2
RETRY_ON = frozenset(
    (
        "5xx",
        "gateway-error",
        "reset",
        "reset-before-request",
        "connect-failure",
        "retriable-4xx",
        "refused-stream",
        "retriable-status-codes",
        "retriable-headers",
        "envoy-ratelimited",
        "http3-post-connect-failure",
        "cancelled",
        "deadline-exceeded",
        "internal",
        "resource-exhausted",
        "unavailable",
    )
)
GRPC_STATUS = frozenset(
    (
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    )
)
_EMPTY_MATCH = HTTPMatchRequest()
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def is_dns_label(name: str) -> bool:
    """RFC 1123 label, as Kubernetes and Istio check subset names."""
    return len(name) <= 63 and _DNS_LABEL.fullmatch(name) is not None


class _Rules:
    """One VirtualService's validation: `err` records a finding at a path."""

    def __init__(self, ctx: Context, vs: Resource[Any]) -> None:
        self.ctx, self.vs = ctx, vs

    def err(self, code: str, path: str, message: str) -> None:
        self.ctx.report(self.vs, code, path, message=message)

    def regex(self, pattern: str, path: str, where: str) -> None:
        if len(pattern) > MAX_REGEX:
            self.err("SBX103", path, f'"{where}": regex is too large, max length allowed is {MAX_REGEX}')
            return
        try:
            re.compile(pattern)
            problem = "invalid or unsupported Perl syntax" if _PERL_ONLY.search(pattern) else None
        except re.error as exc:
            problem = str(exc)
        if problem:
            tail = "Istio uses RE2 style regex-based match (https://github.com/google/re2/wiki/Syntax)"
            self.err("SBX104", path, f'"{where}": {problem}; {tail}')

    def string_match(self, sm: StringMatch | None, path: str, where: str, *, empty_prefix: bool, any_ok: bool) -> None:
        if sm is None:
            return
        kinds = [k for k in ("exact", "prefix", "regex") if getattr(sm, k) is not None]
        if len(kinds) > 1:
            self.err(
                "SBX106", path, f'"{where}": only one of exact, prefix or regex may be set, not {" and ".join(kinds)}'
            )
        elif not kinds and not any_ok:
            self.err("SBX107", path, f'"{where}": set one of exact, prefix or regex')
        if sm.prefix == "" and not empty_prefix:
            self.err("SBX108", f"{path}/prefix", f'"{where}": prefix string match should not be empty')
        if sm.regex == "":
            self.err("SBX108", f"{path}/regex", f'"{where}": regex string match should not be empty')
        elif sm.regex is not None:
            self.regex(sm.regex, f"{path}/regex", where)

    def duration(self, value: Duration | None, path: str) -> None:
        if value is None:
            return
        millis = value.seconds * 1000
        if millis < 1:
            self.err("SBX113", path, f"{value.text}: duration must be greater than 1ms")
        elif abs(millis - round(millis)) > 1e-6:
            self.err("SBX113", path, f"{value.text}: only durations to ms precision are supported")

    def percentage(self, value: Percent | None, path: str) -> None:
        if value is not None and (value.value < 0 or value.value > 100 or 0 < value.value < 0.0001):
            self.err("SBX112", path, f"percentage {value.value:g} is neither 0.0, nor in range [0.0001, 100.0]")

    def weights(self, route: tuple[Any, ...], path: str) -> None:
        """Route destinations: weights (Istio >= 1.15: relative, non-negative) and subset names."""
        total = 0
        for j, entry in enumerate(route):
            if entry.destination is not None:
                self.subset(entry.destination.subset, f"{path}/route[{j}]/destination/subset")
            weight = entry.weight or 0
            if weight < 0:
                self.err("SBX101", f"{path}/route[{j}]/weight", f"weight {weight} < 0")
            total += weight
        if len(route) > 1 and total == 0:
            self.err("SBX102", f"{path}/route", "total destination weight = 0")

    def subset(self, name: str | None, path: str) -> None:
        if name and not is_dns_label(name):
            self.err("SBX131", path, f"subset name is invalid: {name}")

    # -- HTTP routes -------------------------------------------------------------------------
    def http_route(self, rule: HTTPRoute, path: str, delegate: bool) -> None:
        self.conflicts(rule, path, delegate)
        for m, match in enumerate(rule.match):
            self.match(match, f"{path}/match[{m}]")
        if rule.fault is not None:
            self.fault(rule.fault, f"{path}/fault")
        self.mirrors(rule, path)
        if rule.redirect is not None:
            self.redirect(rule, f"{path}/redirect")
        if rule.direct_response is not None and not 200 <= rule.direct_response.status <= 599:
            status = rule.direct_response.status
            self.err("SBX115", f"{path}/directResponse/status", f"HTTP status {status} is not in range 200-599")
        if rule.retries is not None:
            self.retries(rule.retries, f"{path}/retries")
        if rule.rewrite and rule.rewrite.uri_regex_rewrite and rule.rewrite.uri_regex_rewrite.match:
            where = "HTTPRewrite.UriRegexRewrite.Match"
            self.regex(rule.rewrite.uri_regex_rewrite.match, f"{path}/rewrite/uriRegexRewrite/match", where)
        for k, origin in enumerate(rule.cors_policy.allow_origins if rule.cors_policy else ()):
            self.string_match(
                origin,
                f"{path}/corsPolicy/allowOrigins[{k}]",
                "corsPolicy.allowOrigins",
                empty_prefix=False,
                any_ok=False,
            )
        self.weights(rule.route, path)
        self.duration(rule.timeout, f"{path}/timeout")

    def conflicts(self, rule: HTTPRoute, path: str, delegate: bool) -> None:
        """Route, redirect, directResponse and delegate exclude each other (validateHTTPRouteConflict)."""
        conflict = "SBX110"
        if rule.delegate is not None and not delegate:  # a root route only delegates
            name = f" {rule.name}" if rule.name else ""
            if rule.redirect is not None:
                self.err(conflict, f"{path}/redirect", f"root HTTP route{name} must not specify redirect")
            if rule.route:
                self.err(conflict, f"{path}/route", f"root HTTP route{name} must not specify route")
            return
        if delegate and rule.delegate is not None:
            self.err(conflict, f"{path}/delegate", "delegate HTTP route cannot contain delegate")
        if rule.redirect is not None:
            here = f"{path}/redirect"
            if rule.route:
                self.err(conflict, here, "HTTP route cannot contain both route and redirect")
            if rule.fault is not None:
                self.err(conflict, here, "HTTP route cannot contain both fault and redirect")
            if rule.rewrite is not None:
                self.err("SBX109", here, "HTTP route rule cannot contain both rewrite and redirect")
            if rule.direct_response is not None:
                self.err(conflict, here, "HTTP route rule cannot contain both direct_response and redirect")
        elif rule.direct_response is not None:
            here = f"{path}/directResponse"
            if rule.route:
                self.err(conflict, here, "HTTP route cannot contain both route and direct_response")
            if rule.fault is not None:
                self.err(conflict, here, "HTTP route cannot contain both fault and direct_response")
            if rule.rewrite is not None:
                self.err(conflict, here, "HTTP route rule cannot contain both rewrite and direct_response")
        elif not rule.route:
            self.err("SBX111", path, "HTTP route, redirect or direct_response is required")
        if rule.mirror is not None and rule.mirrors:
            self.err(conflict, f"{path}/mirrors", "HTTP route cannot contain both mirror and mirrors")

    def match(self, match: HTTPMatchRequest, path: str) -> None:
        if dataclasses.replace(match, name=None) == _EMPTY_MATCH:
            self.err("SBX105", path, "HTTPMatchRequest cannot be empty: this match block matches every request")
            return
        for field in ("uri", "scheme", "method", "authority"):
            sm = getattr(match, field)
            self.string_match(sm, f"{path}/{field}", field, empty_prefix=field == "uri", any_ok=False)
        for field in ("headers", "without_headers"):
            where = "headers" if field == "headers" else "withoutHeaders"
            for key, sm in getattr(match, field).items():
                here = f"{path}/{where}/{key}"
                if key != key.lower() and not key.startswith("@"):
                    self.err("SBX120", here, f"header match key '{key}' must be lowercase, e.g. '{key.lower()}'")
                if where == "withoutHeaders" and sm.regex == "*":
                    continue  # `*` means "present", not a regex
                self.string_match(sm, here, where, empty_prefix=False, any_ok=True)  # {} means "present"
        for key, sm in match.query_params.items():
            self.string_match(sm, f"{path}/queryParams/{key}", "queryParams", empty_prefix=False, any_ok=True)

    def fault(self, fault: HTTPFaultInjection, path: str) -> None:
        if fault.abort is None and fault.delay is None:
            self.err("SBX116", path, "HTTP fault injection must have an abort and/or a delay")
        if (delay := fault.delay) is not None:
            self.percentage(delay.percentage, f"{path}/delay/percentage/value")
            if delay.percent is not None and not 0 <= delay.percent <= 100:
                self.err("SBX112", f"{path}/delay/percent", f"percentage {delay.percent} is not in range 0..100")
            self.duration(delay.fixed_delay, f"{path}/delay/fixedDelay")
        if (abort := fault.abort) is not None:
            self.percentage(abort.percentage, f"{path}/abort/percentage/value")
            if abort.http_status is not None:
                if not 200 <= abort.http_status <= 599:
                    message = f"HTTP status {abort.http_status} is not in range 200-599"
                    self.err("SBX115", f"{path}/abort/httpStatus", message)
            elif abort.grpc_status is not None:
                if abort.grpc_status not in GRPC_STATUS:
                    message = (
                        f'gRPC status "{abort.grpc_status}" is not supported. See '
                        "https://github.com/grpc/grpc/blob/master/doc/statuscodes.md for a list of supported "
                        "codes, for example 'NOT_FOUND'"
                    )
                    self.err("SBX115", f"{path}/abort/grpcStatus", message)
            elif abort.http2_error is not None:
                self.err("SBX115", f"{path}/abort/http2Error", "HTTP/2 abort fault injection not supported yet")
            else:
                self.err("SBX114", f"{path}/abort", "abort configured, but error type not set")

    def mirrors(self, rule: HTTPRoute, path: str) -> None:
        value = rule.mirror_percentage.value if rule.mirror_percentage else None
        here = f"{path}/mirrorPercentage/value"
        if value is not None and value > 100:
            self.err("SBX112", here, f"mirror_percentage must have a max value of 100 (it has {value:f})")
        if value is not None and value < 0:
            self.err("SBX112", here, f"mirror_percentage must have a min value of 0 (it has {value:f})")
        if rule.mirror_percent is not None and rule.mirror_percent > 100:
            message = f"mirror_percent must have a max value of 100 (it has {rule.mirror_percent})"
            self.err("SBX112", f"{path}/mirrorPercent", message)
        for k, mirror in enumerate(rule.mirrors):
            value = mirror.percentage.value if mirror.percentage else None
            here = f"{path}/mirrors[{k}]/percentage/value"
            if value is not None and value > 100:
                self.err("SBX112", here, f"mirror percentage must have a max value of 100 (it has {value:f})")
            if value is not None and value < 0:
                self.err("SBX112", here, f"mirror percentage must have a min value of 0 (it has {value:f})")

    def redirect(self, rule: HTTPRoute, path: str) -> None:
        r = rule.redirect
        assert r is not None
        if r.uri is None and r.authority is None and r.port is None and r.derive_port is None and r.scheme is None:
            self.err("SBX125", path, "redirect must specify URI, authority, scheme, or port")
        if r.redirect_code and not 300 <= r.redirect_code <= 399:
            self.err("SBX125", f"{path}/redirectCode", f"{r.redirect_code} is not a valid redirect code, must be 3xx")
        if r.scheme is not None and r.scheme not in ("http", "https"):
            self.err("SBX125", f"{path}/scheme", 'invalid redirect scheme, must be "http" or "https"')

    def retries(self, retries: HTTPRetry, path: str) -> None:
        attempts = retries.attempts or 0
        if attempts < 0:
            self.err("SBX117", f"{path}/attempts", "attempts cannot be negative")
        configured = (
            retries.per_try_timeout is not None or retries.retry_on or retries.retry_remote_localities is not None
        )
        if attempts == 0 and configured:
            self.err("SBX118", path, "http retry policy configured when attempts are set to 0 (disabled)")
        self.duration(retries.per_try_timeout, f"{path}/perTryTimeout")
        self.duration(retries.backoff, f"{path}/backoff")
        for policy in (retries.retry_on or "").split(",") if retries.retry_on else ():
            if policy not in RETRY_ON and not (policy.isdigit() and int(policy) in HTTPStatus._value2member_map_):
                self.err("SBX119", f"{path}/retryOn", f'"{policy}" is not a valid retryOn policy')


def check_virtual_services(ctx: Context) -> None:
    for vs in ctx.state.virtual_services:
        rules, spec = _Rules(ctx, vs), vs.spec
        delegate = not spec.hosts  # Istio: a VirtualService without hosts is a delegate
        if delegate:
            if (vs.namespace, vs.name) not in ctx.index.delegate_targets:
                rules.err("SBX121", "spec/hosts", "virtual service must have at least one host")
            for field, what in (
                ("gateways", "gateways specified"),
                ("tls", "tls route specified"),
                ("tcp", "tcp route specified"),
            ):
                if getattr(spec, field):
                    rules.err("SBX122", f"spec/{field}", f"delegate virtual service must have no {what}")
        if not (spec.http or spec.tcp or spec.tls):
            rules.err("SBX123", "spec", "http, tcp or tls must be provided in virtual service")
        _duplicate_hosts(rules, spec.hosts)
        if not spec.gateways or "mesh" in spec.gateways:
            for k, host in enumerate(spec.hosts):
                if host == "*":
                    message = "wildcard host * is not allowed for virtual services bound to the mesh gateway"
                    rules.err("SBX124", f"spec/hosts[{k}]", message)
        for i, rule in enumerate(spec.http):
            rules.http_route(rule, f"spec/http[{i}]", delegate)
        l4: tuple[tuple[str, tuple[Any, ...]], ...] = (("tcp", spec.tcp), ("tls", spec.tls))
        for kind, routes in l4:
            for i, route in enumerate(routes):
                if not route.route:
                    rules.err("SBX126", f"spec/{kind}[{i}]", f"{kind.upper()} route is required")
                rules.weights(route.route, f"spec/{kind}[{i}]")


def _duplicate_hosts(rules: _Rules, hosts: tuple[str, ...]) -> None:
    """Two hosts of one VirtualService that match each other (`*.foo.com` and `*.com` too)."""
    for i, a in enumerate(hosts):  # a handful of hosts per resource
        for b in hosts[i + 1 :]:
            if hosts_overlap(a, b):
                rules.err("SBX127", "spec/hosts", f"duplicate hosts in virtual service: {a} & {b}")


CHECKERS = (check_virtual_services,)
