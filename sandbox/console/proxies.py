"""A sidecar's configuration as `sandbox proxy-config` prints it, for the console's proxy page:
istioctl-style tables from the live admin port's /config_dump (or /certs for secrets). Pure."""

from __future__ import annotations

import time
from typing import Any

from sandbox.control.proxyconfig import SECTIONS, render
from sandbox.operator.views import secrets_table
from sandbox.xds.snapshot import ProxySnapshot

RESOURCES = (*SECTIONS, "secrets")


def config_dump_view(resource: str, data: Any) -> dict[str, Any]:
    """{resource, text (the table), data (the JSON behind it)}; ValueError for an unknown section."""
    if resource not in RESOURCES:
        raise ValueError(f"resource must be one of {', '.join(RESOURCES)}, not {resource!r}")
    if resource == "secrets":
        now = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
        return {"resource": resource, "text": secrets_table(data if isinstance(data, dict) else {}, now), "data": data}
    snapshot = ProxySnapshot.from_data(data)
    return {"resource": resource, "text": render(snapshot, resource, "table"), "version": snapshot.version}
