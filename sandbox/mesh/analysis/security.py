"""Kiali's AuthorizationPolicy checks: KIA0101, KIA0102, KIA0104, KIA0105, KIA0106; with what the
sidecars enforce (sandbox/proxy/authz.py): principals are compared without `spiffe://`, and a
method that is not upper case never matches (SBX164: Envoy compares `:method` exactly)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sandbox.mesh.analysis.context import Context
from sandbox.mesh.analysis.mtls import Policies, mtls_enabled
from sandbox.mesh.resources import Resource

HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE")
# `when` keys that need the peer's identity, hence mTLS (Kiali's mtls_enabled_checker)
IDENTITY_KEYS = ("source.namespace", "source.principal", "connection.sni")


def matches_pattern(pattern: str, values: Iterable[str]) -> bool:
    """Istio's string match for policy values: `*`, `prefix*`, `*suffix` or exact."""
    if pattern == "*":
        return True
    if pattern.endswith("*"):
        return any(v.startswith(pattern[:-1]) for v in values)
    if pattern.startswith("*"):
        return any(v.endswith(pattern[1:]) for v in values)
    return pattern in values


def valid_method(method: str) -> bool:
    return matches_pattern(method.strip().upper(), HTTP_METHODS)


def is_host_header_matcher(host: str, namespaces: frozenset[str]) -> bool:
    """Hosts Kiali treats as plain Host-header matches, not registry names (no_host_checker)."""
    if host == "*" or host.startswith("*") or host.endswith("*") or host.count(".") >= 2:
        return True
    return host.count(".") == 1 and host.split(".")[1] not in namespaces


def check_authorization_policies(ctx: Context) -> None:
    namespaces = ctx.state.namespaces
    policies: Policies | None = None
    for ap in ctx.state.authorization_policies:
        identity_paths: list[str] = []
        for r, rule in enumerate(ap.spec.rules):
            for f, item in enumerate(rule.from_):
                src = item.source
                if src is None:
                    continue
                base = f"spec/rules[{r}]/from[{f}]/source"
                for i, ns in enumerate(src.namespaces):
                    if not matches_pattern(ns, namespaces):
                        ctx.report(ap, "KIA0101", f"{base}/namespaces[{i}]")
                for i, who in enumerate(src.principals):
                    if not matches_pattern(who.removeprefix("spiffe://"), ctx.index.principals):
                        ctx.report(ap, "KIA0106", f"{base}/principals[{i}]")
                for name in ("principals", "not_principals", "namespaces", "not_namespaces"):
                    if getattr(src, name):
                        identity_paths.append(f"{base}/{_camel(name)}")
            for t, target in enumerate(rule.to):
                op = target.operation
                if op is None:
                    continue
                base = f"spec/rules[{r}]/to[{t}]/operation"
                for name, methods in (("methods", op.methods), ("notMethods", op.not_methods)):
                    for i, method in enumerate(methods):
                        if name == "methods" and not valid_method(method):
                            ctx.report(ap, "KIA0102", f"{base}/methods[{i}]")
                        elif valid_method(method) and method != method.upper():
                            message = (
                                f"method '{method}' never matches: request methods are compared exactly (upper case)"
                            )
                            ctx.report(ap, "SBX164", f"{base}/{name}[{i}]", message=message)
                for i, host in enumerate(op.hosts):
                    _check_host(ctx, ap, host, f"{base}/hosts[{i}]", namespaces)
            identity_paths.extend(
                f"spec/rules[{r}]/when[{w}]" for w, c in enumerate(rule.when) if c.key in IDENTITY_KEYS
            )
        if identity_paths:
            policies = policies or Policies.build(ctx)
            selector = ap.spec.selector.match_labels if ap.spec.selector else {}
            if not mtls_enabled(ctx, policies, ap.namespace, selector):
                for path in identity_paths:
                    ctx.report(ap, "KIA0105", path)


def _check_host(ctx: Context, ap: Resource[Any], host: str, path: str, namespaces: frozenset[str]) -> None:
    """KIA0104: a registry-looking host that is no service, ServiceEntry or VirtualService host."""
    host = host.strip().lower()
    if not host or is_host_header_matcher(host, namespaces):
        return
    fqdn = ctx.state.resolve(host, ap.namespace)
    if ctx.index.in_registry(fqdn) or fqdn in ctx.index.virtual_service_hosts:
        return
    ctx.report(ap, "KIA0104", path, ctx.registry_severity)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


CHECKERS = (check_authorization_policies,)
