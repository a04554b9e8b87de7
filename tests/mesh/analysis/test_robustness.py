"""The analyzer never raises: resources that load with errors (a required field missing, a value
of the wrong type) still reach it, so every checker must cope with what the loader leaves."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from sandbox.mesh.analysis import analyze
from sandbox.mesh.loader import load_text
from sandbox.mesh.state import MeshState
from sandbox.mesh.topology import parse_compose
from sandbox.mesh.yamlsrc import parse_documents

from .conftest import BOOKINFO, analyze_text

SAMPLE = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  gateways: [mesh, gw]
  http:
  - match: [{uri: {prefix: /a}, headers: {X-A: {regex: "a+"}}, gateways: [gw]}]
    route:
    - {destination: {host: reviews, subset: v1, port: {number: 9080}}, weight: 50}
    - {destination: {host: reviews, subset: v2}, weight: 50}
    fault: {delay: {fixedDelay: 1s, percentage: {value: 10}}, abort: {httpStatus: 500}}
    retries: {attempts: 2, perTryTimeout: 1s, retryOn: 5xx}
    mirrors: [{destination: {host: ratings}, percentage: {value: 5}}]
    redirect: {uri: /b}
  tcp: [{route: [{destination: {host: ratings}}]}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}, portLevelSettings: [{port: {number: 9080}, tls: {mode: DISABLE}}]}
  subsets: [{name: v1, labels: {version: v1}}, {name: v2}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 8080, name: http, protocol: HTTP}, hosts: ["*", "ns/a.example.com"]}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api}
spec:
  hosts: [api.example.com]
  ports: [{number: 443, name: tls, protocol: TLS}]
  endpoints: [{address: 1.2.3.4, labels: {a: b}}]
  exportTo: [nowhere]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: sc}
spec:
  workloadSelector: {labels: {app: reviews}}
  egress: [{hosts: [./reviews]}]
  outboundTrafficPolicy: {mode: ALLOW_ANY}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: pa}
spec: {selector: {matchLabels: {app: reviews}}, mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ap}
spec:
  selector: {matchLabels: {app: reviews}}
  rules:
  - from: [{source: {principals: [a/ns/b/sa/c], namespaces: [default]}}]
    to: [{operation: {methods: [GET], hosts: [reviews]}}]
    when: [{key: source.namespace, values: [default]}]
"""

REPLACEMENTS: tuple[Any, ...] = (None, "x", -1, {}, [])


def _mutants(node: Any) -> Iterator[Any]:
    """Copies of `node` with one key deleted or one value replaced, at every depth."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("apiVersion", "kind"):
                continue
            dropped = dict(node)
            del dropped[key]
            yield dropped
            for other in (*REPLACEMENTS, *_mutants(value)):
                yield {**node, key: other}
    elif isinstance(node, list):
        for i, value in enumerate(node):
            for other in (*REPLACEMENTS, *_mutants(value)):
                yield [*node[:i], other, *node[i + 1 :]]


def test_mutated_resources_never_crash_the_analyzer() -> None:
    topology = parse_compose(BOOKINFO, "compose.yaml")
    count = 0
    for document in _documents(SAMPLE):
        for mutant in _mutants(document):
            text = json.dumps(mutant)  # JSON is YAML, and much faster to write
            resources = load_text(text, "m.yaml").resources
            if resources:
                try:
                    analyze(MeshState(resources, topology))
                except Exception as exc:  # pragma: no cover - the failure report
                    raise AssertionError(f"analyzer raised {exc!r} on:\n{text}") from exc
                count += 1
    assert count > 400


def _documents(text: str) -> list[Any]:
    documents, problems = parse_documents(text, "s.yaml")
    assert not problems
    return [d.data for d in documents]


def test_the_sample_itself_is_analyzed() -> None:
    assert analyze_text(SAMPLE)
