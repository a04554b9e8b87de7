"""rbac.istio.io/v1alpha1 -> AuthorizationPolicy.

Legacy semantics (Istio 1.5): RBAC is off unless a ClusterRbacConfig turns it on for a service;
where it is on, a request is allowed only when some ServiceRoleBinding in the service's namespace
binds a subject that matches the caller to a ServiceRole with a rule that matches the request.
The translation keeps that meaning: ALLOW policies for the bindings, restricted to where RBAC is
on, plus allow-nothing policies (`spec: {}`) so that covered workloads without a binding still
deny. Anything that cannot be said in AuthorizationPolicy is left out in the *denying* direction
(a rule dropped from an ALLOW policy grants less, never more) and reported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sandbox.mesh.diagnostics import join_path
from sandbox.mesh.legacy.common import ROOT_NAMESPACE, ROOT_WIDE, Notes, derived, legacy_star, selector
from sandbox.mesh.legacy.rbacconfig import Labels, Scope, pick_config, service_of, translate_config
from sandbox.mesh.legacy.specs import (
    AccessRule,
    EnforcementMode,
    ServiceRoleBindingSpec,
    ServiceRoleSpec,
    Subject,
)
from sandbox.mesh.resources import AuthorizationPolicySpec, Resource
from sandbox.mesh.resources.security import Action, Condition, Operation, Rule, RuleFrom, RuleTo, Source

Translated = dict[tuple[str, str, str], list[Resource[Any]]]  # legacy resource key -> modern resources

# ServiceRoleBinding `properties` keys (RBAC "constraints and properties" page, Istio 1.4).
_SOURCE_PROPERTIES = {
    "source.principal": "principals",
    "source.user": "principals",  # the pre-1.1 name
    "source.namespace": "namespaces",
    "source.ip": "ip_blocks",
    "request.auth.principal": "request_principals",
}
_WHEN_FOR_FIELD = {
    "principals": "source.principal",
    "namespaces": "source.namespace",
    "ip_blocks": "source.ip",
    "request_principals": "request.auth.principal",
}
_CONDITION_PREFIXES = ("request.headers[", "request.auth.claims[", "experimental.envoy.filters.")
_CONDITION_KEYS = {"request.auth.audiences", "request.auth.presenter"}


def _is_condition(key: str) -> bool:
    return key in _CONDITION_KEYS or key.startswith(_CONDITION_PREFIXES)


def translate_rbac(resources: Sequence[Resource[Any]], notes: Notes) -> Translated:
    configs = [r for r in resources if r.kind in ("ClusterRbacConfig", "RbacConfig")]
    roles = {(r.namespace, r.name): r for r in resources if r.kind == "ServiceRole"}
    bindings = [r for r in resources if r.kind == "ServiceRoleBinding"]
    out: Translated = {}
    config = pick_config(configs, notes)
    scope = Scope()
    if config is not None:
        namespaces = {r.namespace for r in resources if r.namespace != ROOT_NAMESPACE} | {"default"}
        scope, policies = translate_config(config, namespaces, notes)
        out[config.key] = policies
    elif bindings:
        notes.lossy(
            bindings[0],
            "no ClusterRbacConfig among the loaded files: in Istio 1.5 ServiceRoleBindings had no effect until "
            "RBAC was turned on; translated as if RBAC were ON for the services the roles name",
        )
    for binding in bindings:
        policies = _translate_binding(binding, roles, scope, notes)
        out[binding.key] = policies
        role_key = _role_key(binding)
        if role_key in roles:
            out.setdefault(roles[role_key].key, []).extend(policies)
    for role in roles.values():
        if role.key not in out:
            out[role.key] = []
            notes.note(
                role, "no ServiceRoleBinding refers to this ServiceRole: it granted nothing; nothing to translate"
            )
    return out


def _role_key(binding: Resource[ServiceRoleBindingSpec]) -> tuple[str, str]:
    spec = binding.spec
    if spec.role:
        if spec.role.startswith("/"):
            return ROOT_NAMESPACE, spec.role[1:]
        return binding.namespace, spec.role
    return binding.namespace, spec.role_ref.name if spec.role_ref else ""


def _translate_binding(
    binding: Resource[ServiceRoleBindingSpec],
    roles: dict[tuple[str, str], Resource[ServiceRoleSpec]],
    scope: Scope,
    notes: Notes,
) -> list[Resource[Any]]:
    spec = binding.spec
    owner: Resource[Any] = binding  # where notes about the rules point
    if spec.actions:
        rules, rules_path = spec.actions, "spec/actions"
    else:
        if spec.role_ref is not None and spec.role_ref.kind not in ("", "ServiceRole"):
            notes.lossy(binding, f"roleRef.kind must be ServiceRole, not '{spec.role_ref.kind}'", "spec/roleRef/kind")
            return []
        key = _role_key(binding)
        role = roles.get(key)
        if role is None:
            notes.lossy(
                binding,
                f"refers to ServiceRole {key[0]}/{key[1]}, which is not among the loaded files: "
                "the binding grants nothing here; nothing translated",
                "spec/roleRef",
            )
            return []
        rules, rules_path, owner = role.spec.rules, "spec/rules", role  # a root role applies in the binding's ns
    subjects = [s for s in (_subject(binding, i, subj, notes) for i, subj in enumerate(spec.subjects)) if s]
    if not subjects:
        notes.note(binding, "no subject can match: the binding grants nothing; nothing translated", "spec/subjects")
        return []
    by_target: dict[Labels, list[Rule]] = {}
    ns = binding.namespace
    for i, access in enumerate(rules):
        path = join_path(rules_path, i)
        compiled = _access_rule(owner, binding.namespace, access, path, notes)
        if compiled is None:
            continue
        targets, operation, when = compiled
        modern = _combine(operation, when, subjects)
        for target in targets:
            restricted = scope.restrict(ns, target)
            if not restricted:
                where = dict(target).get("app") or f"namespace {ns}"
                notes.note(owner, f"RBAC is not on for {where}: rule {i} had no effect there", path)
            for labels in restricted:
                by_target.setdefault(labels, []).extend(modern)
    dry_run = scope.dry_run or spec.mode is EnforcementMode.PERMISSIVE
    policies = []
    if ns == ROOT_NAMESPACE and () in by_target:
        notes.lossy(binding, ROOT_WIDE.format(ns=ns), "spec")
        del by_target[()]
    for labels, modern_rules in by_target.items():
        name = binding.name if len(by_target) == 1 else "-".join([binding.name, *(v for _, v in labels)])
        policy = AuthorizationPolicySpec(selector=selector(labels), action=Action.ALLOW, rules=tuple(modern_rules))
        policies.append(derived("AuthorizationPolicy", name, ns, policy, binding, dry_run))
    return policies


@dataclass
class _Subject:
    source: Source | None  # None: any caller
    when: tuple[Condition, ...] = ()


def _subject(binding: Resource[Any], index: int, subject: Subject, notes: Notes) -> _Subject | None:
    """A legacy subject as a Source plus conditions; None when it can never match."""
    path = join_path("spec/subjects", index)
    fields: dict[str, tuple[str, ...]] = {}
    when: list[Condition] = []

    def add(name: str, values: tuple[str, ...], negative: bool = False) -> bool:
        if not values:
            return True
        if name == "principals" and any(v.startswith("spiffe://") for v in values):
            # Istio 1.0 wrote users as SPIFFE IDs; from 1.1 a principal has no scheme.
            values = tuple(v.removeprefix("spiffe://") for v in values)
            notes.note(binding, "the 'spiffe://' prefix of Istio 1.0 users is dropped: principals have none", path)
        if legacy_star(values):
            if negative:
                notes.lossy(binding, f"'*' in a not-field excludes every caller: subject {index} never matches", path)
                return False
            return True  # v1alpha1 `*` matched anything, even an absent value: no constraint
        key = f"not_{name}" if negative else name
        if key in fields:  # a second constraint on the same attribute is ANDed: a condition says that
            cond = _WHEN_FOR_FIELD[name]
            when.append(Condition(key=cond, not_values=values) if negative else Condition(key=cond, values=values))
        else:
            fields[key] = values
        return True

    ok = add("principals", (subject.user,) if subject.user else ())
    ok = ok and add("principals", subject.names) and add("principals", subject.not_names, negative=True)
    ok = ok and add("namespaces", subject.namespaces) and add("namespaces", subject.not_namespaces, negative=True)
    ok = ok and add("ip_blocks", subject.ips) and add("ip_blocks", subject.not_ips, negative=True)
    groups = (*((subject.group,) if subject.group else ()), *subject.groups)
    if groups and not legacy_star(groups):
        when.append(Condition(key="request.auth.claims[groups]", values=groups))
    if subject.not_groups:
        when.append(Condition(key="request.auth.claims[groups]", not_values=subject.not_groups))
    for key, value in subject.properties.items():
        if key in _SOURCE_PROPERTIES:
            ok = ok and add(_SOURCE_PROPERTIES[key], (value,))
        elif _is_condition(key):
            if value != "*":
                when.append(Condition(key=key, values=(value,)))
        else:
            notes.lossy(
                binding,
                f"property '{key}' is not supported; Istio 1.5 ignored it as well, so it restricts nothing",
                join_path(f"{path}/properties", key),
            )
    if not ok:
        return None
    source = Source(**fields) if fields else None
    return _Subject(source, tuple(when))


def _access_rule(
    binding: Resource[Any], ns: str, rule: AccessRule, path: str, notes: Notes
) -> tuple[list[Labels], Operation | None, tuple[Condition, ...]] | None:
    """Targets, operation and conditions of one ServiceRole rule; None when it is left out."""
    targets = _targets(binding, ns, rule.services, path, notes)
    if not targets:
        return None
    ports: set[int] | None = set(rule.ports) if rule.ports else None
    when: list[Condition] = []
    for i, constraint in enumerate(rule.constraints):
        cpath = join_path(f"{path}/constraints", i)
        key, values = constraint.key, constraint.values
        if legacy_star(values):
            continue  # matched anything, even an absent value
        if key.startswith("destination.labels[") and key.endswith("]"):
            label = key[len("destination.labels[") : -1]
            if any("*" in v for v in values):
                notes.lossy(binding, f"a selector cannot match '{key}' by prefix or suffix; rule left out", cpath)
                return None
            narrowed: list[Labels] = []
            for t in targets:
                current = dict(t).get(label)
                if current is None:
                    narrowed.extend((*t, (label, v)) for v in values)
                elif current in values:
                    narrowed.append(t)
            if not narrowed:
                notes.note(binding, f"'{key}' contradicts the rule's services: it never matched; left out", cpath)
                return None
            targets = narrowed
        elif key == "destination.port":
            wanted = {int(v) for v in values if v.isdigit()}
            if len(wanted) != len(values):
                notes.lossy(binding, "destination.port values must be port numbers; rule left out", cpath)
                return None
            ports = wanted if ports is None else ports & wanted
        elif key == "destination.namespace":
            if not any(_legacy_match(v, ns) for v in values):
                notes.note(binding, f"destination.namespace never matches namespace {ns}; rule left out", cpath)
                return None
        elif key == "destination.ip" or _is_condition(key):
            when.append(Condition(key=key, values=values))
        elif key == "destination.user":
            notes.lossy(binding, "AuthorizationPolicy has no destination.user condition; rule left out", cpath)
            return None
        else:
            notes.lossy(binding, f"constraint '{key}' is not supported; Istio 1.5 ignored it as well", cpath)
    if ports is not None and not ports:
        notes.note(binding, "the port constraints exclude each other: the rule never matched; left out", path)
        return None
    ok, op = _operation(binding, rule, ports, path, notes)
    if not ok:
        return None
    return targets, op, tuple(when)


def _targets(binding: Resource[Any], ns: str, services: tuple[str, ...], path: str, notes: Notes) -> list[Labels]:
    if not services:
        notes.lossy(binding, "a rule without services matches no service; left out", path)
        return []
    targets: list[Labels] = []
    for i, name in enumerate(services):
        spath = join_path(f"{path}/services", i)
        if name == "*" or (name.startswith("*") and f".{ns}.svc.cluster.local".endswith(name[1:])):
            return [()]  # every service of the namespace
        service = service_of(name, ns)
        if service is None:
            notes.lossy(binding, f"service pattern '{name}' cannot be written as a workload selector; left out", spath)
        elif service[0] != ns:
            notes.note(binding, f"service '{name}' is in another namespace: the role never applied to it", spath)
        elif (("app", service[1]),) not in targets:
            targets.append((("app", service[1]),))
    return targets


def _operation(
    binding: Resource[Any], rule: AccessRule, ports: set[int] | None, path: str, notes: Notes
) -> tuple[bool, Operation | None]:
    fields: dict[str, tuple[str, ...]] = {}
    for name in ("hosts", "paths", "methods"):
        values: tuple[str, ...] = getattr(rule, name)
        if values and not legacy_star(values):
            fields[name] = values
        negative: tuple[str, ...] = getattr(rule, f"not_{name}")
        if legacy_star(negative):
            notes.note(binding, f"'*' in not{name.title()} excludes every request: the rule never matched", path)
            return False, None
        if negative:
            fields[f"not_{name}"] = negative
    if ports:
        fields["ports"] = tuple(str(p) for p in sorted(ports))
    if rule.not_ports:
        fields["not_ports"] = tuple(str(p) for p in rule.not_ports)
    return True, Operation(**fields) if fields else None


def _combine(operation: Operation | None, when: tuple[Condition, ...], subjects: list[_Subject]) -> list[Rule]:
    """Modern rules granting `operation` to the subjects. Subjects are ORed; a subject's own
    conditions would be ANDed with the rest of a rule, so such a subject gets a rule of its own."""
    to = (RuleTo(operation=operation),) if operation else ()
    rules: list[Rule] = []
    plain = [s for s in subjects if not s.when]
    if plain:
        anyone = any(s.source is None for s in plain)
        sources = () if anyone else tuple(RuleFrom(source=s.source) for s in plain)
        rules.append(Rule(from_=sources, to=to, when=when))
    for s in subjects:
        if s.when:
            sources = (RuleFrom(source=s.source),) if s.source else ()
            rules.append(Rule(from_=sources, to=to, when=(*when, *s.when)))
    return rules


def _legacy_match(pattern: str, value: str) -> bool:
    if pattern == "*":
        return True
    if pattern.endswith("*"):
        return value.startswith(pattern[:-1])
    if pattern.startswith("*"):
        return value.endswith(pattern[1:])
    return pattern == value
