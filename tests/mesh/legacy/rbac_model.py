"""A direct model of v1alpha1 RBAC (Istio 1.5) for the equivalence tests: no translation involved.

Semantics from rbac.proto and the "constraints and properties" page: RBAC applies where the
ClusterRbacConfig turns it on; there a request is allowed when a binding in the service's
namespace has a matching subject and its role has a matching rule. `*` matches any value, even
an absent one (v1alpha1), and values support `prefix*` and `*suffix`.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from sandbox.mesh.legacy.specs import AccessRule, EnforcementMode, RbacMode, Subject
from sandbox.mesh.resources import Resource
from sandbox.proxy.authz import AuthzRequest


@dataclass
class Call:
    service: str
    namespace: str = "default"
    version: str = "v1"
    method: str = "GET"
    path: str = "/"
    principal: str = ""  # source.principal; "" for plaintext
    headers: dict[str, str] = field(default_factory=dict)
    request_principal: str = ""
    claims: dict[str, Any] = field(default_factory=dict)
    port: int = 9080
    source_ip: str = "10.0.0.1"

    @property
    def fqdn(self) -> str:
        return f"{self.service}.{self.namespace}.svc.cluster.local"

    @property
    def labels(self) -> dict[str, str]:
        return {"app": self.service, "version": self.version}

    def attributes(self) -> AuthzRequest:
        """The request as the data path's RBAC engine reads it."""
        r = AuthzRequest(
            self.method,
            self.path,
            f"{self.fqdn}:{self.port}",
            self.headers,
            self.port,
            self.principal,
            self.source_ip,
            "",
            "",
            "",
        )
        r.request_principal = self.request_principal
        r.claims = self.claims
        return r


def match(pattern: str, value: str) -> bool:
    if pattern == "*":
        return True
    if pattern.endswith("*"):
        return value.startswith(pattern[:-1])
    if pattern.startswith("*"):
        return value.endswith(pattern[1:])
    return pattern == value


def any_match(patterns: tuple[str, ...], value: str) -> bool:
    return any(match(p, value) for p in patterns)


def legacy_allows(resources: list[Resource[Any]], call: Call) -> bool:
    configs = sorted(
        (r for r in resources if r.kind in ("ClusterRbacConfig", "RbacConfig")),
        key=lambda r: r.kind != "ClusterRbacConfig",
    )
    if not configs or not _enforced(configs[0], call):
        return True
    roles = {(r.namespace, r.name): r for r in resources if r.kind == "ServiceRole"}
    for binding in (r for r in resources if r.kind == "ServiceRoleBinding" and r.namespace == call.namespace):
        spec = binding.spec
        if spec.mode is EnforcementMode.PERMISSIVE:
            continue  # evaluated in the shadow only
        role = roles.get((binding.namespace, spec.role_ref.name if spec.role_ref else ""))
        rules = spec.actions or (role.spec.rules if role else ())
        if any(_subject(s, call) for s in spec.subjects) and any(_rule(r, call) for r in rules):
            return True
    return False


def _enforced(config: Resource[Any], call: Call) -> bool:
    spec = config.spec
    if spec.enforcement_mode is EnforcementMode.PERMISSIVE:
        return False
    mode = spec.mode or RbacMode.OFF
    if mode is RbacMode.ON:
        return True
    if mode is RbacMode.OFF:
        return False
    target = spec.inclusion if mode is RbacMode.ON_WITH_INCLUSION else spec.exclusion
    listed = target is not None and (call.namespace in target.namespaces or call.fqdn in target.services)
    return listed if mode is RbacMode.ON_WITH_INCLUSION else not listed


def _subject(s: Subject, call: Call) -> bool:
    namespace = call.principal.split("/ns/")[1].split("/")[0] if "/ns/" in call.principal else ""
    checks = [
        s.user is None or match(s.user, call.principal),
        not s.names or any_match(s.names, call.principal),
        not any_match(s.not_names, call.principal),
        not s.namespaces or any_match(s.namespaces, namespace),
        not any_match(s.not_namespaces, namespace),
        not s.groups or any(any_match(s.groups, g) for g in call.claims.get("groups", [])),
        not s.ips or any(_in(ip, call.source_ip) for ip in s.ips),
    ]
    for key, value in s.properties.items():
        checks.append(match(value, _property(key, call, namespace)))
    return all(checks)


def _property(key: str, call: Call, namespace: str) -> str:
    if key == "source.principal":
        return call.principal
    if key == "source.namespace":
        return namespace
    if key == "source.ip":
        return call.source_ip
    if key == "request.auth.principal":
        return call.request_principal
    if key.startswith("request.headers["):
        return call.headers.get(key[len("request.headers[") : -1].lower(), "")
    if key.startswith("request.auth.claims["):
        return str(call.claims.get(key[len("request.auth.claims[") : -1], ""))
    raise AssertionError(f"the model does not know property {key}")


def _rule(r: AccessRule, call: Call) -> bool:
    checks = [
        any_match(r.services, call.fqdn),
        not r.paths or any_match(r.paths, call.path),
        not any_match(r.not_paths, call.path),
        not r.methods or any_match(r.methods, call.method),
        not any_match(r.not_methods, call.method),
        not r.ports or call.port in r.ports,
    ]
    for c in r.constraints:
        if c.key.startswith("destination.labels["):
            value = call.labels.get(c.key[len("destination.labels[") : -1], "")
        elif c.key.startswith("request.headers["):
            value = call.headers.get(c.key[len("request.headers[") : -1].lower(), "")
        elif c.key == "destination.port":
            value = str(call.port)
        else:
            raise AssertionError(f"the model does not know constraint {c.key}")
        checks.append(any_match(c.values, value))
    return all(checks)


def _in(block: str, ip: str) -> bool:
    return ipaddress.ip_address(ip) in ipaddress.ip_network(block, strict=False)
