"""The removed v1alpha1 security APIs: loaded, translated to their modern equivalents, reported.

Importing this package registers the legacy kinds with the resource registry; the loader then
calls `translate` with every legacy resource it loaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sandbox.mesh.diagnostics import Diagnostic, Severity
from sandbox.mesh.legacy.authn import translate_policy
from sandbox.mesh.legacy.common import Notes, document
from sandbox.mesh.legacy.rbac import translate_rbac
from sandbox.mesh.legacy.specs import PolicySpec, RbacConfigSpec, ServiceRoleBindingSpec, ServiceRoleSpec
from sandbox.mesh.resources import KindInfo, Resource, register
from sandbox.mesh.yamlsrc import dump_all_yaml

RBAC = "rbac.istio.io"
AUTHN = "authentication.istio.io"
DEPRECATED = "SBX201"

for _info in (
    KindInfo("ServiceRole", RBAC, ("v1alpha1",), ServiceRoleSpec, (), "serviceroles", legacy=True),
    KindInfo("ServiceRoleBinding", RBAC, ("v1alpha1",), ServiceRoleBindingSpec, (), "servicerolebindings", legacy=True),
    KindInfo("ClusterRbacConfig", RBAC, ("v1alpha1",), RbacConfigSpec, (), "clusterrbacconfigs", True, True),
    KindInfo("RbacConfig", RBAC, ("v1alpha1",), RbacConfigSpec, (), "rbacconfigs", legacy=True),
    KindInfo("MeshPolicy", AUTHN, ("v1alpha1",), PolicySpec, (), "meshpolicies", True, True),
    KindInfo("Policy", AUTHN, ("v1alpha1",), PolicySpec, (), "policies", legacy=True),
):
    register(_info)

# What each kind became when nothing more specific was produced.
_REPLACEMENT = {"MeshPolicy": "PeerAuthentication", "Policy": "PeerAuthentication"}


def translate(resources: Sequence[Resource[Any]]) -> tuple[list[Resource[Any]], list[Diagnostic]]:
    """Modern equivalents of legacy resources, and a deprecation diagnostic (SBX201) for each,
    followed by what could not be translated faithfully (SBX202) and notes (SBX203)."""
    notes = Notes()
    by_source = translate_rbac(resources, notes)
    for resource in resources:
        if resource.kind in ("Policy", "MeshPolicy"):
            by_source[resource.key] = translate_policy(resource, notes)
    translated: list[Resource[Any]] = []
    seen: set[tuple[str, str, str]] = set()
    diagnostics = []
    for resource in resources:
        produced = by_source.get(resource.key, [])
        diagnostics.append(deprecation(resource, produced))
        if resource.kind == "ServiceRole":
            continue  # its policies belong to the bindings that use it
        for modern in produced:
            if modern.key in seen:
                notes.lossy(
                    resource, f"its translation {modern.ref} has the name of another translated resource; left out"
                )
                continue
            seen.add(modern.key)
            translated.append(modern)
    unique_notes = list(dict.fromkeys(notes.items))
    return translated, [*diagnostics, *unique_notes]


def deprecation(resource: Resource[Any], produced: list[Resource[Any]]) -> Diagnostic:
    kinds = list(dict.fromkeys(r.kind for r in produced)) or [_REPLACEMENT.get(resource.kind, "AuthorizationPolicy")]
    api = produced[0].api_version if produced else "security.istio.io/v1"
    use = f"{api} " + (", ".join(kinds[:-1]) + " and " + kinds[-1] if len(kinds) > 1 else kinds[0])
    line, col = resource.origin.position("apiVersion")
    message = (
        f"{resource.api_version} {resource.kind} was removed in Istio 1.6; use {use} "
        f"(run 'sandbox convert {resource.origin.file}')"
    )
    detail = dump_all_yaml([document(r) for r in produced]) if produced else ""
    return Diagnostic(
        DEPRECATED, Severity.WARNING, message, resource.origin.file, line, col, "apiVersion", resource.ref, detail
    )
