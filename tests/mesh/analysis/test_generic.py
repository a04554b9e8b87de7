from __future__ import annotations

import pytest

CODES = {"KIA0002", "KIA0003", "KIA0004", "KIA0005"}

CASES = {
    "one selector-less policy per namespace": """\
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: legacy}
spec: {mtls: {mode: PERMISSIVE}}
""",
    "two selector-less policies in one namespace": """\
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: one}
spec:  # !KIA0002 error spec/selector
  mtls: {mode: STRICT}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: two}
spec:  # !KIA0002 error spec/selector
  mtls: {mode: PERMISSIVE}
""",
    "two sidecars without selectors": """\
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: one}
spec:  # !KIA0002 error spec/workloadSelector
  egress: [{hosts: ["./*"]}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: two}
spec:  # !KIA0002 error spec/workloadSelector
  egress: [{hosts: ["./*"]}]
""",
    "two policies select one workload": """\
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: reviews}
spec:
  selector:  # !KIA0003 error spec/selector
    matchLabels: {app: reviews}
  mtls: {mode: STRICT}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: reviews-v1}
spec:
  selector:  # !KIA0003 error spec/selector
    matchLabels: {app: reviews, version: v1}
  mtls: {mode: PERMISSIVE}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: ratings}
spec:
  selector: {matchLabels: {app: ratings}}
  mtls: {mode: PERMISSIVE}
""",
    "selectors that match nothing here": """\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: reviews}
spec:
  selector:
    matchLabels: {app: reviewz}  # !KIA0004 warning spec/selector/matchLabels
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: legacy}
spec:
  selector:
    matchLabels: {app: legacy}  # !KIA0004 warning spec/selector/matchLabels
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: ratings}
spec:
  workloadSelector:
    labels: {app: ratings, version: v9}  # !KIA0004 warning spec/workloadSelector/labels
  egress: [{hosts: ["./*"]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: legacy, namespace: legacy}
spec:
  selector: {matchLabels: {app: legacy}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ingress, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
""",
    "exportTo namespaces": """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  exportTo:
  - "."
  - legacy
  - nowhere  # !KIA0005 error spec/exportTo[2]
  http: [{route: [{destination: {host: reviews}}]}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  exportTo:
  - "*"
  - "~"  # !KIA0005 error spec/exportTo[1]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api}
spec:
  hosts: [api.example.com]
  ports: [{number: 443, name: tls, protocol: TLS}]
  exportTo: ["~"]
""",
}


@pytest.mark.parametrize("text", CASES.values(), ids=CASES.keys())
def test_generic_checks(check, text: str) -> None:
    actual, expected = check(text, CODES)
    assert actual == expected
