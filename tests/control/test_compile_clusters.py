"""compile_clusters: DestinationRule outlierDetection as Istio's applyOutlierDetection hands it to Envoy.

Istio (pilot cluster_traffic_policy.go) passes maxEjectionPercent only when > 0 (else Envoy's 10%),
turns the deprecated `consecutiveErrors` into consecutive gateway failures with the 5xx detector not
enforced (unless consecutive5xxErrors is set), and sets consecutiveLocalOriginFailures only when > 0
(else Envoy's 5).
"""

from __future__ import annotations

import textwrap

import pytest

from sandbox.control.compile import compile as compile_snapshot
from sandbox.mesh.loader import load_texts
from sandbox.mesh.state import MeshState
from sandbox.mesh.topology import parse_compose
from sandbox.xds.snapshot import OutlierDetectionPolicy

COMPOSE = """services:
  productpage-v1:
    image: x
    labels: {app: productpage, version: v1}
    expose: ["9080"]
  reviews-v1:
    image: x
    labels: {app: reviews, version: v1}
    expose: ["9080"]
"""
CLUSTER = "outbound|9080||reviews.default.svc.cluster.local"


def outlier(spec: str) -> OutlierDetectionPolicy:
    rule = (
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews, namespace: default}\n"
        f"spec:\n  host: reviews\n  trafficPolicy:\n    outlierDetection: {spec}\n"
    )
    loaded = load_texts([("dr.yaml", textwrap.dedent(rule))])
    assert not loaded.errors, loaded.errors
    snapshot = compile_snapshot(MeshState(loaded.resources, parse_compose(COMPOSE, "compose.yaml")), "productpage-v1")
    found = snapshot.cluster(CLUSTER)
    assert found is not None and found.traffic_policy.outlier_detection is not None
    return found.traffic_policy.outlier_detection


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("{consecutive5xxErrors: 1, maxEjectionPercent: 0}", 10),  # 0 is "unset": Envoy's default
        ("{consecutive5xxErrors: 1}", 10),
        ("{consecutive5xxErrors: 1, maxEjectionPercent: 100}", 100),
    ],
)
def test_max_ejection_percent_zero_means_envoys_default(spec: str, expected: int) -> None:
    assert outlier(spec).max_ejection_percent == expected


@pytest.mark.parametrize(
    ("spec", "five_xx", "gateway"),
    [
        # deprecated consecutiveErrors: gateway failures only, the 5xx detector not enforced
        ("{consecutiveErrors: 3}", 0, 3),
        # the new fields, when set, win over what consecutiveErrors implied
        ("{consecutiveErrors: 3, consecutive5xxErrors: 7}", 7, 3),
        ("{consecutiveErrors: 3, consecutiveGatewayErrors: 2}", 0, 2),
        ("{consecutiveErrors: 3, consecutiveGatewayErrors: 0}", 0, 0),
        ("{consecutiveErrors: 0}", 5, 0),  # 0 is "unset": Envoy's defaults stand
        ("{interval: 1s}", 5, 0),
    ],
)
def test_deprecated_consecutive_errors_as_istio_translates_it(spec: str, five_xx: int, gateway: int) -> None:
    od = outlier(spec)
    assert (od.consecutive_5xx_errors, od.consecutive_gateway_errors) == (five_xx, gateway)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("{splitExternalLocalOriginErrors: true, consecutiveLocalOriginFailures: 2}", 2),
        ("{splitExternalLocalOriginErrors: true, consecutiveLocalOriginFailures: 0}", 5),  # only > 0 is passed
        ("{splitExternalLocalOriginErrors: true}", 5),
    ],
)
def test_local_origin_failures_zero_means_envoys_default(spec: str, expected: int) -> None:
    assert outlier(spec).consecutive_local_origin_failures == expected
