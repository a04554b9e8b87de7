"""ClusterRbacConfig (and the older RbacConfig): where v1alpha1 RBAC is on, as allow-nothing policies.

An AuthorizationPolicy covers a namespace or a workload, never "every namespace but the gateways",
so mode ON (and ON_WITH_EXCLUSION) is translated for the namespaces the loaded files name and the
rest is reported; excluded services get an allow-all policy, which is what "no RBAC" means.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sandbox.mesh.diagnostics import join_path
from sandbox.mesh.legacy.common import ROOT_NAMESPACE, ROOT_WIDE, Notes, derived, selector
from sandbox.mesh.legacy.specs import EnforcementMode, RbacConfigSpec, RbacMode
from sandbox.mesh.names import split_fqdn
from sandbox.mesh.resources import AuthorizationPolicySpec, Resource
from sandbox.mesh.resources.security import Action, Rule

Labels = tuple[tuple[str, str], ...]  # a workload selector; () selects the whole namespace


@dataclass
class Scope:
    """Where the ClusterRbacConfig turns RBAC on."""

    mode: RbacMode | None = None  # None: no ClusterRbacConfig was loaded
    services: set[tuple[str, str]] = field(default_factory=set)  # (namespace, app) in inclusion/exclusion
    namespaces: set[str] = field(default_factory=set)
    dry_run: bool = False

    def restrict(self, namespace: str, labels: Labels) -> list[Labels]:
        """The part of a target that RBAC covers, as selectors (empty when it covers none of it)."""
        mode = self.mode
        if mode is None or mode is RbacMode.ON:
            return [labels]
        if mode is RbacMode.OFF:
            return []
        app = dict(labels).get("app")
        if mode is RbacMode.ON_WITH_INCLUSION:
            if namespace in self.namespaces:
                return [labels]
            if app is not None:
                return [labels] if (namespace, app) in self.services else []
            apps = sorted(a for ns, a in self.services if ns == namespace)
            return [(("app", a), *labels) for a in apps]
        if namespace in self.namespaces or (app is not None and (namespace, app) in self.services):
            return []
        return [labels]


def service_of(name: str, namespace: str | None) -> tuple[str, str] | None:
    """(namespace, app) of a service name: an FQDN, `name.ns`, or a short name when `namespace` is known."""
    parsed = split_fqdn(name.lower())
    if parsed is not None:
        return parsed[1], parsed[0]
    parts = name.split(".")
    if len(parts) == 1 and namespace is not None and name and "*" not in name:
        return namespace, name
    if len(parts) in (2, 3) and (len(parts) == 2 or parts[2] == "svc") and "*" not in name:
        return parts[1], parts[0]
    return None


def pick_config(configs: list[Resource[Any]], notes: Notes) -> Resource[Any] | None:
    if not configs:
        return None
    # Pilot read the ClusterRbacConfig and fell back to the older RbacConfig only without one.
    ordered = sorted(configs, key=lambda r: (r.kind != "ClusterRbacConfig", r.name != "default"))
    chosen = ordered[0]
    for other in ordered[1:]:
        notes.lossy(other, f"only one RBAC config is used and {chosen.ref} takes precedence; this one is ignored")
    if chosen.name != "default":
        notes.note(chosen, "the RBAC config is a singleton named 'default'; translated anyway")
    return chosen


def translate_config(
    config: Resource[RbacConfigSpec], namespaces: set[str], notes: Notes
) -> tuple[Scope, list[Resource[Any]]]:
    spec = config.spec
    mode = spec.mode or RbacMode.OFF
    dry_run = spec.enforcement_mode is EnforcementMode.PERMISSIVE
    scope = Scope(mode, dry_run=dry_run)
    target = spec.inclusion if mode is RbacMode.ON_WITH_INCLUSION else spec.exclusion
    key = "inclusion" if mode is RbacMode.ON_WITH_INCLUSION else "exclusion"
    if mode in (RbacMode.ON_WITH_INCLUSION, RbacMode.ON_WITH_EXCLUSION) and target is not None:
        scope.namespaces = set(target.namespaces)
        for i, name in enumerate(target.services):
            service = service_of(name, None)
            if service is None:
                notes.lossy(
                    config,
                    f"'{name}' is not a service name like 'reviews.default.svc.cluster.local'; "
                    "Istio 1.5 matched it against no service; ignored",
                    join_path(f"spec/{key}/services", i),
                )
            else:
                scope.services.add(service)
    if mode is RbacMode.OFF:
        return scope, []
    policies: list[Resource[Any]] = []

    def allow_nothing(ns: str, app: str | None) -> None:
        if ns == ROOT_NAMESPACE and not app:
            notes.lossy(config, ROOT_WIDE.format(ns=ns), f"spec/{key}/namespaces")
            return
        name = "rbac-allow-nothing" + (f"-{app}" if app else "")
        labels: Labels = (("app", app),) if app else ()
        nothing = AuthorizationPolicySpec(selector=selector(labels))
        policies.append(derived("AuthorizationPolicy", name, ns, nothing, config, dry_run))

    if mode is RbacMode.ON_WITH_INCLUSION:
        for ns in sorted(scope.namespaces):
            allow_nothing(ns, None)
        for ns, app in sorted(scope.services):
            if ns not in scope.namespaces:
                allow_nothing(ns, app)
        return scope, policies
    covered = sorted(namespaces - scope.namespaces)
    for ns in covered:
        allow_nothing(ns, None)
    for ns, app in sorted(scope.services):  # ON_WITH_EXCLUSION: exempt services allow everything
        if ns not in scope.namespaces:
            everything = AuthorizationPolicySpec(
                selector=selector((("app", app),)), action=Action.ALLOW, rules=(Rule(),)
            )
            policies.append(derived("AuthorizationPolicy", f"rbac-allow-all-{app}", ns, everything, config, dry_run))
    notes.lossy(
        config,
        f"mode {mode.value} denies by default in every namespace, but an AuthorizationPolicy covers one namespace; "
        f"allow-nothing policies were made for the namespaces the loaded files name ({', '.join(covered)}): "
        "add `spec: {}` policies for any other namespace (the root namespace would also cover gateways, "
        "which v1alpha1 RBAC never did)",
        "spec/mode",
    )
    return scope, policies
