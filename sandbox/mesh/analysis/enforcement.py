"""What this version's sidecars do not enforce, said on the resource a user would otherwise trust.

A policy the sidecar does not enforce must never look enforced: each such resource gets a warning
from `sandbox analyze`, `sandbox apply` and the control plane (SBX7xx). What is still missing:
EnvoyFilter (no Envoy to patch), targetRefs (no waypoint or Gateway API gateway runs), a CUSTOM
provider the sidecars cannot call, the parts of Telemetry not applied.
"""

from __future__ import annotations

from typing import Any

from sandbox.mesh.analysis.context import Context
from sandbox.mesh.diagnostics import Diagnostic
from sandbox.mesh.resources import AuthorizationPolicySpec, Resource, TelemetrySpec
from sandbox.mesh.resources.security import Action
from sandbox.mesh.state import MeshState

NO_PROXY = (
    "targetRefs select Gateway API gateways and waypoints, which the sandbox does not run: "
    "this policy applies to no proxy (use a selector)"
)


def check_not_enforced(ctx: Context) -> None:
    for resource in ctx.state.resources:
        if resource.kind == "EnvoyFilter":
            ctx.report(resource, "SBX702", "spec/configPatches")
        elif resource.kind in ("AuthorizationPolicy", "RequestAuthentication"):
            spec = resource.spec
            if spec.target_ref is not None or spec.target_refs:
                path = "spec/targetRefs" if spec.target_refs else "spec/targetRef"
                ctx.report(resource, "SBX701", path, message=f"not enforced: {NO_PROXY}")


def check_custom_providers(ctx: Context) -> None:
    """A CUSTOM policy whose extension provider cannot be called denies everything it selects
    (istiod's deny-due-to-invalid-CUSTOM): said where the policy names the provider."""
    declared = {p.name: p for p in ctx.state.topology.settings.extension_providers}
    ap: Resource[AuthorizationPolicySpec]
    for ap in ctx.state.authorization_policies:
        if ap.spec.action is not Action.CUSTOM:
            continue
        name = (ap.spec.provider.name or "") if ap.spec.provider else ""
        provider = declared.get(name)
        problem = ""
        if provider is None:
            problem = f"'{name}' is not declared in the Compose file's x-sandbox.extensionProviders"
        elif provider.envoy_ext_authz_http is None:
            problem = f"'{name}' is not an envoyExtAuthzHttp provider, the only kind the sidecars call"
        else:
            http = provider.envoy_ext_authz_http
            fqdn = http.service_fqdn(ap.namespace, ctx.state.resolve)
            if http.port_number is None:
                problem = f"'{name}' has no valid port ({http.port!r})"
            elif not ctx.index.in_registry(fqdn):
                problem = f"'{name}': service {http.service} is not in the mesh"
            elif http.include_request_body_in_check is not None:
                message = f"provider '{name}': includeRequestBodyInCheck is not applied (the check carries no body)"
                ctx.report(ap, "SBX706", "spec/provider/name", message=message)
        if problem:
            message = (
                f"CUSTOM provider {problem}: the proxies this policy selects deny every request "
                "(deny-due-to-invalid-CUSTOM), as istiod makes them"
            )
            ctx.report(ap, "SBX705", "spec/provider/name", message=message)


def check_telemetry(ctx: Context) -> None:
    telemetry: Resource[TelemetrySpec]
    for telemetry in ctx.state.of_kind("Telemetry"):
        spec = telemetry.spec
        for i, _ in enumerate(spec.metrics):
            _not_applied(ctx, telemetry, f"spec/metrics[{i}]", "metrics overrides (Istio's standard metrics stay)")
        for i, logging in enumerate(spec.access_logging):
            if logging.filter is not None:
                _not_applied(ctx, telemetry, f"spec/accessLogging[{i}]/filter", "access log filters")
            _providers(ctx, telemetry, f"spec/accessLogging[{i}]", logging.providers, "envoy")
        for i, tracing in enumerate(spec.tracing):
            if tracing.match is not None and tracing.match.mode.value != "CLIENT_AND_SERVER":
                _not_applied(ctx, telemetry, f"spec/tracing[{i}]/match", "a tracing match mode (both sides apply)")
            _providers(ctx, telemetry, f"spec/tracing[{i}]", tracing.providers, "zipkin")


def _providers(ctx: Context, resource: Resource[Any], path: str, providers: Any, builtin: str) -> None:
    for p, provider in enumerate(providers):
        if provider.name not in ("", builtin):
            what = f"provider '{provider.name}' (the sandbox's own {builtin} provider is used)"
            _not_applied(ctx, resource, f"{path}/providers[{p}]", what)


def _not_applied(ctx: Context, resource: Resource[Any], path: str, what: str) -> None:
    ctx.report(resource, "SBX703", path, message=f"not applied in this version: {what}")


CHECKERS = (check_not_enforced, check_custom_providers, check_telemetry)


def not_enforced(state: MeshState) -> list[Diagnostic]:
    """Only these checks' findings (the control plane logs them as config changes)."""
    ctx = Context(state)
    for checker in CHECKERS:
        checker(ctx)
    return ctx.diagnostics
