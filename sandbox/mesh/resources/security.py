"""security.istio.io PeerAuthentication, RequestAuthentication, AuthorizationPolicy (v1beta1, v1)."""

from __future__ import annotations

from dataclasses import field
from enum import StrEnum

from sandbox.mesh.resources.common import Duration, LabelSelector, PolicyTargetReference, model


class MTLSMode(StrEnum):
    UNSET = "UNSET"  # inherit from the parent (namespace, then mesh); PERMISSIVE at the top
    DISABLE = "DISABLE"
    PERMISSIVE = "PERMISSIVE"
    STRICT = "STRICT"


@model
class PeerMutualTLS:
    mode: MTLSMode | None = None


@model
class PeerAuthenticationSpec:
    selector: LabelSelector | None = None
    mtls: PeerMutualTLS | None = None
    port_level_mtls: dict[str, PeerMutualTLS] = field(default_factory=dict)


@model
class JWTHeader:
    name: str
    prefix: str | None = None


@model
class ClaimToHeader:
    header: str
    claim: str


@model
class JWTRule:
    issuer: str
    audiences: tuple[str, ...] = ()
    jwks_uri: str | None = None
    jwks: str | None = None
    from_headers: tuple[JWTHeader, ...] = ()
    from_params: tuple[str, ...] = ()
    from_cookies: tuple[str, ...] = ()
    output_payload_to_header: str | None = None
    forward_original_token: bool | None = None
    output_claim_to_headers: tuple[ClaimToHeader, ...] = ()
    timeout: Duration | None = None


@model
class RequestAuthenticationSpec:
    selector: LabelSelector | None = None
    target_ref: PolicyTargetReference | None = None
    target_refs: tuple[PolicyTargetReference, ...] = ()
    jwt_rules: tuple[JWTRule, ...] = ()


@model
class Source:
    principals: tuple[str, ...] = ()
    not_principals: tuple[str, ...] = ()
    request_principals: tuple[str, ...] = ()
    not_request_principals: tuple[str, ...] = ()
    namespaces: tuple[str, ...] = ()
    not_namespaces: tuple[str, ...] = ()
    service_accounts: tuple[str, ...] = ()
    not_service_accounts: tuple[str, ...] = ()
    ip_blocks: tuple[str, ...] = ()
    not_ip_blocks: tuple[str, ...] = ()
    remote_ip_blocks: tuple[str, ...] = ()
    not_remote_ip_blocks: tuple[str, ...] = ()


@model
class Operation:
    hosts: tuple[str, ...] = ()
    not_hosts: tuple[str, ...] = ()
    ports: tuple[str, ...] = ()
    not_ports: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()
    not_methods: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    not_paths: tuple[str, ...] = ()


@model
class RuleFrom:
    source: Source | None = None


@model
class RuleTo:
    operation: Operation | None = None


@model
class Condition:
    key: str
    values: tuple[str, ...] = ()
    not_values: tuple[str, ...] = ()


@model
class Rule:
    from_: tuple[RuleFrom, ...] = field(default=(), metadata={"yaml": "from"})
    to: tuple[RuleTo, ...] = ()
    when: tuple[Condition, ...] = ()


class Action(StrEnum):
    ALLOW = "ALLOW"
    DENY = "DENY"
    AUDIT = "AUDIT"
    CUSTOM = "CUSTOM"


@model
class ExtensionProvider:
    name: str | None = None


@model
class AuthorizationPolicySpec:
    selector: LabelSelector | None = None
    target_ref: PolicyTargetReference | None = None
    target_refs: tuple[PolicyTargetReference, ...] = ()
    rules: tuple[Rule, ...] = ()
    action: Action | None = None  # ALLOW when unset
    provider: ExtensionProvider | None = None
