"""Legacy rbac.istio.io and authentication.istio.io v1alpha1 APIs (placeholder, see issue 2)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sandbox.mesh.diagnostics import Diagnostic
from sandbox.mesh.resources import Resource


def translate(resources: Sequence[Resource[Any]]) -> tuple[list[Resource[Any]], list[Diagnostic]]:
    """Modern equivalents of legacy resources, and a deprecation diagnostic for each."""
    return [], []
