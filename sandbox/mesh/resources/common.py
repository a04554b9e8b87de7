"""Types shared by several Istio APIs, and the `model` decorator every resource type uses."""

from __future__ import annotations

import dataclasses
import typing
from typing import TypeVar, dataclass_transform

from sandbox.mesh.schema import Duration

__all__ = ["Duration", "Percent", "PortSelector", "StringMatch", "WorkloadSelector", "model"]

_C = TypeVar("_C", bound=type)


@dataclass_transform(frozen_default=True, kw_only_default=True, field_specifiers=(dataclasses.field,))
def model(cls: _C) -> _C:
    """A frozen, keyword-only dataclass: the shape of every Istio message here."""
    return typing.cast(_C, dataclasses.dataclass(frozen=True, kw_only=True)(cls))


@model
class StringMatch:
    """Istio's oneof exact | prefix | regex; the analyzer checks that exactly one is set."""

    exact: str | None = None
    prefix: str | None = None
    regex: str | None = None

    @property
    def kind(self) -> str | None:
        for name in ("exact", "prefix", "regex"):
            if getattr(self, name) is not None:
                return name
        return None


@model
class PortSelector:
    number: int | None = None


@model
class Percent:
    value: float = 0.0


@model
class WorkloadSelector:
    """networking's `workloadSelector: {labels: ...}`."""

    labels: dict[str, str] = dataclasses.field(default_factory=dict)


@model
class LabelSelector:
    """security's `selector: {matchLabels: ...}`."""

    match_labels: dict[str, str] = dataclasses.field(default_factory=dict)


@model
class PolicyTargetReference:
    group: str | None = None
    kind: str | None = None
    name: str | None = None
    namespace: str | None = None
