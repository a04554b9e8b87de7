"""authentication.istio.io/v1alpha1 MeshPolicy / Policy -> PeerAuthentication, RequestAuthentication
and, when a JWT is required, a DENY AuthorizationPolicy (`notRequestPrincipals: ["*"]`).

Follows the migration blog (istio.io/latest/blog/2021/migrate-alpha-policy/) and the
istio-ecosystem/security-policy-migrate tool: STRICT stays STRICT, every other case becomes
PERMISSIVE; each trigger rule becomes one DENY rule with `paths`/`notPaths`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sandbox.mesh.diagnostics import join_path
from sandbox.mesh.legacy.common import ROOT_NAMESPACE, ROOT_WIDE, Notes, derived, selector
from sandbox.mesh.legacy.specs import AuthnStringMatch, MutualTlsMode, PolicySpec, PrincipalBinding
from sandbox.mesh.resources import Resource
from sandbox.mesh.resources.security import (
    Action,
    AuthorizationPolicySpec,
    JWTHeader,
    JWTRule,
    MTLSMode,
    Operation,
    PeerAuthenticationSpec,
    PeerMutualTLS,
    RequestAuthenticationSpec,
    Rule,
    RuleFrom,
    RuleTo,
    Source,
)

_Scope = tuple[str, str, tuple[tuple[str, str], ...], tuple[str, ...]]  # name, namespace, selector, ports


def translate_policy(policy: Resource[PolicySpec], notes: Notes) -> list[Resource[Any]]:
    scopes = _scopes(policy, notes)
    if not scopes:
        return []
    spec = policy.spec
    mode = _peer_mode(policy, notes)
    if spec.principal_binding is PrincipalBinding.USE_ORIGIN:
        notes.lossy(
            policy,
            "principalBinding: USE_ORIGIN has no equivalent: the request principal now always comes from the JWT "
            "(requestPrincipals, request.auth.principal) and the source principal from the peer certificate",
            "spec/principalBinding",
        )
    jwt_rules = _jwt_rules(policy, notes)
    deny_rules = _required_jwt_rules(policy, notes) if jwt_rules and not spec.origin_is_optional else []
    if jwt_rules and spec.origin_is_optional:
        notes.lossy(
            policy,
            "originIsOptional accepted requests whose token failed validation; RequestAuthentication rejects an "
            "invalid token with 401 (a request without a token is still accepted)",
            "spec/originIsOptional",
        )
    if deny_rules:
        notes.lossy(
            policy,
            "a request without a token is now denied by the AuthorizationPolicy with 403 'RBAC: access denied', "
            "not 401 'Origin authentication failed'; an invalid token is rejected with 401 on every path; and the "
            "DENY rule, whose HTTP fields do not apply to plain TCP, denies TCP connections to the ports it covers",
            "spec/origins",
        )
    out: list[Resource[Any]] = []
    for name, ns, labels, ports in scopes:
        mtls = PeerMutualTLS(mode=mode)
        peer = (
            PeerAuthenticationSpec(selector=selector(labels), port_level_mtls={p: mtls for p in ports})
            if ports
            else PeerAuthenticationSpec(selector=selector(labels), mtls=mtls)
        )
        out.append(derived("PeerAuthentication", name, ns, peer, policy))
        if jwt_rules:
            request = RequestAuthenticationSpec(selector=selector(labels), jwt_rules=tuple(jwt_rules))
            out.append(derived("RequestAuthentication", name, ns, request, policy))
        if deny_rules:
            rules = tuple(_with_ports(r, ports) for r in deny_rules)
            authz = AuthorizationPolicySpec(selector=selector(labels), action=Action.DENY, rules=rules)
            out.append(derived("AuthorizationPolicy", f"{name}-jwt", ns, authz, policy))
    return out


def _scopes(policy: Resource[PolicySpec], notes: Notes) -> list[_Scope]:
    spec = policy.spec
    if policy.kind == "MeshPolicy":
        if policy.name != "default" or spec.targets:
            why = "must be named 'default'" if policy.name != "default" else "cannot have targets"
            notes.lossy(policy, f"a MeshPolicy {why}: Istio rejected this one; nothing translated", "metadata/name")
            return []
        return [(policy.name, ROOT_NAMESPACE, (), ())]
    if not spec.targets:
        if policy.name != "default":
            notes.lossy(
                policy,
                "a Policy without targets must be named 'default': Istio rejected this one; nothing translated",
                "metadata/name",
            )
            return []
        if policy.namespace == ROOT_NAMESPACE:
            notes.lossy(policy, ROOT_WIDE.format(ns=policy.namespace), "metadata/namespace")
            return []
        return [(policy.name, policy.namespace, (), ())]
    scopes: list[_Scope] = []
    seen: set[str] = set()
    for i, target in enumerate(spec.targets):
        path = join_path("spec/targets", i)
        if target.name in seen or not target.name:
            notes.lossy(policy, f"duplicate or empty target '{target.name}'; ignored", path)
            continue
        seen.add(target.name)
        ports: list[str] = []
        for j, port in enumerate(target.ports):
            if port.number is None:
                notes.lossy(
                    policy,
                    f"port '{port.name}' is named: PeerAuthentication needs the workload port number; "
                    "this port is left out",
                    join_path(f"{path}/ports", j),
                )
            else:
                ports.append(str(port.number))
        if target.ports and not ports:
            continue
        if ports:
            notes.note(
                policy,
                "target ports are Service ports; portLevelMtls and operation ports are workload (container) ports. "
                "They are the same in the sandbox; on a cluster, use the Service's targetPort",
                path,
            )
        name = policy.name if len(spec.targets) == 1 else f"{policy.name}-{target.name}"
        scopes.append((name, policy.namespace, (("app", target.name),), tuple(ports)))
    return scopes


def _peer_mode(policy: Resource[PolicySpec], notes: Notes) -> MTLSMode:
    spec = policy.spec
    mode = MTLSMode.PERMISSIVE  # no peer method: plaintext accepted (the migration tool's choice over DISABLE)
    for i, peer in enumerate(spec.peers):
        path = join_path("spec/peers", i)
        if peer.mtls is not None:
            lenient = peer.mtls.mode is MutualTlsMode.PERMISSIVE or bool(peer.mtls.allow_tls)
            mode = MTLSMode.PERMISSIVE if lenient else MTLSMode.STRICT
            break
        if f"{path}/mtls" in policy.origin.positions:  # a bare `mtls:` (null) is STRICT too
            mode = MTLSMode.STRICT
            break
        if peer.jwt is not None:
            notes.lossy(policy, "JWT as a peer method was never supported; ignored", f"{path}/jwt")
    if mode is MTLSMode.STRICT and spec.peer_is_optional:
        notes.note(policy, "peerIsOptional accepted requests without a client certificate: PERMISSIVE", "spec")
        mode = MTLSMode.PERMISSIVE
    return mode


def _jwt_rules(policy: Resource[PolicySpec], notes: Notes) -> list[JWTRule]:
    rules = []
    for origin in policy.spec.origins:
        jwt = origin.jwt
        if jwt is None:
            continue
        rules.append(
            JWTRule(
                issuer=jwt.issuer,
                audiences=jwt.audiences,
                jwks_uri=jwt.jwks_uri,
                jwks=jwt.jwks,
                from_headers=tuple(JWTHeader(name=h) for h in jwt.jwt_headers),
                from_params=jwt.jwt_params,
            )
        )
    return rules


def _required_jwt_rules(policy: Resource[PolicySpec], notes: Notes) -> list[Rule]:
    """DENY rules for requests without a token where an origin's trigger rules ask for one.
    An origin validates a path when any of its trigger rules (or no trigger rule) selects it."""
    rules: list[Rule] = []
    origins = [o.jwt for o in policy.spec.origins if o.jwt is not None]
    for i, jwt in enumerate(origins):
        if not jwt.trigger_rules:
            rules.append(_deny_rule((), ()))
        for j, trigger in enumerate(jwt.trigger_rules):
            path = f"spec/origins[{i}]/jwt/triggerRules[{j}]"
            included = _paths(policy, trigger.included_paths, f"{path}/includedPaths", notes)
            excluded = _paths(policy, trigger.excluded_paths, f"{path}/excludedPaths", notes)
            rules.append(_deny_rule(included, excluded))
    if len({(o.issuer, o.trigger_rules) for o in origins}) > 1 and any(o.trigger_rules for o in origins):
        notes.lossy(
            policy,
            "several issuers with their own trigger rules: any valid token is now accepted on every triggered path, "
            "whichever issuer's rule selected it",
            "spec/origins",
        )
    unique: list[Rule] = []
    for rule in rules:
        if rule not in unique:
            unique.append(rule)
    if any(not r.to for r in unique):
        return [_deny_rule((), ())]  # one origin needs a token everywhere: that covers the rest
    return unique


def _paths(policy: Resource[Any], matches: tuple[AuthnStringMatch, ...], path: str, notes: Notes) -> tuple[str, ...]:
    out = []
    for match in matches:
        if match.exact is not None:
            out.append(match.exact)
        elif match.prefix is not None:
            out.append(match.prefix + "*")
        elif match.suffix is not None:
            out.append("*" + match.suffix)
        else:
            notes.lossy(
                policy,
                f"regex paths ('{match.regex}') are not supported by AuthorizationPolicy; this path list is left "
                "out, so the token is required on more paths",
                path,
            )
            return ()
    return tuple(out)


def _deny_rule(paths: tuple[str, ...], not_paths: tuple[str, ...]) -> Rule:
    to = (RuleTo(operation=Operation(paths=paths, not_paths=not_paths)),) if paths or not_paths else ()
    return Rule(from_=(RuleFrom(source=Source(not_request_principals=("*",))),), to=to)


def _with_ports(rule: Rule, ports: tuple[str, ...]) -> Rule:
    if not ports:
        return rule
    operation = rule.to[0].operation if rule.to and rule.to[0].operation else Operation()
    return Rule(from_=rule.from_, to=(RuleTo(operation=replace(operation, ports=ports)),))
