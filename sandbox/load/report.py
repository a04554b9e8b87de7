"""A LoadResult as fortio prints it (text) or as fortio's JSON keys (`--output json`). Pure."""

from __future__ import annotations

from typing import Any

from sandbox.load.plan import LoadPlan
from sandbox.load.stats import ERROR_CODE, LoadResult


def _g(value: float) -> str:
    return f"{value:.6g}"


def _seconds(value: float) -> str:
    return f"{value * 1000:.3f}ms" if value < 1 else f"{value:.3f}s"


def _rate(qps: float) -> str:
    return "max" if qps <= 0 else f"{qps:g}"


def starting_line(plan: LoadPlan) -> str:
    """fortio's first line, printed before the run."""
    rate = "max qps" if plan.qps <= 0 else f"{plan.qps:g} qps"
    length = f"exactly {plan.requests} calls" if plan.requests is not None else f"{plan.run_for:g}s"
    via = f" through proxy {plan.proxy}" if plan.proxy else ""
    return f"Starting at {rate} with {plan.connections} connection(s) for {length}: GET {plan.url}{via}"


def text(result: LoadResult) -> str:
    lat = result.latency
    lines = [
        f"Ended after {_seconds(result.elapsed)} : {result.calls} calls. qps={result.actual_qps:.5g}",
        f"Aggregated Function Time : count {lat.count} avg {_g(lat.avg)} +/- {_g(lat.stddev)} "
        f"min {_g(lat.min)} max {_g(lat.max)} sum {_g(lat.sum)}",
        "# range, mid point, percentile, count",
    ]
    for i, b in enumerate(lat.buckets):
        opening = ">=" if i == 0 else ">"
        lines.append(
            f"{opening} {_g(b.start)} <= {_g(b.end)} , {_g((b.start + b.end) / 2)} , {b.percent:.2f}, {b.count}"
        )
    lines.extend(f"# target {p:g}% {_g(v)}" for p, v in lat.percentiles)
    lines.append(f"Sockets used: {result.sockets} (for perfect keepalive, would be {result.connections})")
    for code, count in result.codes.items():
        lines.append(f"Code {code} : {count} ({result.share(code):.1f} %)")
    if result.errors:
        lines.append("Errors (code -1): " + ", ".join(f"{why}: {n}" for why, n in result.errors.items()))
    lines.append(f"All done {result.calls} calls {lat.avg * 1000:.3f} ms avg, {result.actual_qps:.1f} qps")
    return "\n".join(lines)


def to_json(result: LoadResult) -> dict[str, Any]:
    """fortio's result keys (RetCodes, DurationHistogram, ActualQPS...), so its consumers can read it."""
    lat = result.latency
    return {
        "RunType": "HTTP",
        "URL": result.url,
        "Proxy": result.proxy,
        "RequestedQPS": _rate(result.qps),
        "RequestedDuration": f"exactly {result.requests} calls" if result.requests else f"{result.duration or 0:g}s",
        "Exactly": result.requests or 0,
        "NumThreads": result.connections,
        "ActualQPS": result.actual_qps,
        "ActualDuration": round(result.elapsed * 1e9),
        "DurationHistogram": {
            "Count": lat.count,
            "Min": lat.min,
            "Max": lat.max,
            "Sum": lat.sum,
            "Avg": lat.avg,
            "StdDev": lat.stddev,
            "Data": [{"Start": b.start, "End": b.end, "Percent": b.percent, "Count": b.count} for b in lat.buckets],
            "Percentiles": [{"Percentile": p, "Value": v} for p, v in lat.percentiles],
        },
        "RetCodes": {str(code): count for code, count in result.codes.items()},
        "ErrorCount": result.codes.get(ERROR_CODE, 0),
        "Errors": dict(result.errors),
        "SocketCount": result.sockets,
        "HeaderBytes": result.header_bytes,
        "BodyBytes": result.body_bytes,
    }
