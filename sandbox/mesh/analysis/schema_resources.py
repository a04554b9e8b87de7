"""Istio's own validation of DestinationRules, Gateways, ServiceEntries and security policies,
as SBX1xx codes with Istio's messages (istio/istio `pkg/config/validation/validation.go`)."""

from __future__ import annotations

import ipaddress
from typing import Any

from sandbox.mesh.analysis.context import Context
from sandbox.mesh.analysis.schema import is_dns_label
from sandbox.mesh.resources import Resource
from sandbox.mesh.resources.gateway import Server, ServerTLSMode
from sandbox.mesh.resources.security import Action

TLS_PROTOCOLS = frozenset({"HTTPS", "TLS"})
HTTP_PROTOCOLS = frozenset({"HTTP", "HTTP2", "HTTP_PROXY", "GRPC", "GRPC-WEB"})


def check_destination_rules(ctx: Context) -> None:
    for dr in ctx.state.destination_rules:
        seen: set[str] = set()
        for i, subset in enumerate(dr.spec.subsets):
            if subset.name and not is_dns_label(subset.name):
                ctx.report(dr, "SBX131", f"spec/subsets[{i}]/name", message=f"subset name is invalid: {subset.name}")
            if subset.name in seen:
                ctx.report(dr, "SBX130", f"spec/subsets[{i}]/name", message=f"duplicate subset names: {subset.name}")
            seen.add(subset.name)


def check_gateways(ctx: Context) -> None:
    for gw in ctx.state.gateways:
        if not gw.spec.servers:
            ctx.report(gw, "SBX141", "spec/servers", message="gateway must have at least one server")
        port_names: set[str] = set()
        for s, server in enumerate(gw.spec.servers):
            if not server.hosts:
                ctx.report(gw, "SBX140", f"spec/servers[{s}]", message="server config must contain at least one host")
            _check_server_tls(ctx, gw, server, f"spec/servers[{s}]")
            name = server.port.name if server.port else None
            if name:
                if name in port_names:
                    message = f"port names in servers must be unique: duplicate name {name}"
                    ctx.report(gw, "SBX142", f"spec/servers[{s}]/port/name", message=message)
                port_names.add(name)


def _check_server_tls(ctx: Context, gw: Resource[Any], server: Server, path: str) -> None:
    """TLS settings must fit the port's protocol (validateServer): HTTPS/TLS need them; a plain
    HTTP port may only carry a redirect (passthrough mode, no certificates)."""
    port: Any = server.port  # None when the loader already reported it missing
    if port is None:
        return
    protocol, tls = (port.protocol or "").upper(), server.tls
    message = None
    if protocol in TLS_PROTOCOLS and tls is None:
        message = "server must have TLS settings for HTTPS/TLS protocols"
    elif protocol in HTTP_PROTOCOLS and tls is not None:
        passthrough = tls.mode in (None, ServerTLSMode.PASSTHROUGH, ServerTLSMode.AUTO_PASSTHROUGH)
        if not passthrough or tls.ca_certificates or tls.private_key or tls.server_certificate:
            message = "server cannot have TLS settings for plain text HTTP ports"
    elif protocol not in TLS_PROTOCOLS and protocol and tls is not None:
        message = "server cannot have TLS settings for non HTTPS/TLS ports"
    if message:
        ctx.report(gw, "SBX143", f"{path}/tls" if tls else f"{path}/port", message=message)


def check_service_entries(ctx: Context) -> None:
    for se in ctx.state.service_entries:
        if not se.spec.hosts:
            ctx.report(se, "SBX150", "spec/hosts", message="service entry must have at least one host")
        if se.spec.workload_selector is not None and se.spec.endpoints:
            message = "only one of WorkloadSelector or Endpoints is allowed in Service Entry"
            ctx.report(se, "SBX151", "spec/workloadSelector", message=message)


def check_security_policies(ctx: Context) -> None:
    for pa in ctx.state.peer_authentications:
        selector = pa.spec.selector.match_labels if pa.spec.selector else {}
        if not selector and pa.spec.port_level_mtls:
            message = "mesh/namespace peer authentication cannot have port level mTLS"
            ctx.report(pa, "SBX160", "spec/portLevelMtls", message=message)
    for ap in ctx.state.authorization_policies:
        if ap.spec.action in (Action.DENY, Action.CUSTOM) and not ap.spec.rules:
            message = (
                f"{ap.spec.action} action without `rules` is meaningless as it will never be triggered, "
                "add an empty rule `{}` if you want it be triggered for every request"
            )
            ctx.report(ap, "SBX161", "spec/action", message=message)
        for r, rule in enumerate(ap.spec.rules):
            for w, condition in enumerate(rule.when):
                if not known_condition(condition.key):
                    message = f"unknown attribute: {condition.key}"
                    ctx.report(ap, "SBX162", f"spec/rules[{r}]/when[{w}]/key", message=message)
                elif condition.key in IP_KEYS:
                    for name, values in (("values", condition.values), ("notValues", condition.not_values)):
                        _check_ips(ctx, ap, values, f"spec/rules[{r}]/when[{w}]/{name}")
            for f, item in enumerate(rule.from_):
                src = item.source
                if src is None:
                    continue
                for name in ("ip_blocks", "not_ip_blocks", "remote_ip_blocks", "not_remote_ip_blocks"):
                    path = f"spec/rules[{r}]/from[{f}]/source/{_camel(name)}"
                    _check_ips(ctx, ap, getattr(src, name), path)


# The `when` keys Istio knows (security/v1beta1 conditions; istio validation ValidateAttribute).
CONDITION_KEYS = frozenset(
    {
        "source.ip",
        "remote.ip",
        "source.namespace",
        "source.principal",
        "request.auth.principal",
        "request.auth.audiences",
        "request.auth.presenter",
        "destination.ip",
        "destination.port",
        "connection.sni",
    }
)
CONDITION_PREFIXES = ("request.headers[", "request.auth.claims[", "experimental.envoy.filters.")
IP_KEYS = frozenset({"source.ip", "remote.ip", "destination.ip"})


def known_condition(key: str) -> bool:
    return key in CONDITION_KEYS or (key.startswith(CONDITION_PREFIXES) and key.endswith("]"))


def _check_ips(ctx: Context, ap: Resource[Any], values: tuple[str, ...], path: str) -> None:
    for i, value in enumerate(values):
        try:
            ipaddress.ip_network(value.strip(), strict=False)
        except ValueError:
            ctx.report(ap, "SBX163", f"{path}[{i}]", message=f"invalid IP address or CIDR range: {value}")


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


CHECKERS = (check_destination_rules, check_gateways, check_service_entries, check_security_policies)
