"""Load balancers: which endpoint a request goes to, checked statistically with a seeded rng."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from sandbox.proxy.balancing import Host as H
from sandbox.proxy.balancing import (
    HostSet,
    LeastRequest,
    Passthrough,
    RandomLB,
    RingHash,
    RoundRobin,
    hash64,
    hash_key,
    make_balancer,
)
from sandbox.proxy.decision import RequestHead
from sandbox.xds.snapshot import ConsistentHash, LoadBalancer


def hosts(n: int) -> list[H]:
    return [H.of(f"10.0.0.{i + 1}", 9080) for i in range(n)]


def head(path: str = "/", **headers: str) -> RequestHead:
    return RequestHead(method="GET", path=path, authority="reviews:9080", headers=headers, port=9080)


def eject(hs: HostSet, *indexes: int) -> None:
    for i in indexes:
        hs.hosts[i].ejected = True
    hs.refresh()


@pytest.mark.parametrize(
    ("policy", "kind"),
    [
        (LoadBalancer(), LeastRequest),
        (LoadBalancer(simple="LEAST_CONN"), LeastRequest),
        (LoadBalancer(simple="UNSPECIFIED"), LeastRequest),
        (LoadBalancer(simple="ROUND_ROBIN"), RoundRobin),
        (LoadBalancer(simple="RANDOM"), RandomLB),
        (LoadBalancer(simple="PASSTHROUGH"), Passthrough),
        (LoadBalancer(consistent_hash=ConsistentHash(use_source_ip=True)), RingHash),
    ],
)
def test_make_balancer_follows_istio_names(policy: LoadBalancer, kind: type) -> None:
    assert isinstance(make_balancer(policy, HostSet(hosts(2)), random.Random(1)), kind)


def test_round_robin_cycles_through_every_healthy_host() -> None:
    hs = HostSet(hosts(3))
    lb = RoundRobin(hs, random.Random(7))
    picks = [lb.pick() for _ in range(9)]
    assert Counter(h.address for h in picks if h) == {h.address: 3 for h in hs.hosts}
    assert picks[0:3] == picks[3:6]  # a fixed cycle


def test_random_is_uniform_within_bounds() -> None:
    hs = HostSet(hosts(4))
    lb = RandomLB(hs, random.Random(42))
    counts = Counter(lb.pick().address for _ in range(8000))  # type: ignore[union-attr]
    assert all(1800 < c < 2200 for c in counts.values()), counts  # 2000 +- ~5 sigma


def test_least_request_prefers_the_less_loaded_host() -> None:
    hs = HostSet(hosts(2))
    busy, idle = hs.hosts
    busy.active_requests = 10
    lb = LeastRequest(hs, random.Random(3))
    counts = Counter(lb.pick() is idle for _ in range(4000))
    # P2C with replacement: the busy host wins only when both draws land on it (p = 1/4).
    assert 900 < counts[False] < 1100, counts


def test_least_request_spreads_evenly_when_loads_are_equal() -> None:
    hs = HostSet(hosts(3))
    lb = LeastRequest(hs, random.Random(5))
    counts = Counter(lb.pick().address for _ in range(6000))  # type: ignore[union-attr]
    assert all(1800 < c < 2200 for c in counts.values()), counts


@pytest.mark.parametrize("simple", ["LEAST_REQUEST", "ROUND_ROBIN", "RANDOM"])
def test_ejected_hosts_are_skipped_and_none_when_all_are_out(simple: str) -> None:
    hs = HostSet(hosts(3))
    lb = make_balancer(LoadBalancer(simple=simple), hs, random.Random(1))
    eject(hs, 0, 2)
    assert {lb.pick().address for _ in range(50)} == {"10.0.0.2:9080"}  # type: ignore[union-attr]
    eject(hs, 1)
    assert lb.pick() is None


def test_panic_threshold_balances_over_all_hosts() -> None:
    # minHealthPercent 50 with 1 of 4 healthy (25%): Envoy panics and uses every host.
    hs = HostSet(hosts(4), panic_threshold=50)
    eject(hs, 0, 1, 2)
    lb = RandomLB(hs, random.Random(2))
    assert len({lb.pick().address for _ in range(200)}) == 4  # type: ignore[union-attr]
    hs.panic_threshold = 0  # Istio's default: no panic; only the healthy host
    assert {lb.pick().address for _ in range(50)} == {"10.0.0.4:9080"}  # type: ignore[union-attr]


def test_no_hosts_at_all_is_none() -> None:
    for simple in ("LEAST_REQUEST", "ROUND_ROBIN", "RANDOM"):
        assert make_balancer(LoadBalancer(simple=simple), HostSet([]), random.Random(1)).pick() is None


def test_passthrough_uses_the_original_destination() -> None:
    lb = Passthrough()
    assert lb.pick_original("10.1.2.3", 8000).address == "10.1.2.3:8000"  # type: ignore[union-attr]
    assert lb.pick(head()).address == "reviews:9080"  # type: ignore[union-attr]
    assert lb.pick_original(None, None) is None
    assert lb.pick_original("::1", 80).address == "[::1]:80"  # type: ignore[union-attr]


def ring(policy: ConsistentHash, n: int = 5, seed: int = 1) -> tuple[HostSet, RingHash]:
    hs = HostSet(hosts(n))
    return hs, RingHash(hs, policy, random.Random(seed))


def test_ring_hash_is_sticky_per_header_value_and_spreads_keys() -> None:
    _hs, lb = ring(ConsistentHash(http_header_name="x-user"))
    first = {u: lb.pick(head(**{"x-user": u})) for u in (f"user{i}" for i in range(2000))}
    for u, h in list(first.items())[:200]:
        assert lb.pick(head(**{"x-user": u})) is h
    counts = Counter(h.address for h in first.values() if h)
    assert len(counts) == 5 and all(250 < c < 550 for c in counts.values()), counts  # 400 each ideally


def test_ring_hash_agrees_across_proxies() -> None:
    # Two client sidecars (separate processes in reality) send a key to the same host.
    _, a = ring(ConsistentHash(use_source_ip=True), seed=1)
    _, b = ring(ConsistentHash(use_source_ip=True), seed=99)
    for ip in ("10.9.0.1", "10.9.0.2", "10.9.0.3"):
        assert a.pick(head(), ip).address == b.pick(head(), ip).address  # type: ignore[union-attr]


def test_ring_hash_ejection_keeps_most_other_keys_in_place() -> None:
    # The ring is rebuilt over the healthy hosts; survivors keep their points (and gain a few more,
    # since each host owns ceil(1024 / n) points), so most keys of healthy hosts stay put.
    hs, lb = ring(ConsistentHash(http_header_name="x-user"))
    keys = [f"k{i}" for i in range(1000)]
    before = {k: lb.pick(head(**{"x-user": k})) for k in keys}
    victim = hs.hosts[2]
    eject(hs, 2)
    after = {k: lb.pick(head(**{"x-user": k})) for k in keys}
    assert all(after[k] is not victim for k in keys)
    others = [k for k in keys if before[k] is not victim]
    stayed = sum(before[k] is after[k] for k in others)
    assert stayed > 0.75 * len(others), (stayed, len(others))


def test_ring_size_follows_minimum_ring_size() -> None:
    _hs, lb = ring(ConsistentHash(http_header_name="x", minimum_ring_size=64), n=3)
    lb.pick(head(x="a"))
    assert len(lb._hashes) == 3 * 22  # ceil(64 / 3) points per host
    _, default = ring(ConsistentHash(http_header_name="x"), n=3)
    default.pick(head(x="a"))
    assert len(default._hashes) == 3 * 342  # ceil(1024 / 3)


def test_missing_hash_key_falls_back_to_random() -> None:
    _, lb = ring(ConsistentHash(http_header_name="x-user"))
    assert len({lb.pick(head()).address for _ in range(200)}) == 5  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("policy", "request_head", "source_ip", "expected"),
    [
        (ConsistentHash(http_header_name="X-User"), head(**{"x-user": "jason"}), "", "jason"),
        (ConsistentHash(http_cookie_name="user"), head(cookie="a=1; user=bob; c=2"), "", "bob"),
        (ConsistentHash(use_source_ip=True), head(), "10.0.0.9", "10.0.0.9"),
        (ConsistentHash(http_query_parameter_name="id"), head("/p?x=1&id=42"), "", "42"),
        (ConsistentHash(http_query_parameter_name="id"), head("/p?x=1"), "", None),
        (ConsistentHash(http_cookie_name="user"), head(), "10.0.0.9", None),  # no ttl: no cookie made
    ],
)
def test_hash_key_sources(policy: ConsistentHash, request_head: RequestHead, source_ip: str, expected: str) -> None:
    key = hash_key(policy, request_head, source_ip)
    assert key.value == expected
    assert key.set_cookie is None


def test_hash_cookie_is_generated_when_absent_and_ttl_is_set() -> None:
    policy = ConsistentHash(http_cookie_name="user", http_cookie_ttl=60.0, http_cookie_path="/")
    _hs, lb = ring(policy)
    pick = lb.pick_with_cookie(head(), "10.0.0.9", "10.0.0.9:40000127.0.0.1:15001")
    assert pick is not None
    value = f"{hash64('10.0.0.9:40000127.0.0.1:15001'):016x}"  # Envoy hashes remote + local address
    assert pick.set_cookie == f'user="{value}"; Max-Age=60; Path=/; HttpOnly'  # Envoy quotes the value
    # The client sends the cookie back (quoted, as set) and keeps its host.
    again = lb.pick_with_cookie(head(cookie=f'user="{value}"'), "10.0.0.77")
    assert again is not None and again.host is pick.host and again.set_cookie is None


def test_a_session_hash_cookie_has_no_max_age() -> None:
    _hs, lb = ring(ConsistentHash(http_cookie_name="user", http_cookie_ttl=0.0))
    pick = lb.pick_with_cookie(head(), "10.0.0.9")
    assert pick is not None and pick.set_cookie is not None
    assert pick.set_cookie.endswith('"; HttpOnly') and "Max-Age" not in pick.set_cookie
