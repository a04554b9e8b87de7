"""Kiali's Sidecar checks: KIA1004 (egress host unknown), KIA1006 (root sidecar with a selector),
KIA1007 (outboundTrafficPolicy without a mode)."""

from __future__ import annotations

from sandbox.mesh.analysis.context import Context
from sandbox.mesh.analysis.index import ROOT_NAMESPACE


def check_sidecars(ctx: Context) -> None:
    for sc in ctx.state.sidecars:
        spec = sc.spec
        for e, listener in enumerate(spec.egress):
            for h, raw in enumerate(listener.hosts):
                ns, sep, name = raw.partition("/")
                if not sep or not name or name.startswith("*"):
                    continue
                namespace = sc.namespace if ns in (".", "*", "~") else ns
                if not ctx.index.in_registry(ctx.state.resolve(name, namespace)):
                    ctx.report(sc, "KIA1004", f"spec/egress[{e}]/hosts[{h}]")
        if sc.namespace == ROOT_NAMESPACE and spec.workload_selector and spec.workload_selector.labels:
            ctx.report(sc, "KIA1006", "spec/workloadSelector")
        policy = spec.outbound_traffic_policy
        # Kiali cannot tell an unset mode from REGISTRY_ONLY (enum 0); the YAML here can, so only
        # a missing mode is ambiguous.
        if policy is not None and policy.mode is None:
            ctx.report(sc, "KIA1007", "spec/outboundTrafficPolicy")


CHECKERS = (check_sidecars,)
