"""Outlier detection with an injected clock: ejection, its growing time, its limits and the return."""

from __future__ import annotations

import pytest

from sandbox.proxy.balancing import Host, HostSet
from sandbox.proxy.outlier import OutlierDetector
from sandbox.xds.snapshot import OutlierDetectionPolicy


def setup(n: int = 3, **policy: object) -> tuple[HostSet, OutlierDetector]:
    hs = HostSet([Host.of(f"10.0.0.{i + 1}", 9080) for i in range(n)])
    return hs, OutlierDetector(OutlierDetectionPolicy(**policy), hs, now=0.0)  # type: ignore[arg-type]


def fail(od: OutlierDetector, host: Host, status: int, times: int, now: float = 0.0) -> None:
    for _ in range(times):
        od.on_response(host, status, now)


def test_five_consecutive_5xx_eject_by_default() -> None:
    hs, od = setup()
    h = hs.hosts[0]
    fail(od, h, 500, 4)
    assert not h.ejected
    fail(od, h, 500, 1)
    assert h.ejected and h.health == "failed_outlier_check"
    assert h not in hs.healthy and od.stats()["ejections_active"] == 1


def test_a_success_resets_the_count() -> None:
    hs, od = setup()
    h = hs.hosts[0]
    fail(od, h, 503, 4)
    od.on_response(h, 200, 0.0)
    fail(od, h, 503, 4)
    assert not h.ejected


@pytest.mark.parametrize(
    ("policy", "statuses", "ejected"),
    [
        ({"consecutive_5xx_errors": 0}, [500] * 20, False),  # 0 disables
        ({"consecutive_5xx_errors": 0, "consecutive_gateway_errors": 2}, [502, 504], True),
        ({"consecutive_5xx_errors": 0, "consecutive_gateway_errors": 2}, [502, 500, 503], False),  # 500 resets
        ({"consecutive_5xx_errors": 0, "consecutive_gateway_errors": 2}, [500, 500, 500], False),
        ({"consecutive_5xx_errors": 3, "consecutive_gateway_errors": 5}, [503, 503, 503], True),  # 5xx first
        ({"consecutive_5xx_errors": 1}, [404], False),
    ],
)
def test_thresholds(policy: dict[str, int], statuses: list[int], ejected: bool) -> None:
    hs, od = setup(**policy)
    for status in statuses:
        od.on_response(hs.hosts[0], status, 0.0)
    assert hs.hosts[0].ejected is ejected


def test_gateway_errors_at_or_above_5xx_threshold_have_no_extra_effect() -> None:
    hs, od = setup(consecutive_5xx_errors=2, consecutive_gateway_errors=3)
    fail(od, hs.hosts[0], 502, 2)
    assert hs.hosts[0].ejected
    assert od.stats()["ejections_detected_consecutive_5xx"] == 1
    assert od.stats()["ejections_detected_consecutive_gateway_failure"] == 0


def test_connect_failures_count_as_gateway_errors() -> None:
    hs, od = setup(consecutive_5xx_errors=0, consecutive_gateway_errors=2)
    od.on_connect_failure(hs.hosts[0], 0.0)
    od.on_connect_failure(hs.hosts[0], 0.0, timeout=True)
    assert hs.hosts[0].ejected


def test_split_local_origin_errors_use_their_own_counter() -> None:
    hs, od = setup(split_external_local_origin_errors=True, consecutive_local_origin_failures=2)
    h = hs.hosts[0]
    fail(od, h, 500, 4)
    od.on_connect_failure(h, 0.0)
    assert not h.ejected  # neither counter reached its threshold
    od.on_connect_failure(h, 0.0)
    assert h.ejected and od.stats()["ejections_detected_consecutive_local_origin_failure"] == 1


def test_max_ejection_percent_always_allows_one_ejection() -> None:
    # Default 10% of 3 hosts is 0.3 hosts, yet Envoy ejects one (0% ejected < 10%), not two.
    hs, od = setup(n=3)
    fail(od, hs.hosts[0], 500, 5)
    fail(od, hs.hosts[1], 500, 5)
    assert hs.hosts[0].ejected and not hs.hosts[1].ejected
    assert od.stats()["ejections_overflow"] == 1


def test_max_ejection_percent_100_can_empty_the_cluster() -> None:
    hs, od = setup(n=2, max_ejection_percent=100)
    for h in hs.hosts:
        fail(od, h, 500, 5)
    assert hs.healthy == []


def test_host_returns_at_the_first_sweep_after_its_time() -> None:
    hs, od = setup(interval=10.0, base_ejection_time=30.0)
    h = hs.hosts[0]
    fail(od, h, 500, 5, now=3.0)
    for now in (10.0, 20.0, 30.0):  # 27 s out at the 30 s sweep: not yet
        od.maybe_sweep(now)
        assert h.ejected
    od.maybe_sweep(35.0)  # no sweep between 30 and 40
    assert h.ejected
    od.maybe_sweep(40.0)
    assert not h.ejected and h in hs.healthy and h.consecutive_5xx == 0
    assert od.stats()["ejections_active"] == 0


def test_ejection_time_grows_with_each_ejection_and_is_capped() -> None:
    hs, od = setup(interval=1.0, base_ejection_time=100.0)
    h = hs.hosts[0]
    durations = []
    now = 0.0
    for _ in range(5):
        fail(od, h, 500, 5, now=now)
        assert h.ejected
        durations.append(od.ejection_time(h))
        start = now
        while h.ejected:
            now += 1.0
            od.maybe_sweep(now)
        assert now - start == durations[-1]
    assert durations == [100.0, 200.0, 300.0, 300.0, 300.0]  # base x count, capped at 300 s
    assert h.times_ejected == 5


def test_ejection_multiplier_decays_while_healthy() -> None:
    hs, od = setup(interval=10.0, base_ejection_time=30.0)
    h = hs.hosts[0]
    fail(od, h, 500, 5, now=0.0)
    od.sweep(30.0)
    assert not h.ejected and h.ejection_backoff == 1
    od.sweep(40.0)  # one healthy sweep later
    assert h.ejection_backoff == 0
    fail(od, h, 500, 5, now=41.0)
    assert od.ejection_time(h) == 30.0


def test_min_health_percent_sets_the_panic_threshold() -> None:
    hs, od = setup(n=2, max_ejection_percent=100, min_health_percent=60)
    fail(od, hs.hosts[0], 500, 5)
    assert hs.usable() == hs.hosts  # 50% healthy < 60%: panic, balance over all


def test_idle_time_counts_every_missed_sweep() -> None:
    # No traffic for 100 s after the host came back: ten sweeps ran (lazily, at the next request),
    # each decaying the backoff, so the next ejection is short again.
    hs, od = setup(interval=10.0, base_ejection_time=30.0)
    h = hs.hosts[0]
    fail(od, h, 500, 5, now=0.0)
    fail(od, h, 500, 5, now=0.0)  # ignored while ejected
    od.maybe_sweep(30.0)
    fail(od, h, 500, 5, now=31.0)  # ejected again at once: 2 x 30 s
    assert od.ejection_time(h) == 60.0
    od.maybe_sweep(200.0)  # back at the 100 s sweep; the sweeps 110..200 decay the backoff
    assert not h.ejected and h.ejection_backoff == 0
    fail(od, h, 500, 5, now=201.0)
    assert od.ejection_time(h) == 30.0


def test_a_late_sweep_returns_hosts_whose_time_passed_in_between() -> None:
    hs, od = setup(n=10, interval=10.0, base_ejection_time=30.0, max_ejection_percent=100)
    a, b = hs.hosts[0], hs.hosts[1]
    fail(od, a, 500, 5, now=0.0)  # back at the 30 s sweep
    fail(od, b, 500, 5, now=25.0)  # back at the 60 s sweep
    od.maybe_sweep(45.0)
    assert not a.ejected and b.ejected
    od.maybe_sweep(59.9)
    assert b.ejected
    od.maybe_sweep(60.0)
    assert not b.ejected and od.stats()["ejections_active"] == 0
