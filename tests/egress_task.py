"""Istio's "Egress Gateways" task rules, shared by the compile, in-process proxy and end-to-end
tests: the Gateway on istio-egressgateway, its DestinationRule with subset cnn, and the
VirtualService that sends `host` from the sidecars (`mesh`) to the gateway and from the gateway out.
"""

from __future__ import annotations

EGRESS = "istio-egressgateway.istio-system.svc.cluster.local"


def egress_gateway_rules(host: str, *, gateway_tls: str = "", subset_tls: str = "", external_port: int = 80) -> str:
    """`gateway_tls`: the server's `tls` (which makes it HTTPS); `subset_tls`: the sidecar-to-gateway
    TLS of subset cnn on port 80; `external_port`: where the gateway sends `host`."""
    protocol = "HTTPS" if gateway_tls else "HTTP"
    server_tls = f"\n    tls: {gateway_tls}" if gateway_tls else ""
    policy = (
        f"\n    trafficPolicy:\n      portLevelSettings:\n      - port: {{number: 80}}\n        tls: {subset_tls}"
        if subset_tls
        else ""
    )
    return f"""apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: istio-egressgateway}}
spec:
  selector: {{istio: egressgateway}}
  servers:
  - port: {{number: 80, name: http, protocol: {protocol}}}
    hosts: [{host}]{server_tls}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: egressgateway-for-cnn}}
spec:
  host: {EGRESS}
  subsets:
  - name: cnn{policy}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: direct-cnn-through-egress-gateway}}
spec:
  hosts: [{host}]
  gateways: [istio-egressgateway, mesh]
  http:
  - match: [{{gateways: [mesh], port: 80}}]
    route: [{{destination: {{host: {EGRESS}, subset: cnn, port: {{number: 80}}}}, weight: 100}}]
  - match: [{{gateways: [istio-egressgateway], port: 80}}]
    route: [{{destination: {{host: {host}, port: {{number: {external_port}}}}}, weight: 100}}]
"""
