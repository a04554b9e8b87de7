from __future__ import annotations

import pytest

CODES = {"KIA0101", "KIA0102", "KIA0104", "KIA0105", "KIA0106", "SBX162", "SBX163", "SBX164"}


def ap(rules: str, extra: str = "") -> str:
    return f"""\
{extra}apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: reviews}}
spec:
  selector: {{matchLabels: {{app: reviews}}}}
  rules:
{rules}"""


CASES = {
    "everything known": (
        ap("""\
  - from:
    - source:
        namespaces: [default, "leg*", "*acy", "*"]
        principals: [cluster.local/ns/default/sa/productpage, "cluster.local/ns/default/sa/bookinfo-*"]
    to:
    - operation:
        methods: [GET, post, "PU*", "*CH", "*"]  # !SBX164 warning spec/rules[0]/to[0]/operation/methods[1]
        hosts: [reviews, reviews.default, ratings.default.svc.cluster.local, "*.example.com", www.example.com, a.b]
    when:
    - key: source.principal
      values: [cluster.local/ns/default/sa/productpage]
""")
    ),
    "unknown namespaces, principals, methods and hosts": (
        ap("""\
  - from:
    - source:
        namespaces:
        - default
        - nowhere  # !KIA0101 warning spec/rules[0]/from[0]/source/namespaces[1]
        - "zz*"  # !KIA0101 warning spec/rules[0]/from[0]/source/namespaces[2]
        principals:
        - cluster.local/ns/default/sa/ghost  # !KIA0106 error spec/rules[0]/from[0]/source/principals[0]
        - "cluster.local/ns/legacy/*"
    to:
    - operation:
        methods:
        - FETCH  # !KIA0102 warning spec/rules[0]/to[0]/operation/methods[0]
        - "X*"  # !KIA0102 warning spec/rules[0]/to[0]/operation/methods[1]
        hosts:
        - reviewz  # !KIA0104 warning spec/rules[0]/to[0]/operation/hosts[0]
        - ratings.legacy  # !KIA0104 warning spec/rules[0]/to[0]/operation/hosts[1]
""")
    ),
    "identity fields without mTLS": (
        ap(
            """\
  - from:
    - source:
        principals: [cluster.local/ns/default/sa/productpage]  # !KIA0105 error spec/rules[0]/from[0]/source/principals
        notNamespaces: [legacy]  # !KIA0105 error spec/rules[0]/from[0]/source/notNamespaces
    when:
    - key: source.namespace  # !KIA0105 error spec/rules[0]/when[0]
      values: [default]
    - key: request.headers[x-user]
      values: [jason]
""",
            extra="""\
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default}
spec: {mtls: {mode: DISABLE}}
---
""",
        )
    ),
    "identity fields with a workload PA that keeps mTLS": (
        ap(
            """\
  - from:
    - source: {principals: [cluster.local/ns/default/sa/productpage]}
""",
            extra="""\
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default}
spec: {mtls: {mode: DISABLE}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: reviews}
spec: {selector: {matchLabels: {app: reviews}}, mtls: {mode: STRICT}}
---
""",
        )
    ),
    "checked as the sidecars match": (
        ap(
            """\
  - from:
    - source:
        principals: [spiffe://cluster.local/ns/default/sa/bookinfo-reviews]
        ipBlocks:
        - 10.0.0.0/8
        - 10.0.0.300  # !SBX163 error spec/rules[0]/from[0]/source/ipBlocks[1]
    to:
    - operation:
        methods:
        - get  # !SBX164 warning spec/rules[0]/to[0]/operation/methods[0]
        notMethods:
        - Post  # !SBX164 warning spec/rules[0]/to[0]/operation/notMethods[0]
    when:
    - key: request.header[x-user]  # !SBX162 error spec/rules[0]/when[0]/key
      values: [jason]
    - key: remote.ip
      values: ["::1", not-an-ip]  # !SBX163 error spec/rules[0]/when[1]/values[1]
    - key: experimental.envoy.filters.network.mysql_proxy[db.table]
      values: ["[update]"]
"""
        )
    ),
}


@pytest.mark.parametrize("text", CASES.values(), ids=CASES.keys())
def test_authorization_policy_checks(check, text: str) -> None:
    actual, expected = check(text, CODES)
    assert actual == expected
