"""The Telemetry resources that apply to one proxy, merged into its TelemetryPolicy. Pure.

Istio's precedence: the root namespace's selector-less Telemetry applies to the whole mesh, a
namespace's selector-less one overrides it there, and one whose selector picks the workload
overrides both; each level overrides only the fields it sets (custom tags by name). Access
logging and tracing entries apply to the side their `match.mode` names (both by default).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sandbox.mesh.names import labels_match
from sandbox.mesh.resources import Resource, TelemetrySpec
from sandbox.mesh.resources.telemetry import CustomTag, TelemetryMatch, WorkloadMode
from sandbox.mesh.state import MeshState
from sandbox.mesh.topology import Workload
from sandbox.xds import snapshot as snap

ROOT_NAMESPACE = "istio-system"


def telemetry_policy(mesh: MeshState, workload: Workload) -> snap.TelemetryPolicy:
    fields: dict[str, Any] = {}
    tags: dict[str, snap.SpanTag] = {}
    for level in _levels(mesh.telemetries, workload):
        spec = level.spec
        for logging in spec.access_logging:
            if logging.disabled is not None:
                client, server = _sides(logging.match)
                if client:
                    fields["access_log_client"] = not logging.disabled
                if server:
                    fields["access_log_server"] = not logging.disabled
        for tracing in spec.tracing:
            if tracing.random_sampling_percentage is not None:
                fields["sampling"] = max(0.0, min(100.0, tracing.random_sampling_percentage))
            if tracing.disable_span_reporting is not None:
                fields["span_reporting"] = not tracing.disable_span_reporting
            for name, tag in tracing.custom_tags.items():
                tags[name] = _tag(name, tag)
    return snap.TelemetryPolicy(custom_tags=tuple(tags[n] for n in sorted(tags)), **fields)


def _levels(resources: Iterable[Resource[TelemetrySpec]], workload: Workload) -> list[Resource[TelemetrySpec]]:
    """Mesh, then namespace, then workload level, each in file order."""
    mesh, namespace, selected = [], [], []
    for r in resources:
        selector = r.spec.selector.match_labels if r.spec.selector is not None else {}
        if r.namespace == workload.namespace and selector:
            if labels_match(selector, workload.labels):
                selected.append(r)
        elif r.namespace == workload.namespace and workload.namespace != ROOT_NAMESPACE:
            namespace.append(r)
        elif r.namespace == ROOT_NAMESPACE and not selector:
            mesh.append(r)
    return mesh + namespace + selected


def _sides(match: TelemetryMatch | None) -> tuple[bool, bool]:
    mode = match.mode if match is not None else WorkloadMode.CLIENT_AND_SERVER
    return mode is not WorkloadMode.SERVER, mode is not WorkloadMode.CLIENT


def _tag(name: str, tag: CustomTag) -> snap.SpanTag:
    if tag.literal is not None:
        return snap.SpanTag(name=name, literal=tag.literal.value)
    if tag.environment is not None:
        env = tag.environment
        return snap.SpanTag(name=name, environment=env.name, default=env.default_value or "")
    if tag.header is not None:
        return snap.SpanTag(name=name, header=tag.header.name.lower(), default=tag.header.default_value or "")
    return snap.SpanTag(name=name, literal="")
