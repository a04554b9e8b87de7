"""A mirrored request is copied exactly once (Istio `mirror` + `mirrorPercentage: 100`)."""

from __future__ import annotations

import asyncio

import pytest
from dataplane_support import Upstream, compose_for, fetch, mesh_snapshot, running_sidecar, socket_test

COMPOSE = compose_for(("fortio", "fortio", "v1"), ("httpbin-v1", "httpbin", "v1"), ("httpbin-v2", "httpbin", "v2"))
MIRROR = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: httpbin}
spec:
  host: httpbin
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: httpbin}
spec:
  hosts: [httpbin]
  http:
  - route: [{destination: {host: httpbin, subset: v1}, weight: 100}]
    mirror: {host: httpbin, subset: v2}
    mirrorPercentage: {value: 100.0}
"""


@pytest.mark.parametrize("body", [b"", b"payload"])
@socket_test
async def test_each_request_is_mirrored_once(body: bytes) -> None:
    async with Upstream() as v1, Upstream() as v2:
        snapshot = mesh_snapshot(COMPOSE, MIRROR, "fortio", {"httpbin-v1": v1.address, "httpbin-v2": v2.address})
        async with running_sidecar(snapshot) as sc:
            for _ in range(3):
                if body:
                    response = await fetch(sc.outbound, "/anything", host="httpbin:9080", method="POST", body=body)
                else:
                    response = await fetch(sc.outbound, "/headers", host="httpbin:9080")
                assert response.status == 200
            while len(v2.requests) < 3:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.2)  # a second copy, if any, would have arrived by now
    assert len(v1.requests) == 3
    assert len(v2.requests) == 3
    assert {r.headers["host"] for r in v2.requests} == {"httpbin-shadow:9080"}
