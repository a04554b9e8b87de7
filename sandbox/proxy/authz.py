"""AuthorizationPolicy in the data path: Envoy's RBAC filters as Istio configures them. Compiled.

`Authorizer(policies)` compiles a snapshot's policies once into matchers; each request then builds
one `AuthzRequest` and walks them. Semantics (docs/reference/istio-semantics.md §2.4,
authorization_policy.proto):
- CUSTOM first (`custom_match`: the filter chain then asks the extension provider), then DENY,
  then ALLOW: with no ALLOW policy the request is allowed; with any, only a matching rule allows.
  AUDIT never decides. `spec: {}` (an ALLOW policy without rules) denies everything.
- A rule matches when at least one `from`, at least one `to` and every `when` match; fields in a
  source or operation are ANDed, values in a list ORed; strings match exactly, by `prefix*`,
  `*suffix`, or `*` (present); paths also take the `{*}` and `{**}` templates.
- Each rule is one Envoy RBAC policy named `ns[<ns>]-policy[<name>]-rule[<i>]`; Envoy keeps them
  in a sorted map, so the first match in name order is the one reported
  (`rbac_access_denied_matched_policy[...]`, or `[none]` when no ALLOW rule matched).
- `istio.io/dry-run` policies never change the decision: `shadow` says what they would have done.
The peer's identity comes from the connection (mutual TLS): `source.principal` is
`<trust domain>/ns/<ns>/sa/<sa>` and `source.namespace` is read from it; plaintext has neither.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import Any

from sandbox.mesh.resources.security import Condition, Operation, Rule, Source
from sandbox.xds.access import AuthzPolicy

DENIED_BODY = "RBAC: access denied"  # Envoy's RBAC filter local reply (19 bytes)
DENIED_DETAILS = "rbac_access_denied_matched_policy[%s]"
SPIFFE = "spiffe://"

# Request attributes a FieldMatch reads
METHOD, PATH, HOST, PRINCIPAL, NAMESPACE, REQUEST_PRINCIPAL, SNI = 0, 1, 2, 3, 4, 5, 6
SOURCE_IP, REMOTE_IP, DESTINATION_IP = 0, 1, 2
# Claims Istio always reads as space-delimited lists (RequestAuthentication spaceDelimitedClaims)
SPACE_DELIMITED = frozenset({"scope", "permission"})


class AuthzRequest:
    """What the RBAC engine reads of one request, built once per request on proxies with policies.
    `path` is without its query, dot segments resolved (as Envoy normalizes it); `host` lowercase."""

    def __init__(
        self,
        method: str,
        path: str,
        host: str,
        headers: dict[str, str],
        port: int,
        principal: str,
        source_ip: str,
        remote_ip: str,
        destination_ip: str,
        sni: str,
    ) -> None:
        self.method = method
        cut = path.find("?")
        if cut >= 0:
            path = path[:cut]
        if "/." in path:
            path = normalize_path(path)
        self.path = path
        self.host = host.lower()
        self.headers = headers
        self.port = port
        if principal.startswith(SPIFFE):
            principal = principal[len(SPIFFE) :]
        self.principal = principal
        self.namespace = namespace_of(principal)
        self.source_ip = source_ip
        self.remote_ip = remote_ip or source_ip
        self.destination_ip = destination_ip
        self.sni = sni
        self.request_principal = ""  # `<iss>/<sub>` of the verified JWT
        self.claims: dict[str, Any] | None = None  # its payload


def namespace_of(principal: str) -> str:
    """`cluster.local/ns/foo/sa/sleep` -> `foo` (Istio derives source.namespace from the principal)."""
    cut = principal.find("/ns/")
    if cut < 0:
        return ""
    rest = principal[cut + 4 :]
    end = rest.find("/")
    return rest if end < 0 else rest[:end]


def normalize_path(path: str) -> str:
    """RFC 3986 remove_dot_segments, as Envoy's normalize_path does before any filter sees the path."""
    out: list[str] = []
    segments = path.split("/")
    for i, segment in enumerate(segments):
        if segment == ".":
            if i == len(segments) - 1:
                out.append("")
            continue
        if segment == "..":
            if len(out) > 1:
                out.pop()
            if i == len(segments) - 1:
                out.append("")
            continue
        out.append(segment)
    normalized = "/".join(out)
    return normalized if normalized.startswith("/") else "/" + normalized


# --------------------------------------------------------------------------- matchers


class StringMatch:
    """Istio's string match over a list of values: exact, `prefix*`, `*suffix`, `*` (any non-empty
    value); with `templates`, `{*}` (one path segment) and `{**}` (the rest)."""

    def __init__(self, values: Iterable[str], lower: bool = False, templates: bool = False) -> None:
        exact: set[str] = set()
        prefixes: list[str] = []
        suffixes: list[str] = []
        patterns: list[Any] = []
        self.presence = False
        for raw in values:
            v = raw.lower() if lower else raw
            if v == "*":
                self.presence = True
            elif templates and ("{*}" in v or "{**}" in v):
                patterns.append(re.compile(_template(v)))
            elif v.endswith("*"):
                prefixes.append(v[:-1])
            elif v.startswith("*"):
                suffixes.append(v[1:])
            else:
                exact.add(v)
        self.exact = exact
        self.prefixes = tuple(prefixes)
        self.suffixes = tuple(suffixes)
        self.patterns = patterns

    def match(self, value: str) -> bool:
        if not value:
            return False
        if self.presence or value in self.exact:
            return True
        if self.prefixes and value.startswith(self.prefixes):
            return True
        if self.suffixes and value.endswith(self.suffixes):
            return True
        return any(pattern.fullmatch(value) is not None for pattern in self.patterns)


def _template(path: str) -> str:
    parts = []
    for segment in path.split("/"):
        if segment == "{*}":
            parts.append("[^/]+")
        elif segment == "{**}":
            parts.append(".+")
        else:
            parts.append(re.escape(segment))
    return "/".join(parts)


class Matcher:
    def matches(self, r: AuthzRequest) -> bool:
        raise NotImplementedError


class Not(Matcher):
    def __init__(self, inner: Matcher) -> None:
        self.inner = inner

    def matches(self, r: AuthzRequest) -> bool:
        return not self.inner.matches(r)


class FieldMatch(Matcher):
    def __init__(self, field: int, values: StringMatch) -> None:
        self.field = field
        self.values = values

    def matches(self, r: AuthzRequest) -> bool:
        field = self.field
        if field == METHOD:
            value = r.method
        elif field == PATH:
            value = r.path
        elif field == PRINCIPAL:
            value = r.principal
        elif field == NAMESPACE:
            value = r.namespace
        elif field == REQUEST_PRINCIPAL:
            value = r.request_principal
        elif field == SNI:
            value = r.sni
        else:
            return self._host(r.host)
        return self.values.match(value)

    def _host(self, host: str) -> bool:
        """Istio matches a host with or without the port the request names."""
        if self.values.match(host):
            return True
        cut = host.rfind(":")
        return cut > 0 and not host.endswith("]") and self.values.match(host[:cut])


class HeaderMatch(Matcher):
    def __init__(self, name: str, values: StringMatch) -> None:
        self.name = name
        self.values = values

    def matches(self, r: AuthzRequest) -> bool:
        value = r.headers.get(self.name)
        return value is not None and self.values.match(value)


class ClaimMatch(Matcher):
    """`request.auth.claims[a][b]` (and audiences, presenter): a list claim matches when any of its
    strings does; numbers and booleans as their JSON text."""

    def __init__(self, path: list[str], values: StringMatch) -> None:
        self.path = path
        self.values = values
        self.split = len(path) == 1 and path[0] in SPACE_DELIMITED

    def matches(self, r: AuthzRequest) -> bool:
        value: Any = r.claims
        for part in self.path:
            if not isinstance(value, dict):
                return False
            value = value.get(part)
        if value is None:
            return False
        if isinstance(value, str):
            if self.split:
                return any(self.values.match(v) for v in value.split())
            return self.values.match(value)
        if isinstance(value, list):
            return any(isinstance(v, str) and self.values.match(v) for v in value)
        if isinstance(value, bool):
            return self.values.match("true" if value else "false")
        if isinstance(value, int) or isinstance(value, float):  # noqa: SIM101 - compiled: two plain checks
            return self.values.match(str(value))
        return False


class IpMatch(Matcher):
    """Addresses and CIDR blocks as (version, network, mask) integers: a request's address is parsed
    once per distinct text (`_address`), then each block is a mask and a compare."""

    def __init__(self, field: int, blocks: Iterable[str]) -> None:
        self.field = field
        networks: list[tuple[int, int, int]] = []
        for block in blocks:
            try:
                network = ipaddress.ip_network(block.strip(), strict=False)
            except ValueError:
                continue  # the analyzer reports it; an unparsable block matches nothing
            networks.append((network.version, int(network.network_address), int(network.netmask)))
        self.networks = networks

    def matches(self, r: AuthzRequest) -> bool:
        field = self.field
        text = r.source_ip if field == SOURCE_IP else r.remote_ip if field == REMOTE_IP else r.destination_ip
        if not text:
            return False
        version, value = _address(text)
        return any(v == version and value & mask == network for v, network, mask in self.networks)


_ADDRESSES: dict[str, tuple[int, int]] = {}  # address text -> (version, value); version 0: not an address


def _address(text: str) -> tuple[int, int]:
    found = _ADDRESSES.get(text)
    if found is None:
        try:
            address: Any = ipaddress.ip_address(text.strip("[]"))
            found = (int(address.version), int(address))
        except ValueError:
            found = (0, 0)
        if len(_ADDRESSES) >= 4096:  # addresses are client input (X-Forwarded-For): bound the cache
            _ADDRESSES.clear()
        _ADDRESSES[text] = found
    return found


class PortMatch(Matcher):
    def __init__(self, ports: Iterable[str]) -> None:
        self.ports = {int(p) for p in ports if p.strip().isdigit()}

    def matches(self, r: AuthzRequest) -> bool:
        return r.port in self.ports


class ServiceAccountMatch(Matcher):
    """`serviceAccounts: [ns/sa]`: the principal's namespace and service account."""

    def __init__(self, accounts: Iterable[str]) -> None:
        self.accounts = set(accounts)

    def matches(self, r: AuthzRequest) -> bool:
        p = r.principal
        cut = p.find("/ns/")
        return cut >= 0 and p[cut + 4 :].replace("/sa/", "/", 1) in self.accounts


# --------------------------------------------------------------------------- rules and policies


class CompiledRule:
    """`sources`/`operations`: None when the rule has no from/to (any); else OR of AND lists. A single
    `from` or `to` (the usual rule) joins the `when` checks in one AND list: one loop per rule."""

    def __init__(
        self, sources: list[list[Matcher]] | None, operations: list[list[Matcher]] | None, conditions: list[Matcher]
    ) -> None:
        flat = list(conditions)
        if operations is not None and len(operations) == 1:
            flat.extend(operations[0])
            operations = None
        if sources is not None and len(sources) == 1:
            flat.extend(sources[0])
            sources = None
        self.sources = sources
        self.operations = operations
        self.conditions = flat

    def matches(self, r: AuthzRequest) -> bool:
        for m in self.conditions:
            if not m.matches(r):
                return False
        sources = self.sources
        if sources is not None and not _any_group(sources, r):
            return False
        operations = self.operations
        return operations is None or _any_group(operations, r)


def _any_group(groups: list[list[Matcher]], r: AuthzRequest) -> bool:
    for group in groups:
        for m in group:
            if not m.matches(r):
                break
        else:
            return True
    return False


class Verdict:
    """What one RBAC engine decided; `policy` is Envoy's effective policy id (or "none")."""

    def __init__(self, allowed: bool, policy: str) -> None:
        self.allowed = allowed
        self.policy = policy
        self.details = "" if allowed else DENIED_DETAILS % policy


ALLOWED = Verdict(True, "none")
NONE_MATCHED = Verdict(False, "none")


class Entry:
    """One rule of one policy: an Envoy RBAC policy."""

    def __init__(self, policy: AuthzPolicy, index: int, rule: CompiledRule) -> None:
        self.name = policy_id(policy, index)
        self.rule = rule
        self.provider = policy.provider
        self.allowed = Verdict(True, self.name)
        self.denied = Verdict(False, self.name)


def policy_id(policy: AuthzPolicy, index: int) -> str:
    if not policy.namespace:
        return policy.name  # made by the control plane (deny-due-to-invalid-CUSTOM)
    return f"ns[{policy.namespace}]-policy[{policy.name}]-rule[{index}]"


class Shadow:
    """A dry-run result: `action` allow|deny, `result` allowed|denied, `policy` the effective id."""

    def __init__(self, action: str, result: str, policy: str) -> None:
        self.action = action
        self.result = result
        self.policy = policy


class Authorizer:
    def __init__(self, policies: Iterable[AuthzPolicy]) -> None:
        groups: dict[str, list[Entry]] = {"CUSTOM": [], "DENY": [], "ALLOW": []}
        dry: dict[str, list[Entry]] = {"DENY": [], "ALLOW": []}
        self.has_allow = False
        self.has_dry_allow = False
        for policy in policies:
            action = policy.action
            if action not in groups:
                continue  # AUDIT marks requests for a logging plugin; it never decides
            entries = [Entry(policy, i, compile_rule(rule)) for i, rule in enumerate(policy.rules)]
            if policy.dry_run:
                if action in dry:
                    dry[action].extend(entries)
                    self.has_dry_allow = self.has_dry_allow or action == "ALLOW"
                continue
            groups[action].extend(entries)
            if action == "ALLOW":
                self.has_allow = True
        self.custom = _sorted(groups["CUSTOM"])
        self.deny = _sorted(groups["DENY"])
        self.allow = _sorted(groups["ALLOW"])
        # What the request would meet if the dry-run policies were enforced too (Envoy's shadow engines).
        self.shadow_deny = _sorted(self.deny + dry["DENY"]) if dry["DENY"] else None
        self.shadow_allow = _sorted(self.allow + dry["ALLOW"]) if dry["ALLOW"] else None

    @property
    def dry_run(self) -> bool:
        return self.shadow_deny is not None or self.shadow_allow is not None

    def custom_match(self, r: AuthzRequest) -> Entry | None:
        """The CUSTOM rule that sends this request to its extension provider, if any."""
        for entry in self.custom:
            if entry.rule.matches(r):
                return entry
        return None

    def check(self, r: AuthzRequest) -> Verdict:
        """DENY, then ALLOW (CUSTOM is the filter chain's, before this)."""
        for entry in self.deny:
            if entry.rule.matches(r):
                return entry.denied
        if not self.has_allow:
            return ALLOWED
        for entry in self.allow:
            if entry.rule.matches(r):
                return entry.allowed
        return NONE_MATCHED

    def shadow(self, r: AuthzRequest) -> list[Shadow]:
        out = []
        if self.shadow_deny is not None:
            found = _first(self.shadow_deny, r)
            out.append(Shadow("deny", "denied" if found else "allowed", found or "none"))
        if self.shadow_allow is not None:
            found = _first(self.shadow_allow, r)
            out.append(Shadow("allow", "allowed" if found else "denied", found or "none"))
        return out


def _first(entries: list[Entry], r: AuthzRequest) -> str:
    for entry in entries:
        if entry.rule.matches(r):
            return entry.name
    return ""


def _sorted(entries: list[Entry]) -> list[Entry]:
    return sorted(entries, key=lambda e: e.name)


# --------------------------------------------------------------------------- compiling


def compile_rule(rule: Rule) -> CompiledRule:
    sources = [_source(f.source) if f.source is not None else [] for f in rule.from_]
    operations = [_operation(t.operation) if t.operation is not None else [] for t in rule.to]
    conditions: list[Matcher] = []
    for condition in rule.when:
        conditions.extend(_condition(condition))
    return CompiledRule(sources or None, operations or None, conditions)


def _both(out: list[Matcher], positive: tuple[str, ...], negative: tuple[str, ...], make: Any) -> None:
    if positive:
        out.append(make(positive))
    if negative:
        out.append(Not(make(negative)))


def _principals(values: tuple[str, ...]) -> Matcher:
    return FieldMatch(PRINCIPAL, StringMatch(v[len(SPIFFE) :] if v.startswith(SPIFFE) else v for v in values))


def _source(s: Source) -> list[Matcher]:
    out: list[Matcher] = []
    _both(out, s.principals, s.not_principals, _principals)
    _both(out, s.request_principals, s.not_request_principals, lambda v: FieldMatch(REQUEST_PRINCIPAL, StringMatch(v)))
    _both(out, s.namespaces, s.not_namespaces, lambda v: FieldMatch(NAMESPACE, StringMatch(v)))
    _both(out, s.service_accounts, s.not_service_accounts, ServiceAccountMatch)
    _both(out, s.ip_blocks, s.not_ip_blocks, lambda v: IpMatch(SOURCE_IP, v))
    _both(out, s.remote_ip_blocks, s.not_remote_ip_blocks, lambda v: IpMatch(REMOTE_IP, v))
    return out


def _operation(o: Operation) -> list[Matcher]:
    out: list[Matcher] = []
    _both(out, o.hosts, o.not_hosts, lambda v: FieldMatch(HOST, StringMatch(v, lower=True)))
    _both(out, o.ports, o.not_ports, PortMatch)
    _both(out, o.methods, o.not_methods, lambda v: FieldMatch(METHOD, StringMatch(v)))
    _both(out, o.paths, o.not_paths, lambda v: FieldMatch(PATH, StringMatch(v, templates=True)))
    return out


def _condition(c: Condition) -> list[Matcher]:
    make = condition_matcher(c.key)
    if make is None:
        return []  # "Unsupported keys and values are silently ignored."
    out: list[Matcher] = []
    _both(out, c.values, c.not_values, make)
    return out


def condition_matcher(key: str) -> Any:
    """A function from values to a Matcher for a `when` key; None for a key Istio does not know."""
    fields = {
        "source.principal": PRINCIPAL,
        "source.namespace": NAMESPACE,
        "request.auth.principal": REQUEST_PRINCIPAL,
        "connection.sni": SNI,
    }
    if key in fields:
        field = fields[key]
        if field == PRINCIPAL:
            return _principals
        return lambda v: FieldMatch(field, StringMatch(v))
    ips = {"source.ip": SOURCE_IP, "remote.ip": REMOTE_IP, "destination.ip": DESTINATION_IP}
    if key in ips:
        which = ips[key]
        return lambda v: IpMatch(which, v)
    if key == "destination.port":
        return PortMatch
    if key == "request.auth.audiences":
        return lambda v: ClaimMatch(["aud"], StringMatch(v))
    if key == "request.auth.presenter":
        return lambda v: ClaimMatch(["azp"], StringMatch(v))
    if key.startswith("request.headers[") and key.endswith("]"):
        name = key[len("request.headers[") : -1].lower()
        return lambda v: HeaderMatch(name, StringMatch(v))
    if key.startswith("request.auth.claims[") and key.endswith("]"):
        path = key[len("request.auth.claims[") : -1].split("][")
        return lambda v: ClaimMatch(path, StringMatch(v))
    return None
