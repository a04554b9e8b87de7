from __future__ import annotations

import pytest

CODES = {"KIA0201", "KIA0202", "KIA0203", "KIA0209"}

CASES = {
    "subsets that match workloads": """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2, app: reviews}}
""",
    "host nowhere in the registry": """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviewz}
spec:
  host: reviewz  # !KIA0202 warning spec/host
  subsets:
  - {name: v1, labels: {version: v1}}
""",
    "host in another namespace": """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: legacy}
spec:
  host: legacy.legacy
""",
    "subset labels match no workload, routed to": """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets:
  - name: v1
    labels: {version: v1}
  - name: v3  # !KIA0203 error spec/subsets[1]
    labels: {version: v3}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews.default.svc.cluster.local, subset: v3}
""",
    "subset labels match no workload, not routed to": """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets:
  - name: v3  # !KIA0203 info spec/subsets[0]
    labels: {version: v3}
""",
    "labels of another service's workloads": """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings}
spec:
  host: ratings
  subsets:
  - name: v2  # !KIA0203 info spec/subsets[0]
    labels: {version: v2}
""",
    "service entry endpoints carry the labels": """\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: db}
spec:
  hosts: [db.example.com]
  ports: [{number: 5432, name: tcp, protocol: TCP}]
  resolution: STATIC
  endpoints:
  - {address: 10.0.0.1, labels: {role: primary}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: db}
spec:
  host: db.example.com
  subsets:
  - {name: primary, labels: {role: primary}}
  - name: replica  # !KIA0203 info spec/subsets[1]
    labels: {role: replica}
""",
    "subset without labels": """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings}
spec:
  host: ratings
  subsets:
  - name: all  # !KIA0209 warning spec/subsets[0]
""",
    "subset without labels beside one that matches": """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - name: all  # !KIA0209 info spec/subsets[1]
""",
    "two rules for one host and subset": """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews  # !KIA0201 warning spec/host
  subsets: [{name: v1, labels: {version: v1}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews-again}
spec:
  host: reviews.default.svc.cluster.local  # !KIA0201 warning spec/host
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings}
spec:
  host: ratings
""",
    "two rules with different subsets": """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets: [{name: v1, labels: {version: v1}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews-v2}
spec:
  host: reviews
  subsets: [{name: v2, labels: {version: v2}}]
""",
    "a wildcard rule without subsets covers a host rule": """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: everything}
spec:
  host: "*.default.svc.cluster.local"  # !KIA0201 warning spec/host
  trafficPolicy: {loadBalancer: {simple: RANDOM}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews  # !KIA0201 warning spec/host
  subsets: [{name: v1, labels: {version: v1}}]
""",
    "a namespace-wide mTLS rule is meant to overlap": """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: default}
spec:
  host: "*.default.svc.cluster.local"
  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}
""",
}


@pytest.mark.parametrize("text", CASES.values(), ids=CASES.keys())
def test_destination_rule_checks(check, text: str) -> None:
    actual, expected = check(text, CODES)
    assert actual == expected


def test_registry_only_makes_an_unknown_host_an_error(check) -> None:
    compose = "x-sandbox: {outboundTrafficPolicy: {mode: REGISTRY_ONLY}}\nservices: {}\n"
    text = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews  # !KIA0202 error spec/host
"""
    actual, expected = check(text, CODES, compose=compose)
    assert actual == expected
