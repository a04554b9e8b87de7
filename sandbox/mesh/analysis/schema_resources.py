"""Istio's own validation of DestinationRules, Gateways and ServiceEntries, as SBX1xx codes."""

from __future__ import annotations

from sandbox.mesh.analysis.context import Context


def check_destination_rules(ctx: Context) -> None:
    for dr in ctx.state.destination_rules:
        seen: set[str] = set()
        for i, subset in enumerate(dr.spec.subsets):
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
            name = server.port.name if server.port else None
            if name:
                if name in port_names:
                    message = f"port names in servers must be unique: duplicate name {name}"
                    ctx.report(gw, "SBX142", f"spec/servers[{s}]/port/name", message=message)
                port_names.add(name)


def check_service_entries(ctx: Context) -> None:
    for se in ctx.state.service_entries:
        if not se.spec.hosts:
            ctx.report(se, "SBX150", "spec/hosts", message="service entry must have at least one host")


CHECKERS = (check_destination_rules, check_gateways, check_service_entries)
