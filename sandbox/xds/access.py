"""The snapshot's security part for one proxy: who the end user is and what may reach it.

What istiod compiles into a sidecar's (or gateway's) inbound HTTP filters, resolved here so the
proxy never has to look anything up (docs/reference/istio-semantics.md §2.3-§2.4):
- `jwt`: every jwtRule of the RequestAuthentications that select the proxy (Envoy's jwt_authn
  providers), each with its JWKS inline: the control plane fetches `jwksUri` itself, as istiod does;
- `policies`: the AuthorizationPolicies that select it, in evaluation order (CUSTOM, DENY, ALLOW,
  AUDIT; by namespace and name within an action), their rules as written;
- `providers`: the meshConfig extension providers (`x-sandbox.extensionProviders`) its CUSTOM
  policies name, each resolved to the cluster that reaches it.
An empty AccessPolicy (the default, left out of the snapshot's JSON) means no filter runs at all.
"""

from __future__ import annotations

from dataclasses import field

from sandbox.mesh.resources.common import model
from sandbox.mesh.resources.security import Rule

# Istio's defaults (envoyExtAuthzHttp, security/v1beta1 RequestAuthentication)
EXT_AUTHZ_TIMEOUT = 600.0  # seconds: "default timeout: 600s"
EXT_AUTHZ_STATUS_ON_ERROR = 403


@model
class JwtHeader:
    """A header the token may come in; `prefix` is stripped from its value (`Bearer `)."""

    name: str
    prefix: str = ""


@model
class ClaimHeader:
    """outputClaimToHeaders: the value of `claim` (a string, number or bool) goes in `header`."""

    header: str
    claim: str


@model
class JwtProvider:
    """One jwtRule. With no fromHeaders, fromParams or fromCookies the token is looked for where
    Envoy looks by default: `Authorization: Bearer <token>`, then the `access_token` parameter."""

    issuer: str
    audiences: tuple[str, ...] = ()  # empty: not checked (Envoy)
    jwks: str = ""  # the JSON Web Key Set; "" when jwksUri could not be fetched (tokens then fail)
    jwks_uri: str = ""  # where the keys came from, for people (proxy-config, logs)
    from_headers: tuple[JwtHeader, ...] = ()
    from_params: tuple[str, ...] = ()
    from_cookies: tuple[str, ...] = ()
    forward_original_token: bool = False  # Istio's default: the token is removed once verified
    output_payload_to_header: str = ""
    output_claim_to_headers: tuple[ClaimHeader, ...] = ()
    source: str = ""  # "RequestAuthentication/<ns>/<name>"


@model
class ExtAuthzProvider:
    """meshConfig's envoyExtAuthzHttp, with its service resolved to a cluster of this proxy.
    Header lists take Istio's string match forms (exact, `prefix*`, `*suffix`)."""

    name: str
    cluster: str  # outbound|8000||ext-authz.foo.svc.cluster.local
    authority: str  # the check request's Host: ext-authz.foo.svc.cluster.local:8000
    path_prefix: str = ""
    timeout: float = EXT_AUTHZ_TIMEOUT
    fail_open: bool = False
    status_on_error: int = EXT_AUTHZ_STATUS_ON_ERROR
    include_request_headers_in_check: tuple[str, ...] = ()
    include_additional_headers_in_check: dict[str, str] = field(default_factory=dict)
    headers_to_upstream_on_allow: tuple[str, ...] = ()
    headers_to_downstream_on_allow: tuple[str, ...] = ()
    headers_to_downstream_on_deny: tuple[str, ...] = ()


@model
class AuthzPolicy:
    """One AuthorizationPolicy as the proxy evaluates it. `namespace` "" names a policy the
    control plane made itself (Istio's `deny-due-to-invalid-CUSTOM`)."""

    name: str
    namespace: str
    action: str = "ALLOW"  # ALLOW, DENY, AUDIT or CUSTOM
    rules: tuple[Rule, ...] = ()
    provider: str = ""  # CUSTOM: the extension provider's name
    dry_run: bool = False  # istio.io/dry-run: evaluated and logged, never enforced

    @property
    def ref(self) -> str:
        return f"AuthorizationPolicy/{self.namespace}/{self.name}" if self.namespace else self.name


@model
class AccessPolicy:
    jwt: tuple[JwtProvider, ...] = ()
    policies: tuple[AuthzPolicy, ...] = ()
    providers: tuple[ExtAuthzProvider, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.jwt or self.policies)


ACTION_ORDER = {"CUSTOM": 0, "DENY": 1, "ALLOW": 2, "AUDIT": 3}
