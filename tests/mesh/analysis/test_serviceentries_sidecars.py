from __future__ import annotations

import pytest

CODES = {"KIA1211", "KIA1212", "KIA1004", "KIA1006", "KIA1007"}


def se(name: str, hosts: str, protocol: str, marker: str = "") -> str:
    return f"""\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}}}
spec:
  hosts: {hosts}
  ports:
  - {{number: 443, name: https, protocol: {protocol}}}{marker}
---
"""


def sidecar(body: str, namespace: str = "default") -> str:
    return f"""\
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: sc, namespace: {namespace}}}
spec:
{body}---
"""


CASES = {
    "distinct entries": se("a", "[a.example.com]", "TLS") + se("b", "[b.example.com]", "TLS"),
    "same host and port": se("a", "[a.example.com]", "TLS", "  # !KIA1211 warning spec/ports[0]")
    + se("b", "[b.example.com, A.example.com]", "tls", "  # !KIA1211 warning spec/ports[0]"),
    "same host and port, other protocol": se("a", "[a.example.com]", "TLS", "  # !KIA1212 warning spec/ports[0]")
    + se("b", "[a.example.com]", "HTTPS", "  # !KIA1212 warning spec/ports[0]"),
    "egress hosts that exist": sidecar("""\
  egress:
  - hosts: ["./reviews", "legacy/legacy.legacy.svc.cluster.local", "*/*", "istio-system/*", "./*.example.com"]
""")
    + se("a", "[api.example.com]", "TLS")
    + sidecar('  egress: [{hosts: ["*/api.example.com"]}]\n', namespace="legacy"),
    "egress host nowhere": sidecar("""\
  egress:
  - hosts:
    - ./reviewz  # !KIA1004 warning spec/egress[0]/hosts[0]
    - legacy/reviews  # !KIA1004 warning spec/egress[0]/hosts[1]
"""),
    "root sidecar with a selector": sidecar(
        """\
  workloadSelector:  # !KIA1006 warning spec/workloadSelector
    labels: {istio: ingressgateway}
  egress: [{hosts: ["./*"]}]
""",
        namespace="istio-system",
    ),
    "outbound policy without a mode": sidecar("""\
  outboundTrafficPolicy: {}  # !KIA1007 info spec/outboundTrafficPolicy
""")
    + sidecar("  outboundTrafficPolicy: {mode: REGISTRY_ONLY}\n", namespace="legacy"),
}


@pytest.mark.parametrize("text", CASES.values(), ids=CASES.keys())
def test_service_entry_and_sidecar_checks(check, text: str) -> None:
    actual, expected = check(text, CODES)
    assert actual == expected
