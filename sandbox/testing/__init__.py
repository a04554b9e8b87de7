"""A service mesh in your tests: the pytest plugin (`mesh` and `mesh_factory` fixtures, loaded
through the `pytest11` entry point) and the objects it hands out.

- lifecycle.py: start and stop test meshes (private working copies; nothing outlives the session)
- mesh.py: `Mesh`, the running mesh as a Python object (apply, request, logs, metrics...)
- changes.py, rules.py: `mesh.fault(...)` and `mesh.route(...)`, and the Istio rules behind them
- http.py: `Response`, and sending from the host or from inside a workload
- report.py: what a failing test's report shows of the mesh
- plugin.py: the pytest hooks and fixtures

    from sandbox.testing import Launcher, MeshConfig   # without pytest
"""

from __future__ import annotations

from typing import Any

__all__ = ["Launcher", "Mesh", "MeshConfig", "MeshError", "ProxyStatus", "Response", "Sample"]
_HOMES = {
    "Launcher": "lifecycle",
    "MeshConfig": "lifecycle",
    "Mesh": "mesh",
    "MeshError": "errors",
    "ProxyStatus": "mesh",
    "Sample": "mesh",
    "Response": "http",
}


def __getattr__(name: str) -> Any:
    """Imported on first use: pytest imports this package for the plugin in every session, and a
    session without the fixtures must not pay for the mesh's code (PEP 562)."""
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
