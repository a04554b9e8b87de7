"""The removed v1alpha1 security APIs, as their last protos defined them (Istio 1.5).

rbac.istio.io/v1alpha1: istio/api `rbac/v1alpha1/rbac.proto` before "remove alpha RBAC API";
authentication.istio.io/v1alpha1: `authentication/v1alpha1/policy.proto` before its removal.
Fields the docs hid (`$hide_from_docs`) are included: old tutorials use them.
"""

from __future__ import annotations

from dataclasses import field
from enum import StrEnum

from sandbox.mesh.resources.common import model

# --- rbac.istio.io/v1alpha1 -------------------------------------------------------------


@model
class Constraint:
    key: str = ""
    values: tuple[str, ...] = ()


@model
class AccessRule:
    """One permission of a ServiceRole (or an inline `actions` entry of a binding)."""

    services: tuple[str, ...] = ()
    hosts: tuple[str, ...] = ()
    not_hosts: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    not_paths: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()
    not_methods: tuple[str, ...] = ()
    ports: tuple[int, ...] = ()
    not_ports: tuple[int, ...] = ()
    constraints: tuple[Constraint, ...] = ()


@model
class ServiceRoleSpec:
    rules: tuple[AccessRule, ...] = ()


class EnforcementMode(StrEnum):
    ENFORCED = "ENFORCED"
    PERMISSIVE = "PERMISSIVE"  # evaluated and logged, never enforced: a dry run


@model
class Subject:
    user: str | None = None
    names: tuple[str, ...] = ()
    not_names: tuple[str, ...] = ()
    group: str | None = None  # deprecated in favour of groups
    groups: tuple[str, ...] = ()
    not_groups: tuple[str, ...] = ()
    namespaces: tuple[str, ...] = ()
    not_namespaces: tuple[str, ...] = ()
    ips: tuple[str, ...] = ()
    not_ips: tuple[str, ...] = ()
    properties: dict[str, str] = field(default_factory=dict)


@model
class RoleRef:
    kind: str = "ServiceRole"
    name: str = ""


@model
class ServiceRoleBindingSpec:
    subjects: tuple[Subject, ...] = ()
    role_ref: RoleRef | None = None
    mode: EnforcementMode | None = None
    actions: tuple[AccessRule, ...] = ()  # an inline role
    role: str | None = None  # "name" (same namespace) or "/name" (root namespace)


class RbacMode(StrEnum):
    OFF = "OFF"
    ON = "ON"
    ON_WITH_INCLUSION = "ON_WITH_INCLUSION"
    ON_WITH_EXCLUSION = "ON_WITH_EXCLUSION"


@model
class RbacTarget:
    services: tuple[str, ...] = ()
    namespaces: tuple[str, ...] = ()


@model
class RbacConfigSpec:
    """ClusterRbacConfig (and the older RbacConfig, same spec)."""

    mode: RbacMode | None = None  # OFF when unset
    inclusion: RbacTarget | None = None
    exclusion: RbacTarget | None = None
    enforcement_mode: EnforcementMode | None = None


# --- authentication.istio.io/v1alpha1 ----------------------------------------------------


@model
class AuthnStringMatch:
    exact: str | None = None
    prefix: str | None = None
    suffix: str | None = None
    regex: str | None = None


@model
class TriggerRule:
    excluded_paths: tuple[AuthnStringMatch, ...] = ()
    included_paths: tuple[AuthnStringMatch, ...] = ()


@model
class Jwt:
    issuer: str = ""
    audiences: tuple[str, ...] = ()
    jwks_uri: str | None = None
    jwks: str | None = None
    jwt_headers: tuple[str, ...] = ()
    jwt_params: tuple[str, ...] = ()
    trigger_rules: tuple[TriggerRule, ...] = ()


class MutualTlsMode(StrEnum):
    STRICT = "STRICT"  # the proto's zero value: `mtls: {}` and a bare `mtls:` mean STRICT
    PERMISSIVE = "PERMISSIVE"


@model
class MutualTls:
    allow_tls: bool | None = None  # deprecated: true meant PERMISSIVE
    mode: MutualTlsMode | None = None


@model
class PeerAuthenticationMethod:
    mtls: MutualTls | None = None
    jwt: Jwt | None = None  # deprecated, never implemented


@model
class OriginAuthenticationMethod:
    jwt: Jwt | None = None


@model
class AuthnPortSelector:
    number: int | None = None
    name: str | None = None


@model
class TargetSelector:
    name: str = ""
    ports: tuple[AuthnPortSelector, ...] = ()


class PrincipalBinding(StrEnum):
    USE_PEER = "USE_PEER"
    USE_ORIGIN = "USE_ORIGIN"


@model
class PolicySpec:
    """Policy (namespaced) and MeshPolicy (cluster-scoped, named `default`)."""

    targets: tuple[TargetSelector, ...] = ()
    peers: tuple[PeerAuthenticationMethod, ...] = ()
    peer_is_optional: bool = False
    origins: tuple[OriginAuthenticationMethod, ...] = ()
    origin_is_optional: bool = False
    principal_binding: PrincipalBinding | None = None
