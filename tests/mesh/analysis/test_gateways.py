from __future__ import annotations

import pytest

CODES = {"KIA0301", "KIA0302"}


def gw(name: str, servers: str, selector: str = "{istio: ingressgateway}", namespace: str = "default") -> str:
    return f"""\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  selector: {selector}
  servers:
{servers}---
"""


def server(port: int, *hosts: str, name: str = "http") -> str:
    lines = "".join(f"    - {h}\n" for h in hosts)
    return f"  - port: {{number: {port}, name: {name}, protocol: HTTP}}\n    hosts:\n{lines}"


CASES = {
    "distinct hosts": gw("a", server(8080, "a.example.com")) + gw("b", server(8080, "b.example.com")),
    "same host, different ports": gw("a", server(8080, "a.example.com")) + gw("b", server(8443, "a.example.com")),
    "same host, different selectors": gw("a", server(8080, "a.example.com"))
    + gw("b", server(8080, "a.example.com"), selector="{app: istio-ingressgateway}"),
    "same host and port": gw("a", server(8080, "a.example.com  # !KIA0301 warning spec/servers[0]/hosts[0]"))
    + gw("b", server(8080, "b.example.com", "A.example.com  # !KIA0301 warning spec/servers[0]/hosts[1]")),
    "a wildcard covers a host": gw("a", server(8080, '"*.example.com"  # !KIA0301 warning spec/servers[0]/hosts[0]'))
    + gw("b", server(8080, "a.example.com  # !KIA0301 warning spec/servers[0]/hosts[0]"))
    + gw("c", server(8080, '"*.other.example.com"', "example.com")),
    "star claims everything": gw("a", server(8080, '"*"  # !KIA0301 warning spec/servers[0]/hosts[0]'))
    + gw("b", server(8080, "b.example.com  # !KIA0301 warning spec/servers[0]/hosts[0]")),
    "different target namespaces": gw("a", server(8080, "ns1/a.example.com"))
    + gw("b", server(8080, "ns2/a.example.com", "./b.example.com"))
    + gw("c", server(8080, "ns3/b.example.com"), namespace="legacy"),
    "a namespace wildcard meets any namespace": gw(
        "a", server(8080, "ns1/a.example.com  # !KIA0301 warning spec/servers[0]/hosts[0]")
    )
    + gw("b", server(8080, '"*/a.example.com"  # !KIA0301 warning spec/servers[0]/hosts[0]')),
    "selector matches no workload": gw(
        "a", server(8080, "a.example.com"), selector="{istio: meshexpansiongateway}  # !KIA0302 warning spec/selector"
    )
    + gw("b", server(8080, "b.example.com"), selector="{app: reviews}"),
}


@pytest.mark.parametrize("text", CASES.values(), ids=CASES.keys())
def test_gateway_checks(check, text: str) -> None:
    actual, expected = check(text, CODES)
    assert actual == expected
