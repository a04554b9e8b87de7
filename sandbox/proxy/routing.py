"""route(head, snapshot, rng) -> RouteDecision: Istio's HTTP routing, pure and precompiled."""

from __future__ import annotations

from sandbox.proxy.decision import DecisionKind, RequestHead, RouteDecision

__all__ = ["DecisionKind", "RequestHead", "RouteDecision"]
