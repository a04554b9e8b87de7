from __future__ import annotations

import pytest

CODES = {"KIA1101", "KIA1102", "KIA1104", "KIA1105", "KIA1106", "KIA1107", "KIA1108"}

DR = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
"""

CASES = {
    "known hosts and subsets": DR
    + """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
      weight: 80
    - destination: {host: reviews.default.svc.cluster.local, subset: v2}
      weight: 20
  tcp:
  - route:
    - destination: {host: ratings}
""",
    "unknown host": """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination:
        host: reviewz  # !KIA1101 warning spec/http[0]/route[0]/destination/host
  tls:
  - match: [{sniHosts: [reviews]}]
    route:
    - destination: {host: nowhere.example.com}  # !KIA1101 warning spec/tls[0]/route[0]/destination/host
""",
    "short name resolves in the rule's namespace": """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: legacy}
spec:
  hosts: [legacy]
  http:
  - route:
    - destination: {host: legacy}
    - destination:
        host: reviews  # !KIA1101 warning spec/http[0]/route[1]/destination/host
      weight: 0
""",
    "service entry hosts are in the registry": """\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: external}
spec:
  hosts: [api.example.com, "*.wild.example.com"]
  ports: [{number: 443, name: tls, protocol: TLS}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: external}
spec:
  hosts: [api.example.com]
  http:
  - route:
    - destination: {host: api.example.com}
    - destination: {host: a.wild.example.com}
    - destination:
        host: wild.example.com  # !KIA1101 warning spec/http[0]/route[2]/destination/host
""",
    "subset no rule defines": DR
    + """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
    - destination: {host: reviews, subset: v3}  # !KIA1107 warning spec/http[0]/route[1]/destination
    - destination: {host: ratings, subset: v1}  # !KIA1107 warning spec/http[0]/route[2]/destination
""",
    "subset from a wildcard rule": """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: all}
spec:
  host: "*.default.svc.cluster.local"
  subsets: [{name: v1, labels: {version: v1}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
""",
    "single destination with a partial weight": """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews}
      weight: 50  # !KIA1104 warning spec/http[0]/route[0]/weight
  - route:
    - destination: {host: reviews}
      weight: 100
""",
    "same destination twice in one route": """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews}  # !KIA1105 warning spec/http[0]/route[0]/host
      weight: 50
    - destination: {host: reviews.default.svc.cluster.local}  # !KIA1105 warning spec/http[0]/route[1]/host
      weight: 50
    - destination: {host: ratings}
""",
    "gateways that exist and that do not": """\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: bookinfo-gateway}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 8080, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bookinfo}
spec:
  hosts: ["*"]
  gateways:
  - bookinfo-gateway
  - default/bookinfo-gateway
  - mesh
  - missing-gateway  # !KIA1102 error spec/gateways[3]
  - bookinfo-gateway.default.svc.cluster.local  # !KIA1108 info spec/gateways[4]
  http:
  - match:
    - gateways:
      - other/bookinfo-gateway  # !KIA1102 error spec/http[0]/match[0]/gateways[0]
    route:
    - destination: {host: productpage}
""",
    "two virtual services for one host": """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]  # !KIA1106 warning spec/hosts
  http:
  - route:
    - destination: {host: reviews}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-again}
spec:
  hosts: [reviews.default.svc.cluster.local]  # !KIA1106 warning spec/hosts
  http:
  - route:
    - destination: {host: reviews}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings}
spec:
  hosts: [ratings]
  http:
  - route:
    - destination: {host: ratings}
""",
    "a wildcard host beside other hosts of its namespace": """\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 8080, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: everything}
spec:
  hosts: ["*"]  # !KIA1106 warning spec/hosts
  gateways: [gw]
  http:
  - route:
    - destination: {host: productpage}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]  # !KIA1106 warning spec/hosts
  gateways: [default/gw]
  http:
  - route:
    - destination: {host: reviews}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: legacy, namespace: legacy}
spec:
  hosts: [legacy]
  gateways: [default/gw]
  http:
  - route:
    - destination: {host: legacy}
""",
    "one host on different gateways": """\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 8080, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-edge}
spec:
  hosts: [reviews]
  gateways: [gw]
  http:
  - route:
    - destination: {host: reviews}
""",
}


@pytest.mark.parametrize("text", CASES.values(), ids=CASES.keys())
def test_virtual_service_checks(check, text: str) -> None:
    actual, expected = check(text, CODES)
    assert actual == expected


def test_registry_only_makes_an_unknown_host_an_error(check) -> None:
    compose = "x-sandbox: {outboundTrafficPolicy: {mode: REGISTRY_ONLY}}\nservices: {}\n"
    text = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews}  # !KIA1101 error spec/http[0]/route[0]/destination/host
"""
    actual, expected = check(text, CODES, compose=compose)
    assert actual == expected
