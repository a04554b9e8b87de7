"""Ten AuthorizationPolicies selecting the benchmarks' server workload (proxy_bench.py,
datapath_micro.py): the shapes Istio's tasks use, DENY before ALLOW, and the benchmark's request
(GET / from a plaintext client) allowed only by the last ALLOW rule Envoy's order reaches, so every
one of them is evaluated."""

from __future__ import annotations

from sandbox.mesh.loader import load_text

POLICIES = [
    ("deny-admin", "DENY", "- to: [{operation: {paths: ['/admin*', '/debug/*']}}]"),
    ("deny-debug-header", "DENY", "- when: [{key: 'request.headers[x-debug]', values: ['1', 'true']}]"),
    ("deny-scanners", "DENY", "- when: [{key: 'request.headers[user-agent]', values: ['sqlmap*', 'nikto*']}]"),
    ("deny-blocked-ips", "DENY", "- from: [{source: {remoteIpBlocks: ['203.0.113.0/24', '198.51.100.7']}}]"),
    ("deny-delete-api", "DENY", "- to: [{operation: {methods: [DELETE], paths: ['/api/*']}}]"),
    ("allow-health", "ALLOW", "- to: [{operation: {paths: [/health, /ready]}}]"),
    ("allow-metrics", "ALLOW", "- from: [{source: {principals: [cluster.local/ns/istio-system/sa/prometheus]}}]"),
    ("allow-post-api", "ALLOW", "- to: [{operation: {methods: [POST], paths: ['/api/*']}}]"),
    ("allow-team-namespace", "ALLOW", "- from: [{source: {namespaces: [team-a, team-b]}}]"),
    ("readers", "ALLOW", "- to: [{operation: {methods: [GET, HEAD]}}]"),
]


def policies_yaml(count: int = 10, app: str = "server") -> str:
    docs = []
    for name, action, rules in POLICIES[:count]:
        docs.append(
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
            f"metadata: {{name: {name}, namespace: default}}\n"
            f"spec:\n  selector: {{matchLabels: {{app: {app}}}}}\n  action: {action}\n  rules:\n  {rules}\n"
        )
    return "---\n".join(docs)


def policies(count: int = 10, app: str = "server") -> list[object]:
    loaded = load_text(policies_yaml(count, app), "policies.yaml")
    assert not loaded.errors, loaded.errors
    return list(loaded.resources)
