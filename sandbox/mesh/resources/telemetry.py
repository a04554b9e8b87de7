"""telemetry.istio.io Telemetry (v1, v1alpha1) and networking.istio.io EnvoyFilter (v1alpha3).

Telemetry's access logging (`disabled`), tracing sampling (`randomSamplingPercentage`) and custom
tags are enforced by the sidecars; what is not (metric overrides, providers, filters) is reported
by the analyzer. An EnvoyFilter is accepted and never applied: there is no Envoy to patch.
"""

from __future__ import annotations

from dataclasses import field
from enum import StrEnum
from typing import Any

from sandbox.mesh.resources.common import LabelSelector, PolicyTargetReference, WorkloadSelector, model


class WorkloadMode(StrEnum):
    CLIENT = "CLIENT"
    SERVER = "SERVER"
    CLIENT_AND_SERVER = "CLIENT_AND_SERVER"


@model
class ProviderRef:
    name: str = ""


@model
class TelemetryMatch:
    mode: WorkloadMode = WorkloadMode.CLIENT_AND_SERVER


@model
class LiteralTag:
    value: str = ""


@model
class EnvironmentTag:
    name: str = ""
    default_value: str | None = None


@model
class HeaderTag:
    name: str = ""
    default_value: str | None = None


@model
class CustomTag:
    literal: LiteralTag | None = None
    environment: EnvironmentTag | None = None
    header: HeaderTag | None = None


@model
class Tracing:
    match: TelemetryMatch | None = None
    providers: tuple[ProviderRef, ...] = ()
    random_sampling_percentage: float | None = None
    disable_span_reporting: bool | None = None
    custom_tags: dict[str, CustomTag] = field(default_factory=dict)
    enable_istio_tags: bool | None = None


@model
class AccessLogFilter:
    expression: str = ""


@model
class AccessLogging:
    match: TelemetryMatch | None = None
    providers: tuple[ProviderRef, ...] = ()
    disabled: bool | None = None
    filter: AccessLogFilter | None = None


@model
class Metrics:
    providers: tuple[ProviderRef, ...] = ()
    overrides: tuple[Any, ...] = ()
    reporting_interval: str | None = None


@model
class TelemetrySpec:
    selector: LabelSelector | None = None
    target_ref: PolicyTargetReference | None = None
    target_refs: tuple[PolicyTargetReference, ...] = ()
    tracing: tuple[Tracing, ...] = ()
    metrics: tuple[Metrics, ...] = ()
    access_logging: tuple[AccessLogging, ...] = ()


@model
class EnvoyFilterSpec:
    workload_selector: WorkloadSelector | None = None
    target_refs: tuple[PolicyTargetReference, ...] = ()
    config_patches: tuple[Any, ...] = ()
    priority: int = 0
