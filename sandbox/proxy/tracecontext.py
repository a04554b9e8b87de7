"""Trace context: x-request-id, B3 and W3C traceparent, created or propagated as Envoy does.

- x-request-id: kept when the request has one, else a new UUID v4 (Envoy's generate_request_id).
- Incoming context: B3 multi headers (x-b3-traceid 16 or 32 hex, x-b3-spanid, x-b3-parentspanid,
  x-b3-sampled 1/0/true/false, x-b3-flags 1 = debug), else the single `b3` header, else W3C
  `traceparent` (00-<32 hex>-<16 hex>-<flags>). Malformed values are ignored, never an error.
- Outbound (client side): a CLIENT span, a child of the incoming span (or a new trace).
- Inbound (server side): Envoy's Zipkin tracer shares the client's span context
  (`shared_span_context`, default true): the SERVER span reuses the incoming span and parent ids.
  With no incoming context it starts a new trace.
- Sampling follows an incoming decision; otherwise `sampling` percent (100 in a sandbox).
- Injected upstream: x-b3-traceid, x-b3-spanid, x-b3-parentspanid, x-b3-sampled and traceparent
  (tracestate passes through untouched).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

_HEX = frozenset("0123456789abcdef")
_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}
B3_HEADERS = ("x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid", "x-b3-sampled", "x-b3-flags")


@dataclass(slots=True, init=False)
class TraceContext:
    trace_id: str  # 32 hex (a 64-bit B3 id is kept as sent, 16 hex)
    span_id: str  # 16 hex
    parent_id: str | None
    sampled: bool
    kind: str  # CLIENT (outbound) | SERVER (inbound)
    shared: bool  # a SERVER span sharing the client's span id (Zipkin "shared")

    def __init__(  # written out: mypyc compiles it (one per request), not the one @dataclass makes
        self, trace_id: str, span_id: str, parent_id: str | None, sampled: bool, kind: str, shared: bool = False
    ) -> None:
        self.trace_id = trace_id
        self.span_id = span_id
        self.parent_id = parent_id
        self.sampled = sampled
        self.kind = kind
        self.shared = shared

    def headers(self) -> list[tuple[str, str]]:
        """The headers to send upstream (or to the app, inbound)."""
        sampled = "1" if self.sampled else "0"
        out = [("x-b3-traceid", self.trace_id), ("x-b3-spanid", self.span_id)]
        if self.parent_id:
            out.append(("x-b3-parentspanid", self.parent_id))
        out.append(("x-b3-sampled", sampled))
        out.append(("traceparent", f"00-{self.trace_id.rjust(32, '0')}-{self.span_id}-0{sampled}"))
        return out

    def header_lines(self) -> str:
        """`headers()` as HTTP/1.1 header lines, in one string (the data path's form)."""
        trace_id, span_id = self.trace_id, self.span_id
        sampled = "1" if self.sampled else "0"
        parent = f"x-b3-parentspanid: {self.parent_id}\r\n" if self.parent_id else ""
        return (
            f"x-b3-traceid: {trace_id}\r\nx-b3-spanid: {span_id}\r\n{parent}x-b3-sampled: {sampled}\r\n"
            f"traceparent: 00-{trace_id.rjust(32, '0')}-{span_id}-0{sampled}\r\n"
        )


_ID = (16, 32)  # trace id lengths (64- or 128-bit)
_SPAN = (16,)


def _hex(value: str | None, lengths: tuple[int, ...]) -> str | None:
    if value is None:
        return None
    if len(value) not in lengths or not _HEX.issuperset(value):  # ids usually arrive clean: skip the copies
        value = value.strip().lower()
        if len(value) not in lengths or not _HEX.issuperset(value):
            return None
    return value if value.strip("0") else None


def _sampled(value: str | None) -> bool | None:
    if value is None:
        return None
    if value == "1":
        return True
    v = value.strip().lower()
    if v in ("1", "true", "d"):
        return True
    if v in ("0", "false"):
        return False
    return None


@dataclass(slots=True)
class Incoming:  # treat as immutable (not frozen: built per request, and frozen __init__ is ~3 us)
    trace_id: str
    span_id: str | None
    parent_id: str | None
    sampled: bool | None


def extract(headers: dict[str, str]) -> Incoming | None:
    """The trace context a request carries, or None (header names are lowercase)."""
    trace_id = _hex(headers.get("x-b3-traceid"), _ID)
    if trace_id is not None:
        sampled = _sampled(headers.get("x-b3-sampled"))
        if headers.get("x-b3-flags", "").strip() == "1":
            sampled = True
        return Incoming(
            trace_id,
            _hex(headers.get("x-b3-spanid"), _SPAN),
            _hex(headers.get("x-b3-parentspanid"), _SPAN),
            sampled,
        )
    single = headers.get("b3")
    if single:
        parts = single.strip().split("-")
        if len(parts) == 1:
            return None  # sampling-only form ("0", "1", "d"): no context to continue
        trace_id = _hex(parts[0], _ID)
        if trace_id is not None and len(parts) >= 2:
            sampled = _sampled(parts[2]) if len(parts) >= 3 else None
            parent = _hex(parts[3], _SPAN) if len(parts) >= 4 else None
            return Incoming(trace_id, _hex(parts[1], _SPAN), parent, sampled)
    parent_header = headers.get("traceparent")
    if parent_header:
        parts = parent_header.strip().lower().split("-")
        if len(parts) >= 4 and parts[0] != "ff" and len(parts[0]) == 2:
            trace_id, span_id, flags = _hex(parts[1], (32,)), _hex(parts[2], _SPAN), parts[3]
            if trace_id and span_id and len(flags) == 2 and _HEX.issuperset(flags):
                return Incoming(trace_id, span_id, None, bool(int(flags, 16) & 1))
    return None


_BIT_192 = 1 << 192
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16


class TraceIds:
    """Id generation and the sampling decision, with an injected rng."""

    __slots__ = ("_bits", "_rand", "sampling")

    def __init__(self, rng: random.Random | None = None, sampling: float = 100.0) -> None:
        rng = rng or random.Random()
        self._bits = rng.getrandbits
        self._rand = rng.random
        self.sampling = sampling  # percent, as Istio's pilot.traceSampling

    def span_id(self) -> str:
        return (self._bits(64) or 1).to_bytes(8, "big").hex()

    def trace_id(self) -> str:
        return (self._bits(128) or 1).to_bytes(16, "big").hex()

    def request_id(self) -> str:
        """A random UUID v4 string (version nibble 4, variant bits 10)."""
        h = self._bits(128).to_bytes(16, "big").hex()
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"

    def sample(self) -> bool:
        s = self.sampling
        return s >= 100.0 or (s > 0.0 and self._rand() * 100.0 < s)

    def outbound(self, headers: dict[str, str]) -> TraceContext:
        if "x-b3-traceid" in headers or "b3" in headers or "traceparent" in headers:
            incoming = extract(headers)
            if incoming is not None:
                sampled = incoming.sampled if incoming.sampled is not None else self.sample()
                return TraceContext(incoming.trace_id, self.span_id(), incoming.span_id, sampled, "CLIENT")
        # No context (the usual case for an app's request): a new trace, both ids from one draw.
        ids = hex(self._bits(192) | _BIT_192)[3:]  # 48 hex digits; hex() is the cheapest formatter compiled
        trace_id, span_id = ids[:32], ids[32:]
        if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:  # all-zero ids are invalid (W3C, B3)
            trace_id, span_id = self.trace_id(), self.span_id()
        return TraceContext(trace_id, span_id, None, self.sampling >= 100.0 or self.sample(), "CLIENT")

    def inbound(self, headers: dict[str, str]) -> TraceContext:
        incoming = extract(headers)
        if incoming is None or incoming.span_id is None:
            trace_id = incoming.trace_id if incoming else self.trace_id()
            sampled = incoming.sampled if incoming and incoming.sampled is not None else self.sample()
            return TraceContext(trace_id, self.span_id(), None, sampled, "SERVER")
        sampled = incoming.sampled if incoming.sampled is not None else self.sample()
        return TraceContext(incoming.trace_id, incoming.span_id, incoming.parent_id, sampled, "SERVER", shared=True)
