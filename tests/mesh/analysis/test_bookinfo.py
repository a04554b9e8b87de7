"""Istio's own Bookinfo rule files analyze clean (only Kiali's info notes) against Bookinfo's
workloads: a guard against false positives in every checker."""

from __future__ import annotations

from sandbox.mesh.diagnostics import Severity

from .conftest import analyze_text

COMPOSE = "services:\n" + "".join(
    f"  {app}-{version}: {{image: {app}, labels: {{app: {app}, version: {version}}}, x-sandbox: {{port: 9080}}}}\n"
    for app, version in [
        ("productpage", "v1"),
        ("details", "v1"),
        ("ratings", "v1"),
        ("reviews", "v1"),
        ("reviews", "v2"),
        ("reviews", "v3"),
    ]
)


def _dr(host: str, *subsets: str, tls: bool = False) -> str:
    policy = "  trafficPolicy:\n    tls:\n      mode: ISTIO_MUTUAL\n" if tls else ""
    items = "".join(f"  - name: {s}\n    labels:\n      version: {s}\n" for s in subsets)
    head = f"apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: {host}\n"
    return f"{head}spec:\n  host: {host}\n{policy}  subsets:\n{items}---\n"


def destination_rule_all(tls: bool = False) -> str:
    return (
        _dr("productpage", "v1", tls=tls)
        + _dr("reviews", "v1", "v2", "v3", tls=tls)
        + _dr("ratings", "v1", "v2", "v2-mysql", "v2-mysql-vm", tls=tls)
        + _dr("details", "v1", "v2", tls=tls)
    )


def _vs(host: str, body: str) -> str:
    head = f"apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: {host}\n"
    return f"{head}spec:\n  hosts:\n  - {host}\n  http:\n{body}---\n"


def _to(host: str, subset: str, weight: int | None = None) -> str:
    w = f"\n      weight: {weight}" if weight is not None else ""
    return f"    - destination:\n        host: {host}\n        subset: {subset}{w}\n"


GATEWAY = """\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: bookinfo-gateway
spec:
  selector:
    istio: ingressgateway
  servers:
  - port:
      number: 8080
      name: http
      protocol: HTTP
    hosts:
    - "*"
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: bookinfo
spec:
  hosts:
  - "*"
  gateways:
  - bookinfo-gateway
  http:
  - match:
    - uri:
        exact: /productpage
    - uri:
        prefix: /static
    - uri:
        exact: /login
    - uri:
        exact: /logout
    - uri:
        prefix: /api/v1/products
    route:
    - destination:
        host: productpage
        port:
          number: 9080
---
"""
ALL_V1 = "".join(_vs(h, "  - route:\n" + _to(h, "v1")) for h in ("productpage", "reviews", "ratings", "details"))
JASON = "  - match:\n    - headers:\n        end-user:\n          exact: jason\n"
VARIANTS = {
    "reviews-50-v3": _vs("reviews", "  - route:\n" + _to("reviews", "v1", 50) + _to("reviews", "v3", 50)),
    "reviews-test-v2": _vs(
        "reviews", JASON + "    route:\n" + _to("reviews", "v2") + "  - route:\n" + _to("reviews", "v1")
    ),
    "ratings-test-delay": _vs(
        "ratings",
        JASON
        + "    fault:\n      delay:\n        percentage:\n          value: 100.0\n        fixedDelay: 7s\n"
        + "    route:\n"
        + _to("ratings", "v1")
        + "  - route:\n"
        + _to("ratings", "v1"),
    ),
    "ratings-test-abort": _vs(
        "ratings",
        JASON
        + "    fault:\n      abort:\n        percentage:\n          value: 100.0\n        httpStatus: 500\n"
        + "    route:\n"
        + _to("ratings", "v1")
        + "  - route:\n"
        + _to("ratings", "v1"),
    ),
    "reviews-v3 with a timeout": _vs("reviews", "  - route:\n" + _to("reviews", "v3") + "    timeout: 0.5s\n"),
}
EGRESS = """\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: googleapis
spec:
  hosts:
  - www.googleapis.com
  ports:
  - number: 80
    name: http
    protocol: HTTP
  - number: 443
    name: https
    protocol: HTTPS
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: rewrite-port-for-googleapis
spec:
  hosts:
  - www.googleapis.com
  http:
  - match:
    - port: 80
    route:
    - destination:
        host: www.googleapis.com
        port:
          number: 443
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: originate-tls-for-googleapis
spec:
  host: www.googleapis.com
  trafficPolicy:
    loadBalancer:
      simple: ROUND_ROBIN
    portLevelSettings:
    - port:
        number: 443
      tls:
        mode: SIMPLE
"""


def not_info(text: str) -> list[str]:
    return [d.format() for d in analyze_text(text, COMPOSE) if d.severity is not Severity.INFO]


def test_gateway_all_v1_and_destination_rules_are_clean() -> None:
    found = analyze_text(GATEWAY + ALL_V1 + destination_rule_all(), COMPOSE)
    # only the subsets no workload backs and no route uses: ratings v2*, details v2 (info, as in Kiali)
    assert sorted((d.code, d.severity, d.path) for d in found) == [
        ("KIA0203", Severity.INFO, "spec/subsets[1]"),
        ("KIA0203", Severity.INFO, "spec/subsets[1]"),
        ("KIA0203", Severity.INFO, "spec/subsets[2]"),
        ("KIA0203", Severity.INFO, "spec/subsets[3]"),
    ]


def test_mtls_destination_rules_are_clean() -> None:
    assert not_info(GATEWAY + ALL_V1 + destination_rule_all(tls=True)) == []


def test_task_variants_are_clean() -> None:
    others = "".join(_vs(h, "  - route:\n" + _to(h, "v1")) for h in ("productpage", "details"))
    for name, variant in VARIANTS.items():
        assert not_info(GATEWAY + others + variant + destination_rule_all()) == [], name


def test_egress_to_google_apis_is_clean() -> None:
    assert analyze_text(EGRESS, COMPOSE) == []
