"""Istio's own validation rules (SBX1xx), each with a failing and a passing case."""

from __future__ import annotations

import pytest

from sandbox.mesh.analysis.codes import ISTIO

from .conftest import analyze_text

CODES = set(ISTIO)


def vs(http: str, head: str = "  hosts: [reviews]\n") -> str:
    return f"""\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews}}
spec:
{head}  http:
{http}"""


GOOD_ROUTE = "    route: [{destination: {host: reviews}}]\n"

CASES = {
    "a valid route": vs(
        """\
  - match:
    - uri: {prefix: ""}
      headers: {x-user: {}, x-env: {regex: "^(dev|test)$"}}
      withoutHeaders: {x-debug: {regex: "*"}}
      queryParams: {q: {}}
    route:
    - destination: {host: reviews}
      weight: 0
    - destination: {host: ratings}
      weight: 1
    timeout: 1.5s
    retries: {attempts: 3, perTryTimeout: 500ms, retryOn: "5xx,reset,503"}
    fault:
      delay: {fixedDelay: 7s, percentage: {value: 0.5}}
      abort: {grpcStatus: UNAVAILABLE, percentage: {value: 100}}
    mirror: {host: ratings}
    mirrorPercentage: {value: 100}
  - redirect: {uri: /v2, redirectCode: 308}
  - directResponse: {status: 503}
"""
    ),
    "negative weight and a zero total": vs(
        """\
  - route:  # !SBX102 error spec/http[0]/route
    - destination: {host: reviews}
      weight: -10  # !SBX101 error spec/http[0]/route[0]/weight
    - destination: {host: ratings}
      weight: 10
  - route:  # !SBX102 error spec/http[1]/route
    - destination: {host: reviews}
    - destination: {host: ratings}
"""
    ),
    "bad regexes": vs(
        f"""\
  - match:
    - uri:
        regex: "(unclosed"  # !SBX104 error spec/http[0]/match[0]/uri/regex
      headers:
        x-a:
          regex: "{"a" * 1025}"  # !SBX103 error spec/http[0]/match[0]/headers/x-a/regex
        x-b:
          regex: "(?=look)ahead"  # !SBX104 error spec/http[0]/match[0]/headers/x-b/regex
{GOOD_ROUTE}"""
    ),
    "string matches": vs(
        f"""\
  - match:
    - uri:  # !SBX106 error spec/http[0]/match[0]/uri
        exact: /a
        prefix: /b
      method: {{}}  # !SBX107 warning spec/http[0]/match[0]/method
      authority:
        prefix: ""  # !SBX108 error spec/http[0]/match[0]/authority/prefix
      scheme:
        regex: ""  # !SBX108 error spec/http[0]/match[0]/scheme/regex
{GOOD_ROUTE}"""
    ),
    "an empty match block": vs(
        f"""\
  - match:
    - {{}}  # !SBX105 warning spec/http[0]/match[0]
    - name: only-a-name  # !SBX105 warning spec/http[0]/match[1]
{GOOD_ROUTE}"""
    ),
    "header keys must be lowercase": vs(
        f"""\
  - match:
    - headers:
        End-User: {{exact: jason}}  # !SBX120 warning spec/http[0]/match[0]/headers/End-User
        "@request.auth.claims.Group": {{exact: admin}}
{GOOD_ROUTE}"""
    ),
    "conflicting actions": vs(
        """\
  - route: [{destination: {host: reviews}}]
    redirect:  # !SBX110 error spec/http[0]/redirect
      uri: /v2
  - redirect:  # !SBX109 error spec/http[1]/redirect
      uri: /v2
    rewrite: {uri: /v3}
  - route: [{destination: {host: reviews}}]
    directResponse:  # !SBX110 error spec/http[2]/directResponse
      status: 200
  - name: nothing  # !SBX111 error spec/http[3]
    timeout: 1s
  - delegate: {name: reviews-delegate}
    route:  # !SBX110 error spec/http[4]/route
    - destination: {host: reviews}
"""
    ),
    "percentages outside 0-100": vs(
        """\
  - route: [{destination: {host: reviews}}]
    fault:
      delay:
        fixedDelay: 1s
        percentage:
          value: 101  # !SBX112 error spec/http[0]/fault/delay/percentage/value
      abort:
        httpStatus: 500
        percentage:
          value: -1  # !SBX112 error spec/http[0]/fault/abort/percentage/value
    mirror: {host: ratings}
    mirrorPercentage:
      value: 150  # !SBX112 error spec/http[0]/mirrorPercentage/value
  - route: [{destination: {host: reviews}}]
    mirrors:
    - destination: {host: ratings}
      percentage:
        value: 200  # !SBX112 error spec/http[1]/mirrors[0]/percentage/value
"""
    ),
    "durations under a millisecond": vs(
        """\
  - route: [{destination: {host: reviews}}]
    timeout: 0s  # !SBX113 error spec/http[0]/timeout
    retries:
      attempts: 2
      perTryTimeout: 100us  # !SBX113 error spec/http[0]/retries/perTryTimeout
    fault:
      delay:
        fixedDelay: 1.0005s  # !SBX113 error spec/http[0]/fault/delay/fixedDelay
        percentage: {value: 10}
"""
    ),
    "fault aborts": vs(
        """\
  - route: [{destination: {host: reviews}}]
    fault:
      abort:  # !SBX114 warning spec/http[0]/fault/abort
        percentage: {value: 10}
  - route: [{destination: {host: reviews}}]
    fault:
      abort:
        httpStatus: 600  # !SBX115 error spec/http[1]/fault/abort/httpStatus
  - route: [{destination: {host: reviews}}]
    fault:
      abort:
        grpcStatus: NOPE  # !SBX115 error spec/http[2]/fault/abort/grpcStatus
  - route: [{destination: {host: reviews}}]
    fault: {}  # !SBX116 error spec/http[3]/fault
"""
    ),
    "retries": vs(
        """\
  - route: [{destination: {host: reviews}}]
    retries:
      attempts: -1  # !SBX117 error spec/http[0]/retries/attempts
  - route: [{destination: {host: reviews}}]
    retries:  # !SBX118 error spec/http[1]/retries
      attempts: 0
      retryOn: 5xx
  - route: [{destination: {host: reviews}}]
    retries:
      attempts: 2
      retryOn: 5xx,bogus  # !SBX119 error spec/http[2]/retries/retryOn
"""
    ),
    "redirects": vs(
        """\
  - redirect:  # !SBX125 error spec/http[0]/redirect
      redirectCode: 301
  - redirect:
      uri: /x
      redirectCode: 200  # !SBX125 error spec/http[1]/redirect/redirectCode
      scheme: ftp  # !SBX125 error spec/http[1]/redirect/scheme
"""
    ),
    "a virtual service without hosts nobody delegates to": vs(
        GOOD_ROUTE.replace("    route", "  - route"), head=""
    ).replace("spec:\n", "spec:  # !SBX121 error spec/hosts\n"),
    "a delegate virtual service": """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: root}
spec:
  hosts: [reviews]
  http:
  - delegate: {name: reviews-delegate}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-delegate}
spec:
  gateways: [mesh]  # !SBX122 error spec/gateways
  http:
  - route: [{destination: {host: reviews}}]
  tcp:  # !SBX122 error spec/tcp
  - route: [{destination: {host: reviews}}]
""",
    "no routes at all and a mesh wildcard": """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:  # !SBX123 error spec
  hosts:
  - "*"  # !SBX124 error spec/hosts[0]
""",
    "tcp and tls routes": """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  tcp:
  - match: [{port: 9080}]  # !SBX126 error spec/tcp[0]
  tls:
  - match: [{sniHosts: [reviews]}]
    route:  # !SBX102 error spec/tls[0]/route
    - {destination: {host: reviews}, weight: 0}
    - {destination: {host: ratings}, weight: 0}
""",
    "destination rule subsets": """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
  - name: v1  # !SBX130 error spec/subsets[2]/name
    labels: {version: v1}
""",
    "gateway servers": """\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: ["*"]
  - port: {number: 8081, protocol: HTTP}  # !SBX140 error spec/servers[1]
  - port:
      number: 8082
      name: http  # !SBX142 error spec/servers[2]/port/name
      protocol: HTTP
    hosts: [a.example.com]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: empty}
spec:  # !SBX141 error spec/servers
  selector: {istio: ingressgateway}
""",
    "service entry hosts": """\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: nothing}
spec:  # !SBX150 error spec/hosts
  ports: [{number: 443, name: tls, protocol: TLS}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api}
spec:
  hosts: [api.example.com]
  ports: [{number: 443, name: tls, protocol: TLS}]
""",
}


@pytest.mark.parametrize("text", CASES.values(), ids=CASES.keys())
def test_istio_validation(check, text: str) -> None:
    actual, expected = check(text, CODES)
    assert actual == expected


def test_messages_are_istios() -> None:
    text = vs(
        """\
  - route:
    - {destination: {host: reviews}, weight: -10}
    - {destination: {host: ratings}, weight: 20}
    timeout: 0s
    fault: {abort: {httpStatus: 600}}
"""
    )
    messages = {d.code: d.message for d in analyze_text(text) if d.code.startswith("SBX1")}
    assert messages == {
        "SBX101": "weight -10 < 0",
        "SBX113": "0s: duration must be greater than 1ms",
        "SBX115": "HTTP status 600 is not in range 200-599",
    }


MORE = {
    "duplicate hosts and invalid subset names": """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: wild}
spec:
  hosts: ["*.example.com", "a.example.com", b.example.com]  # !SBX127 error spec/hosts
  gateways: [gw]
  http:
  - route:
    - destination:
        host: reviews
        subset: V1.0  # !SBX131 error spec/http[0]/route[0]/destination/subset
      weight: 50
    - destination: {host: reviews, subset: v2-mysql-vm}
      weight: 50
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets:
  - name: V1.0  # !SBX131 error spec/subsets[0]/name
    labels: {version: v1}
  - {name: v2-mysql-vm, labels: {version: v2}}
""",
    "gateway TLS settings and protocols": """\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: ["*"]
    tls: {httpsRedirect: true}
  - port:  # !SBX143 error spec/servers[1]/port
      number: 8443
      name: https
      protocol: HTTPS
    hosts: ["*"]
  - port: {number: 8081, name: http2, protocol: http}
    hosts: ["*"]
    tls:  # !SBX143 error spec/servers[2]/tls
      mode: SIMPLE
      credentialName: cert
  - port: {number: 8444, name: https2, protocol: HTTPS}
    hosts: ["*"]
    tls: {mode: SIMPLE, credentialName: cert}
  - port: {number: 9000, name: tcp, protocol: TCP}
    hosts: ["*"]
    tls:  # !SBX143 error spec/servers[4]/tls
      mode: SIMPLE
""",
    "service entry endpoints and a selector": """\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: both}
spec:
  hosts: [a.example.com]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  workloadSelector:  # !SBX151 error spec/workloadSelector
    labels: {app: a}
  endpoints: [{address: 1.2.3.4}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: selector}
spec:
  hosts: [b.example.com]
  ports: [{number: 80, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: b}}
""",
    "security policies": """\
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default}
spec:
  mtls: {mode: STRICT}
  portLevelMtls:  # !SBX160 error spec/portLevelMtls
    9080: {mode: DISABLE}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: reviews}
spec:
  selector: {matchLabels: {app: reviews}}
  portLevelMtls: {9080: {mode: DISABLE}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-nothing}
spec:
  action: DENY  # !SBX161 error spec/action
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-everything}
spec:
  action: DENY
  rules: [{}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-nothing}
spec: {}
""",
}


@pytest.mark.parametrize("text", MORE.values(), ids=MORE.keys())
def test_istio_validation_of_other_kinds(check, text: str) -> None:
    actual, expected = check(text, CODES)
    assert actual == expected
