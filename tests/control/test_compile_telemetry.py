"""Telemetry resources merged per proxy as Istio does: mesh, then namespace, then workload."""

from __future__ import annotations

from factories import compose_for, mesh_snapshot

COMPOSE = compose_for(("productpage-v1", "productpage", "v1"), ("reviews-v1", "reviews", "v1"))


def telemetry(name: str, namespace: str, spec: str) -> str:
    return f"""
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {{name: {name}, namespace: {namespace}}}
spec:
{spec}
---"""


MESH = telemetry(
    "mesh",
    "istio-system",
    """  accessLogging: [{disabled: true}]
  tracing:
  - randomSamplingPercentage: 10
    customTags: {team: {literal: {value: mesh}}, env: {environment: {name: ZONE, defaultValue: lab}}}""",
)
NAMESPACE = telemetry("ns", "default", "  tracing: [{randomSamplingPercentage: 50}]")
WORKLOAD = telemetry(
    "reviews",
    "default",
    """  selector: {matchLabels: {app: reviews}}
  accessLogging: [{match: {mode: SERVER}, disabled: false}]
  tracing: [{customTags: {team: {literal: {value: reviews}}, user: {header: {name: End-User, defaultValue: anon}}}}]""",
)


def policy(proxy: str, *docs: str):  # type: ignore[no-untyped-def]
    return mesh_snapshot(COMPOSE, "\n".join(docs), proxy, {}).telemetry


def test_no_telemetry_resource_leaves_the_proxy_defaults() -> None:
    p = policy("reviews-v1")
    assert (p.access_log_client, p.access_log_server, p.sampling, p.custom_tags) == (True, True, None, ())


def test_each_level_overrides_only_what_it_sets() -> None:
    productpage = policy("productpage-v1", MESH, NAMESPACE, WORKLOAD)
    assert (productpage.access_log_client, productpage.access_log_server, productpage.sampling) == (False, False, 50)
    assert [(t.name, t.literal, t.environment) for t in productpage.custom_tags] == [
        ("env", None, "ZONE"),
        ("team", "mesh", None),
    ]
    reviews = policy("reviews-v1", MESH, NAMESPACE, WORKLOAD)
    assert (reviews.access_log_client, reviews.access_log_server) == (False, True)  # the server side only
    assert {t.name: (t.literal, t.header, t.default) for t in reviews.custom_tags} == {
        "env": (None, None, "lab"),
        "team": ("reviews", None, ""),
        "user": (None, "end-user", "anon"),
    }
