"""Each step's traffic and the outcome it must show: the step's rules are in force (the runner
applied them and every sidecar ACKed), these functions send what a presenter would send and say
what came back. `--auto` fails a step whose outcome is not what Istio's task describes.

Ratios are checked within four binomial standard deviations, so a correct mesh fails less than
once in ten thousand runs; times against the explanation of the task (a 7 s delay on ratings,
productpage giving up after 3 s and trying once more).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sandbox.workshop.traffic import DETAILS_ERROR, REVIEWS_ERROR, Reader, load, reviews_shown, shares

if TYPE_CHECKING:
    from sandbox.testing.mesh import Mesh


@dataclass(frozen=True)
class Outcome:
    ok: bool
    summary: str  # what the traffic showed, for the audience


@dataclass
class Stage:
    """What a step's check can use: the meshes by sample name, and what the runner saw."""

    meshes: Callable[[str], Mesh]
    refusals: list[str] = field(default_factory=list)  # the diagnostics of rules the mesh refused
    before: str = ""  # `sandbox get vs,dr -o yaml` before the step's rules (the validation step)


Check = Callable[[Stage], Outcome]


def within(seen: int, total: int, share: float, sds: float = 4.0) -> bool:
    """`seen` of `total` is what a binomial(total, share) gives, within `sds` standard deviations."""
    spread = sds * math.sqrt(total * share * (1 - share))
    return abs(seen - total * share) <= spread


def _reader(stage: Stage, user: str | None = None) -> Reader:
    return Reader(stage.meshes("bookinfo").ingress, user)


# -- Bookinfo ------------------------------------------------------------------------------------
def every_version_answers(stage: Stage) -> Outcome:
    seen, _ = _reader(stage).pages(30)
    synced = stage.meshes("bookinfo").proxy_status().states
    states = sorted(set(synced.values()))
    ok = set(seen) == {"none", "black", "red"} and states == ["SYNCED"]
    # three versions a third of the time each: P(one never shows in 30) < 1e-5
    return Outcome(ok, f"30 pages: {shares(seen)}; {len(synced)} sidecars, all {', '.join(states)}")


def only_v1(stage: Stage) -> Outcome:
    seen, _ = _reader(stage).pages(20)
    return Outcome(seen == {"none": 20}, f"20 pages: {shares(seen)}")


def split(shown: str, share: float) -> Check:
    def check(stage: Stage) -> Outcome:
        seen, _ = _reader(stage).pages(100)
        ok = set(seen) <= {"none", shown} and within(seen[shown], 100, share)
        return Outcome(ok, f"100 pages: {shares(seen)} (expected about {share:.0%} {shown})")

    check.__name__ = f"split_{shown}"
    return check


def jason_sees_black_stars(stage: Stage) -> Outcome:
    jason, _ = _reader(stage, "jason").pages(10)
    anonymous, _ = _reader(stage).pages(10)
    ok = jason == {"black": 10} and anonymous == {"none": 10}
    return Outcome(ok, f"jason, 10 pages: {shares(jason)}; not signed in, 10 pages: {shares(anonymous)}")


def v2_gets_a_copy(stage: Stage) -> Outcome:
    mesh = stage.meshes("bookinfo")
    before = _shadow_lines(mesh)
    seen, _ = _reader(stage).pages(10)
    try:
        copies = mesh.eventually(lambda: (n := _shadow_lines(mesh) - before) >= 10 and n, timeout=10)
    except AssertionError:
        copies = _shadow_lines(mesh) - before
    ok = seen == {"none": 10} and copies >= 10
    return Outcome(ok, f"10 pages: {shares(seen)}; reviews-v2's sidecar logged {copies} mirrored requests")


def _shadow_lines(mesh: Mesh) -> int:
    return sum('"reviews-shadow:9080"' in line for line in mesh.logs("reviews-v2", proxy=True))


def delay_breaks_jasons_reviews(stage: Stage) -> Outcome:
    page = _reader(stage, "jason").page()
    other = _reader(stage).page()
    ok = page.status == 200 and page.shown == "reviews-error" and page.elapsed >= 5.5 and other.elapsed < 2.5
    return Outcome(
        ok,
        f"jason's page took {page.elapsed:.1f} s and shows: {_said(page.html)}; "
        f"a reader not signed in: {other.elapsed:.1f} s, reviews {other.shown}",
    )


def abort_shows_ratings_unavailable(stage: Stage) -> Outcome:
    page = _reader(stage, "jason").page()
    other = _reader(stage).page()
    ok = page.status == 200 and page.shown == "ratings-error" and page.elapsed < 2.5 and other.shown == "none"
    return Outcome(
        ok, f"jason's page took {page.elapsed:.1f} s: {_said(page.html)}; a reader not signed in: reviews {other.shown}"
    )


def _said(html: str) -> str:
    shown = reviews_shown(html)
    return {
        "reviews-error": f'"{REVIEWS_ERROR}"',
        "ratings-error": '"Ratings service is currently unavailable"',
    }.get(shown, f"reviews {shown}")


def invalid_rule_refused(stage: Stage) -> Outcome:
    after = _rules(stage.meshes("bookinfo"))
    ok = bool(stage.refusals) and "KIA1107" in stage.refusals[0] and after == stage.before
    first = stage.refusals[0].splitlines()[-1].strip() if stage.refusals else "it was applied"
    return Outcome(ok, f"refused: {first}; the rules in force did not change" if ok else f"not refused: {first}")


def _rules(mesh: Mesh) -> str:
    return mesh.get("vs") + "\n" + mesh.get("dr")


def a_trace_crosses_the_services(stage: Stage) -> Outcome:
    mesh = stage.meshes("bookinfo")
    if not mesh.record.urls.get("tracing"):
        return Outcome(True, "this mesh collects no traces (no console): skipped")
    reader = _reader(stage)
    for _ in range(3):
        reader.page()
    wanted = {"istio-ingressgateway.istio-system", "productpage.default", "details.default", "reviews.default"}

    def crossing() -> set[str] | None:
        for trace in mesh.traces("productpage"):
            services = {p["serviceName"] for p in trace["processes"].values()}
            if wanted <= services:
                return services
        return None

    try:
        services = mesh.eventually(crossing, timeout=15, interval=0.5)
    except AssertionError:
        return Outcome(False, f"no trace of productpage crosses {', '.join(sorted(wanted))}")
    return Outcome(True, f"one request, one trace through {', '.join(sorted(services))}")


def requests_are_counted(stage: Stage) -> Outcome:
    mesh = stage.meshes("bookinfo")
    query = 'sum(istio_requests_total{reporter="destination",destination_workload="productpage-v1"})'
    prometheus = bool(mesh.record.urls.get("prometheus"))
    before = _count(mesh, query) if prometheus else 0.0
    codes = load(f"{mesh.ingress}/productpage", 100, connections=2)
    summary = f"sandbox load, 100 calls: {', '.join(f'{n} x {c}' for c, n in sorted(codes.items()))}"
    if not prometheus:
        return Outcome(codes == {"200": 100}, summary + " (no Prometheus: not counted there)")
    try:
        counted = mesh.eventually(lambda: (n := _count(mesh, query) - before) >= 100 and n, timeout=20, interval=1)
    except AssertionError:
        counted = _count(mesh, query) - before
    return Outcome(codes == {"200": 100} and counted >= 100, f"{summary}; Prometheus counted {counted:g} more")


def _count(mesh: Mesh, query: str) -> float:
    return sum(s.value for s in mesh.metrics(query))


# -- httpbin -------------------------------------------------------------------------------------
def breaker_trips(stage: Stage) -> Outcome:
    mesh = stage.meshes("httpbin")
    one = load(f"{mesh.ingress}/get", 5, connections=1)
    three = load(f"{mesh.ingress}/get", 30, connections=3)
    overflowed = mesh.eventually(lambda: _flagged(mesh, "UO"), timeout=5) if "503" in three else 0
    ok = one == {"200": 5} and set(three) <= {"200", "503"} and three.get("503", 0) >= 1 and overflowed >= 1
    return Outcome(
        ok,
        f"one connection: {_codes(one)}; three: {_codes(three)}; "
        f"the gateway's access log has {overflowed} 503 UO (upstream overflow)",
    )


def _codes(codes: dict[str, int]) -> str:
    return ", ".join(f"{n} x {c}" for c, n in sorted(codes.items()))


def _flagged(mesh: Mesh, flag: str) -> int:
    return sum(f" 503 {flag} " in line for line in mesh.logs("istio-ingressgateway", proxy=True))


def outliers_ejected(stage: Stage) -> Outcome:
    mesh = stage.meshes("httpbin")
    failing = load(f"{mesh.ingress}/status/503", 4, connections=1)
    ejected = _ejected(mesh)
    after = mesh.request("GET", f"{mesh.ingress}/get")
    ok = failing == {"503": 4} and len(ejected) >= 1
    detail = f"now /get answers {after.status}" + (
        " (no healthy upstream: every endpoint is out)" if after.status == 503 else ""
    )
    return Outcome(ok, f"4 calls to /status/503; ejected by the gateway: {', '.join(ejected) or 'none'}; {detail}")


def _ejected(mesh: Mesh) -> list[str]:
    """The httpbin endpoints the ingress gateway's outlier detection has ejected (its /clusters)."""
    from sandbox.operator.client import get_json

    admin = next(p.admin for p in mesh.record.proxies if p.workload == "istio-ingressgateway")
    data: dict[str, Any] = get_json(admin, "/clusters", {"format": "json"})
    found = []
    for cluster in data.get("cluster_statuses", []):
        if "httpbin" not in cluster.get("name", ""):
            continue
        for host in cluster.get("host_statuses", []):
            if host.get("health_status", {}).get("failed_outlier_check"):
                address = host["address"]["socket_address"]
                found.append(host.get("workload") or f"{address['address']}:{address['port_value']}")
    return found


# -- security (shown only where the mesh enforces it; steps.ENFORCED) ---------------------------
def plaintext_refused(stage: Stage) -> Outcome:
    mesh = stage.meshes("bookinfo")
    through = _reader(stage).page()
    endpoints = mesh.project.state_dir / "local" / "endpoints.json"
    if not endpoints.is_file():
        return Outcome(
            through.status == 200, f"through the ingress: {through.status} (direct check: local runtime only)"
        )
    inbound = json.loads(endpoints.read_text())["productpage-v1"][0]
    try:
        direct = mesh.request("GET", f"http://{inbound}/productpage", timeout=5).status
        said = f"HTTP {direct}"
    except Exception as exc:  # refused at the TLS layer: no HTTP answer at all
        direct, said = 0, f"refused ({exc})"
    ok = through.status == 200 and direct == 0
    return Outcome(
        ok, f"through the ingress (mTLS between sidecars): {through.status}; plaintext to productpage: {said}"
    )


def policy_lets_only_productpage_through(stage: Stage) -> Outcome:
    page = _reader(stage).page()
    ok = page.status == 200 and DETAILS_ERROR in page.html and page.shown == "reviews-error"
    return Outcome(ok, f"productpage {page.status}; details and reviews refused it: {_said(page.html)}")
