"""AuthorizationPolicy evaluation for one request, with Istio's semantics. Pure: no I/O, no clock.

Order (authorization_policy.proto): a matching CUSTOM policy whose provider says no denies; then a
matching DENY policy denies; then, if the workload has no ALLOW policy, the request is allowed;
otherwise a matching ALLOW policy allows and anything else is denied. AUDIT never decides.
Policies are compiled once (`PolicySet.compile`) into tuples of small predicates, so checking a
request allocates almost nothing; the sidecar keeps one PolicySet per snapshot.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

from sandbox.mesh.names import labels_match
from sandbox.mesh.resources import AuthorizationPolicySpec, Resource
from sandbox.mesh.resources.security import Action, Condition, Operation, Rule, Source

ROOT_NAMESPACE = "istio-system"
DRY_RUN = "istio.io/dry-run"


@dataclass(slots=True)
class RequestAttributes:
    """What the inbound side knows about a request. Header names are lower case."""

    method: str = "GET"
    path: str = "/"  # normalized, query string allowed (it is ignored)
    host: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    port: int = 0  # destination (workload) port
    source_principal: str = ""  # `cluster.local/ns/foo/sa/sleep` from the peer certificate; "" without mTLS
    source_namespace: str = ""  # taken from source_principal when empty
    source_ip: str = ""
    remote_ip: str = ""  # the original client (X-Forwarded-For / PROXY protocol); source_ip when empty
    destination_ip: str = ""
    request_principal: str = ""  # `<iss>/<sub>` of a validated JWT
    claims: Mapping[str, Any] = field(default_factory=dict)
    sni: str = ""
    http: bool = True  # False for plain TCP: HTTP-only fields are then ignored (DENY) or never match

    def __post_init__(self) -> None:
        if not self.source_namespace and "/ns/" in self.source_principal:
            self.source_namespace = self.source_principal.split("/ns/", 1)[1].split("/", 1)[0]
        if not self.remote_ip:
            self.remote_ip = self.source_ip


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    action: Action | None = None  # the action of the policy that decided; None when no policy did
    namespace: str = ""
    policy: str = ""
    rule: int = -1

    @property
    def matched(self) -> str:
        """Envoy's RBAC policy name, `ns[foo]-policy[deny-post]-rule[0]`, or `none`."""
        if not self.policy:
            return "none"
        return f"ns[{self.namespace}]-policy[{self.policy}]-rule[{self.rule}]"

    @property
    def details(self) -> str:
        """The response code details Envoy logs for a denial (empty when allowed)."""
        if self.allowed:
            return ""
        if self.action is Action.CUSTOM:
            return "ext_authz_denied"
        return f"rbac_access_denied_matched_policy[{self.matched}]"


_ALLOWED = Decision(True)
_NO_ALLOW_MATCHED = Decision(False, Action.ALLOW)
Check = Callable[[RequestAttributes], bool]
_Group = tuple[Check, ...]  # ANDed
_HTTP_ONLY_KEYS = ("request.headers[", "request.auth.")


@dataclass(frozen=True, slots=True)
class _Rule:
    sources: tuple[_Group, ...] | None  # None: any source; otherwise ORed
    operations: tuple[_Group, ...] | None
    conditions: _Group


@dataclass(frozen=True, slots=True)
class CompiledPolicy:
    namespace: str
    name: str
    action: Action
    provider: str
    http_rules: tuple[_Rule | None, ...]  # None: a rule that can never match
    tcp_rules: tuple[_Rule | None, ...]
    decisions: tuple[Decision, ...]  # what a match of rule i decides, built once

    def first_match(self, request: RequestAttributes) -> int:
        """The index of the first matching rule, or -1."""
        rules = self.http_rules if request.http else self.tcp_rules
        for i, rule in enumerate(rules):
            if rule is not None and _rule_matches(rule, request):
                return i
        return -1


@dataclass(frozen=True, slots=True)
class PolicySet:
    custom: tuple[CompiledPolicy, ...] = ()
    deny: tuple[CompiledPolicy, ...] = ()
    allow: tuple[CompiledPolicy, ...] = ()

    @classmethod
    def compile(cls, policies: Iterable[Resource[AuthorizationPolicySpec]]) -> PolicySet:
        groups: dict[Action, list[CompiledPolicy]] = {Action.CUSTOM: [], Action.DENY: [], Action.ALLOW: []}
        for policy in sorted(policies, key=lambda p: (p.namespace, p.name)):
            action = policy.spec.action or Action.ALLOW
            if action not in groups or policy.annotations.get(DRY_RUN, "").lower() == "true":
                continue  # AUDIT and dry-run policies never change the decision
            groups[action].append(compile_policy(policy))
        return cls(tuple(groups[Action.CUSTOM]), tuple(groups[Action.DENY]), tuple(groups[Action.ALLOW]))


def applicable(
    policies: Iterable[Resource[Any]],
    workload_labels: Mapping[str, str],
    namespace: str,
    root_namespace: str = ROOT_NAMESPACE,
) -> list[Resource[AuthorizationPolicySpec]]:
    """The AuthorizationPolicies that apply to a workload: its namespace's and the root namespace's,
    whose selector matches its labels. Policies with targetRefs apply to gateways and waypoints only."""
    out = []
    labels = dict(workload_labels)
    for p in policies:
        if p.kind != "AuthorizationPolicy" or p.namespace not in (namespace, root_namespace):
            continue
        spec: AuthorizationPolicySpec = p.spec
        if spec.target_ref is not None or spec.target_refs:
            continue
        if spec.selector is None or labels_match(spec.selector.match_labels, labels):
            out.append(p)
    return out


def evaluate(
    policies: PolicySet | Sequence[Resource[AuthorizationPolicySpec]],
    request: RequestAttributes,
    custom: Callable[[str, RequestAttributes], bool] | None = None,
) -> Decision:
    """The decision for a request, given the policies that apply to the workload (see `applicable`).
    `custom(provider, request)` answers for CUSTOM policies; without it a matching CUSTOM policy denies
    (fail closed, as Envoy does when the authorizer cannot be reached)."""
    compiled = policies if isinstance(policies, PolicySet) else PolicySet.compile(policies)
    for p in compiled.custom:
        i = p.first_match(request)
        if i >= 0 and (custom is None or not custom(p.provider, request)):
            return Decision(False, Action.CUSTOM, p.namespace, p.name, i)
    for p in compiled.deny:
        i = p.first_match(request)
        if i >= 0:
            return p.decisions[i]
    if not compiled.allow:
        return _ALLOWED
    for p in compiled.allow:
        i = p.first_match(request)
        if i >= 0:
            return p.decisions[i]
    return _NO_ALLOW_MATCHED


def _rule_matches(rule: _Rule, request: RequestAttributes) -> bool:
    for check in rule.conditions:
        if not check(request):
            return False
    return _any_group(rule.sources, request) and _any_group(rule.operations, request)


def _any_group(groups: tuple[_Group, ...] | None, request: RequestAttributes) -> bool:
    if groups is None:
        return True
    for group in groups:
        for check in group:
            if not check(request):
                break
        else:
            return True
    return False


# --- compiling ----------------------------------------------------------------------------------


def compile_policy(policy: Resource[AuthorizationPolicySpec]) -> CompiledPolicy:
    spec = policy.spec
    action = spec.action or Action.ALLOW
    http = tuple(_compile_rule(r, http=True, deny=action is Action.DENY) for r in spec.rules)
    tcp = tuple(_compile_rule(r, http=False, deny=action is Action.DENY) for r in spec.rules)
    provider = (spec.provider.name or "") if spec.provider else ""
    allowed = action is Action.ALLOW
    decisions = tuple(Decision(allowed, action, policy.namespace, policy.name, i) for i in range(len(spec.rules)))
    return CompiledPolicy(policy.namespace, policy.name, action, provider, http, tcp, decisions)


def _compile_rule(rule: Rule, http: bool, deny: bool) -> _Rule | None:
    """For TCP, HTTP-only fields are dropped from DENY rules (a missing attribute counts as a match)
    and make any other rule never match (Istio's documented TCP behaviour)."""
    sources, operations, conditions = [], [], []
    for f in rule.from_:
        group = _source(f.source, http, deny) if f.source else ()
        if group is None:
            return None
        sources.append(group)
    for t in rule.to:
        group = _operation(t.operation, http, deny) if t.operation else ()
        if group is None:
            return None
        operations.append(group)
    for c in rule.when:
        checks = _condition(c, http, deny)
        if checks is None:
            return None
        conditions.extend(checks)
    return _Rule(tuple(sources) if sources else None, tuple(operations) if operations else None, tuple(conditions))


class _Fields:
    """Collects the checks of one source/operation, applying the TCP rule to HTTP-only fields."""

    def __init__(self, http: bool, deny: bool) -> None:
        self.http, self.deny, self.checks, self.never = http, deny, list[Check](), False

    def add(
        self, values: tuple[str, ...], negative: bool, make: Callable[[tuple[str, ...]], Check], http_only: bool
    ) -> None:
        if not values:
            return
        if http_only and not self.http:
            self.never = self.never or not self.deny
            return
        check = make(values)
        self.checks.append((lambda r: not check(r)) if negative else check)

    def result(self) -> _Group | None:
        return None if self.never else tuple(self.checks)


def _source(s: Source, http: bool, deny: bool) -> _Group | None:
    f = _Fields(http, deny)
    for negative in (False, True):
        prefix = "not_" if negative else ""
        f.add(getattr(s, prefix + "principals"), negative, lambda v: _attr(v, _principal), False)
        f.add(getattr(s, prefix + "request_principals"), negative, lambda v: _attr(v, _request_principal), True)
        f.add(getattr(s, prefix + "namespaces"), negative, lambda v: _attr(v, _namespace), False)
        f.add(getattr(s, prefix + "service_accounts"), negative, _service_accounts, False)
        f.add(getattr(s, prefix + "ip_blocks"), negative, lambda v: _ips(v, _source_ip), False)
        f.add(getattr(s, prefix + "remote_ip_blocks"), negative, lambda v: _ips(v, _remote_ip), False)
    return f.result()


def _operation(o: Operation, http: bool, deny: bool) -> _Group | None:
    f = _Fields(http, deny)
    for negative in (False, True):
        prefix = "not_" if negative else ""
        f.add(getattr(o, prefix + "hosts"), negative, lambda v: _attr(v, _host, lower=True), True)
        f.add(getattr(o, prefix + "ports"), negative, _ports, False)
        f.add(getattr(o, prefix + "methods"), negative, lambda v: _attr(v, _method), True)
        f.add(getattr(o, prefix + "paths"), negative, lambda v: _attr(v, _path), True)
    return f.result()


def _condition(c: Condition, http: bool, deny: bool) -> list[Check] | None:
    key = c.key
    http_only = key.startswith(_HTTP_ONLY_KEYS)
    if http_only and not http:
        return [] if deny else None
    make = _condition_attr(key)
    if make is None:
        return []  # "Unsupported keys and values are silently ignored."
    checks: list[Check] = []
    if c.values:
        checks.append(make(c.values))
    if c.not_values:
        inner = make(c.not_values)
        checks.append(lambda r: not inner(r))
    return checks


def _condition_attr(key: str) -> Callable[[tuple[str, ...]], Check] | None:
    simple: dict[str, Callable[[RequestAttributes], Any]] = {
        "source.principal": _principal,
        "source.namespace": _namespace,
        "request.auth.principal": _request_principal,
        "request.auth.presenter": lambda r: r.claims.get("azp", ""),
        "request.auth.audiences": lambda r: r.claims.get("aud", ""),  # a string or a list
        "destination.port": lambda r: str(r.port) if r.port else "",
        "connection.sni": _sni,
    }
    if key in simple:
        getter = simple[key]
        scalar = not key.startswith("request.auth.")  # claims may be lists or numbers
        return lambda v: _attr(v, getter, scalar=scalar)
    if key in ("source.ip", "remote.ip", "destination.ip"):
        ip_getter = {"source.ip": _source_ip, "remote.ip": _remote_ip, "destination.ip": _destination_ip}[key]
        return lambda v: _ips(v, ip_getter)
    if key.startswith("request.headers[") and key.endswith("]"):
        name = key[len("request.headers[") : -1].lower()
        return lambda v: _attr(v, lambda r: r.headers.get(name, ""))
    if key.startswith("request.auth.claims[") and key.endswith("]"):
        path = tuple(key[len("request.auth.claims[") : -1].split("]["))
        return lambda v: _attr(v, lambda r: _claim(r.claims, path), scalar=False)
    return None


def _claim(claims: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = claims
    for part in path:
        if not isinstance(value, Mapping):
            return ""
        value = value.get(part, "")
    return value


# C-level getters: the hot path of a check is one of these plus a set lookup or a startswith.
_principal = attrgetter("source_principal")
_request_principal = attrgetter("request_principal")
_namespace = attrgetter("source_namespace")
_host = attrgetter("host")
_method = attrgetter("method")
_source_ip = attrgetter("source_ip")
_remote_ip = attrgetter("remote_ip")
_destination_ip = attrgetter("destination_ip")
_sni = attrgetter("sni")


def _path(r: RequestAttributes) -> str:
    path: str = r.path
    cut = path.find("?")
    return path if cut < 0 else path[:cut]


class StringMatcher:
    """Istio's string match: exact `abc`, prefix `abc*`, suffix `*abc`, presence `*`; paths also take
    the `{*}` (one segment) and `{**}` (the rest) templates."""

    __slots__ = ("exact", "lower", "prefixes", "presence", "regexes", "suffixes")

    def __init__(self, values: Iterable[str], lower: bool = False) -> None:
        exact, prefixes, suffixes, regexes = set(), [], [], []
        self.presence = False
        for raw in values:
            v = raw.lower() if lower else raw
            if v == "*":
                self.presence = True
            elif "{*}" in v or "{**}" in v:
                regexes.append(re.compile(_template(v)))
            elif v.endswith("*"):
                prefixes.append(v[:-1])
            elif v.startswith("*"):
                suffixes.append(v[1:])
            else:
                exact.add(v)
        self.exact, self.prefixes, self.suffixes = frozenset(exact), tuple(prefixes), tuple(suffixes)
        self.regexes, self.lower = tuple(regexes), lower

    def __call__(self, value: str) -> bool:
        if not value:
            return False
        if self.lower:
            value = value.lower()
        if value in self.exact or self.presence:
            return True
        if self.prefixes and value.startswith(self.prefixes):
            return True
        if self.suffixes and value.endswith(self.suffixes):
            return True
        return any(r.fullmatch(value) for r in self.regexes)


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


def _attr(
    values: tuple[str, ...], getter: Callable[[RequestAttributes], Any], lower: bool = False, scalar: bool = True
) -> Check:
    match = StringMatcher(values, lower)
    if scalar and not lower and not (match.presence or match.prefixes or match.suffixes or match.regexes):
        exact = match.exact
        return lambda r: getter(r) in exact
    if scalar:
        return lambda r: match(getter(r))

    def check(r: RequestAttributes) -> bool:
        value = getter(r)
        if isinstance(value, str):
            return match(value)
        if isinstance(value, list | tuple):  # a list claim (groups, aud): any element
            return any(isinstance(v, str) and match(v) for v in value)
        return value is not None and value != "" and match(str(value))

    return check


def _service_accounts(values: tuple[str, ...]) -> Check:
    wanted = frozenset(values)

    def check(r: RequestAttributes) -> bool:
        p = r.source_principal
        cut = p.find("/ns/")
        return cut >= 0 and p[cut + 4 :].replace("/sa/", "/", 1) in wanted

    return check


def _ports(values: tuple[str, ...]) -> Check:
    wanted = frozenset(int(v) for v in values if v.isdigit())
    return lambda r: r.port in wanted


def _ips(values: tuple[str, ...], getter: Callable[[RequestAttributes], str]) -> Check:
    networks = []
    for v in values:
        try:
            networks.append(ipaddress.ip_network(v, strict=False))
        except ValueError:
            continue  # validation reports it; an unparsable block matches nothing

    def check(r: RequestAttributes) -> bool:
        text = getter(r)
        if not text:
            return False
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            return False
        return any(address in n for n in networks)

    return check
