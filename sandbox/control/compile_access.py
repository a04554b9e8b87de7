"""A proxy's AccessPolicy: the RequestAuthentications and AuthorizationPolicies that select it. Pure.

What istiod's authn and authz builders give a sidecar's inbound listener (or a gateway's):
- every jwtRule of the selecting RequestAuthentications, with its JWKS inline. `jwksUri` is
  resolved by `jwks(uri)`, the control plane's cache of what it fetched (control/jwks.py); keys it
  has not (yet) got leave the provider without keys, so its tokens fail, as in istiod;
- the selecting AuthorizationPolicies in evaluation order, dry-run ones marked;
- the extension provider the CUSTOM policies name, resolved to one of this proxy's clusters.
  As in istiod, a CUSTOM policy whose provider cannot be used (unknown, not envoyExtAuthzHttp,
  its service unknown, or a second provider for one workload) turns into a DENY of everything
  named `deny-due-to-invalid-CUSTOM`: failing closed, never open.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from sandbox.mesh.authz import applicable, dry_run
from sandbox.mesh.extensions import ExtensionProvider
from sandbox.mesh.names import ClusterKey
from sandbox.mesh.resources import AuthorizationPolicySpec, RequestAuthenticationSpec, Resource
from sandbox.mesh.resources.security import Action, Rule
from sandbox.mesh.state import MeshState
from sandbox.mesh.topology import Workload
from sandbox.xds import access as xa

JwksResolver = Callable[[str], "str | None"]  # jwksUri -> the JWKS JSON fetched, None when not (yet)
INVALID_CUSTOM = "deny-due-to-invalid-CUSTOM"


def no_jwks(_uri: str) -> str | None:
    return None


def access_policy(
    mesh: MeshState, workload: Workload, clusters: Collection[str], jwks: JwksResolver = no_jwks
) -> xa.AccessPolicy:
    labels, namespace = workload.labels, workload.namespace
    authentications = applicable(mesh.request_authentications, labels, namespace, kind="RequestAuthentication")
    authorizations = applicable(mesh.authorization_policies, labels, namespace)
    jwt = tuple(p for ra in authentications for p in jwt_providers(ra, jwks))
    policies = [authz_policy(ap) for ap in authorizations]
    providers, problem = _providers(mesh, [ap for ap in authorizations if ap.spec.action is Action.CUSTOM], clusters)
    if problem:
        policies = [p for p in policies if p.action != "CUSTOM"]
        policies.append(xa.AuthzPolicy(name=INVALID_CUSTOM, namespace="", action="DENY", rules=(Rule(),)))
    policies.sort(key=lambda p: (xa.ACTION_ORDER.get(p.action, 9), p.namespace, p.name))
    return xa.AccessPolicy(jwt=jwt, policies=tuple(policies), providers=providers)


def jwt_providers(ra: Resource[RequestAuthenticationSpec], jwks: JwksResolver) -> list[xa.JwtProvider]:
    out = []
    for rule in ra.spec.jwt_rules:
        keys = rule.jwks or ""
        if not keys and rule.jwks_uri:
            keys = jwks(rule.jwks_uri) or ""
        out.append(
            xa.JwtProvider(
                issuer=rule.issuer,
                audiences=rule.audiences,
                jwks=keys,
                jwks_uri=rule.jwks_uri or "",
                from_headers=tuple(xa.JwtHeader(name=h.name, prefix=h.prefix or "") for h in rule.from_headers),
                from_params=rule.from_params,
                from_cookies=rule.from_cookies,
                forward_original_token=bool(rule.forward_original_token),
                output_payload_to_header=rule.output_payload_to_header or "",
                output_claim_to_headers=tuple(
                    xa.ClaimHeader(header=c.header, claim=c.claim) for c in rule.output_claim_to_headers
                ),
                source=ra.ref,
            )
        )
    return out


def authz_policy(ap: Resource[AuthorizationPolicySpec]) -> xa.AuthzPolicy:
    spec = ap.spec
    return xa.AuthzPolicy(
        name=ap.name,
        namespace=ap.namespace,
        action=(spec.action or Action.ALLOW).value,
        rules=spec.rules,
        provider=(spec.provider.name or "") if spec.provider else "",
        dry_run=dry_run(ap),
    )


def _providers(
    mesh: MeshState, custom: list[Resource[AuthorizationPolicySpec]], clusters: Collection[str]
) -> tuple[tuple[xa.ExtAuthzProvider, ...], str]:
    """The provider the CUSTOM policies use, or why it cannot be used."""
    if not custom:
        return (), ""
    names = sorted({(ap.spec.provider.name or "") if ap.spec.provider else "" for ap in custom})
    if len(names) > 1:
        return (), f"more than one CUSTOM provider for one workload: {', '.join(names)}"
    declared = {p.name: p for p in mesh.topology.settings.extension_providers}
    found = declared.get(names[0])
    if found is None:
        return (), f"extension provider {names[0]!r} is not declared in x-sandbox.extensionProviders"
    provider, problem = resolve_provider(mesh, found, custom[0].namespace)
    if provider is None:
        return (), problem
    if provider.cluster not in clusters:
        return (), f"extension provider {provider.name!r}: this proxy has no cluster {provider.cluster}"
    return (provider,), ""


def resolve_provider(
    mesh: MeshState, provider: ExtensionProvider, namespace: str
) -> tuple[xa.ExtAuthzProvider | None, str]:
    """An envoyExtAuthzHttp provider as the proxy calls it, or (None, why not)."""
    http = provider.envoy_ext_authz_http
    if http is None:
        return None, f"extension provider {provider.name!r} is not envoyExtAuthzHttp (the only kind the sidecars call)"
    port = http.port_number
    if port is None:
        return None, f"extension provider {provider.name!r}: port {http.port!r} is not a port"
    fqdn = http.service_fqdn(namespace, mesh.resolve)
    status = http.status_on_error
    status_code = xa.EXT_AUTHZ_STATUS_ON_ERROR
    if isinstance(status, int):
        status_code = status
    elif status is not None and status.strip().isdigit():
        status_code = int(status)
    return (
        xa.ExtAuthzProvider(
            name=provider.name,
            cluster=str(ClusterKey.outbound(fqdn, port)),
            authority=f"{fqdn}:{port}",
            path_prefix=http.path_prefix or "",
            timeout=http.timeout.seconds if http.timeout is not None else xa.EXT_AUTHZ_TIMEOUT,
            fail_open=bool(http.fail_open),
            status_on_error=status_code,
            include_request_headers_in_check=http.include_request_headers_in_check or http.include_headers_in_check,
            include_additional_headers_in_check=dict(http.include_additional_headers_in_check),
            headers_to_upstream_on_allow=http.headers_to_upstream_on_allow,
            headers_to_downstream_on_allow=http.headers_to_downstream_on_allow,
            headers_to_downstream_on_deny=http.headers_to_downstream_on_deny,
        ),
        "",
    )
