"""`sandbox proxy-config`: a ProxySnapshot shown as istioctl shows Envoy config (pure rendering).

Sections: routes, clusters, endpoints, listeners, authz, all. Formats: table (istioctl's columns), json,
yaml. The same functions serve the offline view (compiled from files) and, later, a live proxy's
admin endpoint, since both start from a snapshot.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sandbox.mesh.schema import encode
from sandbox.xds.snapshot import ProxySnapshot, Route, RouteMatch, StringMatcher

SECTIONS = ("all", "routes", "clusters", "endpoints", "listeners", "authz")
FORMATS = ("table", "json", "yaml")


def section_data(snapshot: ProxySnapshot, section: str) -> Any:
    data = snapshot.to_data()
    if section == "all":
        return data
    if section == "routes":
        return data["route_configs"]
    if section == "clusters":
        return [{k: v for k, v in c.items() if k != "endpoints"} for c in data["clusters"]]
    if section == "endpoints":
        return [{"cluster": c["name"], "endpoints": c["endpoints"]} for c in data["clusters"] if c["endpoints"]]
    if section == "listeners":
        return {"identity": data["identity"], "inbound": data["inbound"], "mesh": data["mesh"]}
    if section == "authz":
        access = data["access"]
        for policy, compiled in zip(access["policies"], snapshot.access.policies, strict=True):
            policy["rules"] = [encode(rule) or {} for rule in compiled.rules]  # as written: from, notPrincipals
        return access
    raise ValueError(f"unknown section {section!r} (one of {', '.join(SECTIONS)})")


def render(snapshot: ProxySnapshot, section: str, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(section_data(snapshot, section), indent=2, sort_keys=True)
    if fmt == "yaml":
        from sandbox.mesh.yamlsrc import dump_yaml

        return dump_yaml(section_data(snapshot, section)).rstrip("\n")
    if fmt != "table":
        raise ValueError(f"unknown format {fmt!r} (one of {', '.join(FORMATS)})")
    parts = {
        "listeners": listeners_table,
        "routes": routes_table,
        "clusters": clusters_table,
        "endpoints": endpoints_table,
        "authz": authz_table,
    }
    if section == "all":
        return "\n\n".join(f(snapshot) for f in parts.values())
    if section not in parts:
        raise ValueError(f"unknown section {section!r} (one of {', '.join(SECTIONS)})")
    return parts[section](snapshot)


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in [header, *rows]]
    return "\n".join(lines)


def listeners_table(snapshot: ProxySnapshot) -> str:
    ident = snapshot.identity
    rows = [["outbound", "0.0.0.0:15001", "-", f"{len(snapshot.route_configs)} route configs"]]
    rows += [["inbound", "0.0.0.0:15006", str(i.port), f"{i.cluster} -> {i.app_address}"] for i in snapshot.inbound]
    head = (
        f"{ident.kind} {ident.workload}.{ident.namespace}  {ident.spiffe_id}  version {snapshot.version}  "
        f"outboundTrafficPolicy {snapshot.mesh.outbound_traffic_policy}"
    )
    return head + "\n" + table(["DIRECTION", "ADDRESS", "PORT", "DESTINATION"], rows)


def _string(m: StringMatcher | None) -> str:
    if m is None:
        return ""
    if m.kind == "present":
        return "*"
    op = {"exact": "", "prefix": "", "regex": "~"}[m.kind]
    suffix = "*" if m.kind == "prefix" else ""
    return f"{op}{m.value}{suffix}" + (" (ignore case)" if m.ignore_case else "")


def describe_match(m: RouteMatch) -> str:
    parts = [_string(m.uri) or "/*"]
    for label, sm in (("method", m.method), ("scheme", m.scheme), ("authority", m.authority)):
        if sm is not None:
            parts.append(f"{label}={_string(sm)}")
    parts += [f"{h.name}={_string(h.match)}" for h in m.headers]
    parts += [f"!{h.name}={_string(h.match)}" for h in m.without_headers]
    parts += [f"?{q.name}={_string(q.match)}" for q in m.query_params]
    return " ".join(parts)


def describe_action(r: Route) -> str:
    if r.redirect is not None:
        return f"redirect {r.redirect.code} {r.redirect.uri or ''}".rstrip()
    if r.direct_response is not None:
        return f"direct response {r.direct_response.status}"
    parts = [f"{wc.cluster} {wc.weight}%" if len(r.clusters) > 1 else wc.cluster for wc in r.clusters]
    extras = []
    if r.fault is not None:
        if r.fault.delay is not None:
            extras.append(f"delay {r.fault.delay:g}s@{r.fault.delay_percentage:g}%")
        if r.fault.abort_status is not None or r.fault.abort_grpc_status:
            extras.append(f"abort {r.fault.abort_status or r.fault.abort_grpc_status}@{r.fault.abort_percentage:g}%")
    if r.timeout is not None:
        extras.append(f"timeout {r.timeout:g}s")
    if r.mirrors:
        extras.append("mirror " + ",".join(m.cluster for m in r.mirrors))
    return ", ".join(parts) + (f" [{'; '.join(extras)}]" if extras else "")


def routes_table(snapshot: ProxySnapshot) -> str:
    rows = []
    for rc in snapshot.route_configs:
        for vh in rc.virtual_hosts:
            domains = _short_domains(vh.domains)
            for r in vh.routes:
                rows.append(
                    [rc.name, vh.name, domains, describe_match(r.match), describe_action(r), _vs_name(vh.source)]
                )
    return table(["NAME", "VHOST NAME", "DOMAINS", "MATCH", "ACTION", "VIRTUAL SERVICE"], rows)


def _short_domains(domains: Sequence[str]) -> str:
    """istioctl prints the shortest domain and how many more there are."""
    plain = [d for d in domains if ":" not in d] or list(domains)
    first = min(plain, key=len)
    return first if len(domains) == 1 else f"{first} + {len(domains) - 1} more..."


def _vs_name(source: str) -> str:
    """ "VirtualService/default/reviews, ..." -> "reviews.default, ..." (istioctl's name.namespace)."""
    if not source:
        return "-"
    names = []
    for ref in source.split(", "):
        _, namespace, name = ref.split("/", 2)
        names.append(f"{name}.{namespace}")
    return ", ".join(names)


def clusters_table(snapshot: ProxySnapshot) -> str:
    rows = []
    for c in snapshot.clusters:
        tp = c.traffic_policy
        lb = "RING_HASH" if tp.load_balancer.consistent_hash else tp.load_balancer.simple
        od = "outlier" if tp.outlier_detection else "-"
        source = _vs_name(c.source)
        rows.append([c.service or c.name, str(c.port or "-"), c.subset or "-", "outbound", lb, tp.tls.mode, od, source])
    return table(["SERVICE FQDN", "PORT", "SUBSET", "DIRECTION", "LB", "TLS", "OUTLIER", "DESTINATION RULE"], rows)


def authz_table(snapshot: ProxySnapshot) -> str:
    """The policies in force, in the order the proxy evaluates them (as `istioctl x authz check`
    lists them), then the JWT providers of its RequestAuthentications."""
    access = snapshot.access
    rows = []
    for p in access.policies:
        notes = []
        if p.provider:
            notes.append(f"provider {p.provider}")
        if p.dry_run:
            notes.append("dry run: logged, not enforced")
        if p.action == "ALLOW" and not p.rules:
            notes.append("allows nothing")
        if p.action == "AUDIT":
            notes.append("never decides")
        name = f"{p.name}.{p.namespace}" if p.namespace else p.name
        rows.append([p.action, name, str(len(p.rules)), "; ".join(notes) or "-"])
    if not rows:
        rows.append(["-", "(none: every request is allowed)", "-", "-"])
    out = table(["ACTION", "AUTHORIZATIONPOLICY", "RULES", "NOTE"], rows)
    jwt = []
    for j in access.jwt:
        keys = _count_keys(j.jwks)
        source = j.jwks_uri or "inline"
        where = [f"{h.name}: {h.prefix}".rstrip() for h in j.from_headers] + [f"?{p}" for p in j.from_params]
        where += [f"cookie {c}" for c in j.from_cookies]
        ref = j.source.split("/")
        owner = f"{ref[2]}.{ref[1]}" if len(ref) == 3 else j.source or "-"
        jwt.append([j.issuer, f"{source} ({keys})", ", ".join(where) or "Authorization: Bearer, ?access_token", owner])
    if jwt:
        out += "\n\n" + table(["JWT ISSUER", "JWKS", "TOKEN FROM", "REQUESTAUTHENTICATION"], jwt)
    for provider in access.providers:
        out += f"\n\nCUSTOM provider {provider.name}: {provider.cluster} (timeout {provider.timeout:g}s)"
    return out


def _count_keys(jwks: str) -> str:
    try:
        keys = json.loads(jwks).get("keys", []) if jwks else None
    except (ValueError, AttributeError):
        keys = None
    if keys is None:
        return "no keys: tokens fail"
    return f"{len(keys)} key" + ("" if len(keys) == 1 else "s")


def endpoints_table(snapshot: ProxySnapshot) -> str:
    rows = []
    for c in snapshot.clusters:
        for e in c.endpoints:
            rows.append([e.address, "HEALTHY", "OK", c.name, e.workload])
    return table(["ENDPOINT", "STATUS", "OUTLIER CHECK", "CLUSTER", "WORKLOAD"], rows)
