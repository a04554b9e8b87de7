"""Load balancers with Envoy's semantics, as Istio configures them (DestinationRule `loadBalancer`).

- LEAST_REQUEST (Istio's default, also for UNSPECIFIED and the deprecated LEAST_CONN): Envoy's
  power of two choices: draw two hosts at random (with replacement) and take the one with fewer
  active requests, the first on a tie.
- ROUND_ROBIN: start at a random offset (as each Envoy worker does), then cycle.
- RANDOM: uniform over the healthy hosts.
- PASSTHROUGH: Envoy's ORIGINAL_DST cluster: the request's original destination, no host set.
- consistentHash: a ring (ringHash, minimumRingSize default 1024; maglev is mapped to the same ring)
  keyed by a header, a cookie, the source IP or a query parameter. A request without a key gets a
  random host, as in Envoy. Cookie keys: when the cookie is absent and `ttl` is set, Envoy's router
  generates one from the downstream connection's addresses and sets it on the response;
  `RingHash.pick_with_cookie` returns that `Set-Cookie` value (`name="<16 hex>"`, `Max-Age`=ttl
  unless 0, `Path`, HttpOnly, as Envoy's makeSetCookieValue writes it) for the data path to add.
  Without `ttl` no cookie is made and the pick is random, as in Envoy.

Ejected hosts (`failed_outlier_check`) are skipped; `pick()` returns None when nothing is healthy and
the data path answers 503 UH. With `minHealthPercent` > 0, a cluster whose healthy share falls below
it "panics" and balances over all hosts, which is Envoy's healthy_panic_threshold that Istio sets.
Hot paths only index lists: the healthy list is rebuilt on (rare) ejections, not per pick.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import parse_qsl

from sandbox.proxy.decision import RequestHead
from sandbox.xds.snapshot import ConsistentHash, Endpoint, LoadBalancer

MIN_RING_SIZE_DEFAULT = 1024  # Istio ringHash.minimumRingSize default
MAX_RING_SIZE = 8 * 1024 * 1024  # Envoy's maximum_ring_size default


@dataclass(slots=True, eq=False)
class Host:
    """One endpoint of a cluster with the live state the balancer, breaker and detector share."""

    address: str  # "ip:port", Envoy's host address string
    ip: str  # an IP, or a host name for PASSTHROUGH by authority
    port: int
    endpoint: Endpoint | None = None  # None for PASSTHROUGH's original destinations
    weight: int = 1
    active_requests: int = 0
    # Outlier detection state (written by outlier.OutlierDetector).
    ejected: bool = False
    consecutive_5xx: int = 0
    consecutive_gateway: int = 0
    consecutive_local: int = 0
    ejection_backoff: int = 0  # Envoy's ejectTimeBackoff: the multiplier of baseEjectionTime
    times_ejected: int = 0
    last_ejection: float = 0.0
    # Envoy's per-host stats, as /clusters shows them.
    rq_total: int = 0
    rq_success: int = 0
    rq_error: int = 0
    cx_connect_fail: int = 0

    @classmethod
    def of(cls, ip: str, port: int, endpoint: Endpoint | None = None) -> Host:
        address = f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
        return cls(address=address, ip=ip, port=port, endpoint=endpoint)

    @classmethod
    def from_endpoint(cls, endpoint: Endpoint) -> Host:
        return cls.of(endpoint.host.strip("[]"), endpoint.port, endpoint)

    @property
    def health(self) -> str:
        return "failed_outlier_check" if self.ejected else "healthy"


class HostSet:
    """The hosts of one cluster and the healthy subset, versioned so rings rebuild only on change."""

    __slots__ = ("healthy", "hosts", "panic_threshold", "version")

    def __init__(self, hosts: Sequence[Host], panic_threshold: float = 0.0) -> None:
        self.hosts: tuple[Host, ...] = tuple(hosts)
        self.panic_threshold = panic_threshold  # percent; 0 disables panic mode (Istio's default)
        self.healthy: list[Host] = []
        self.version = 0
        self.refresh()

    def refresh(self) -> None:
        """Recompute the healthy list; called after an ejection or a return to service."""
        self.healthy = [h for h in self.hosts if not h.ejected]
        self.version += 1

    def usable(self) -> list[Host] | tuple[Host, ...]:
        """The hosts to balance over: the healthy ones, or all of them in panic mode."""
        healthy = self.healthy
        if self.panic_threshold > 0 and self.hosts and len(healthy) * 100 < self.panic_threshold * len(self.hosts):
            return self.hosts
        return healthy


@dataclass(frozen=True, slots=True)
class Pick:
    host: Host
    set_cookie: str | None = None  # a generated hash cookie the response must carry


class Balancer:
    """A base class, not a Protocol: compiled, `cluster.balancer.pick()` is then a direct call."""

    __slots__ = ()

    def pick(self, request: RequestHead | None = None, source_ip: str = "") -> Host | None:
        raise NotImplementedError


class LeastRequest(Balancer):
    __slots__ = ("_hosts", "_rand")

    def __init__(self, hosts: HostSet, rng: random.Random) -> None:
        self._hosts = hosts
        self._rand = rng.random

    def pick(self, request: RequestHead | None = None, source_ip: str = "") -> Host | None:
        hs = self._hosts
        usable = hs.usable() if hs.panic_threshold else hs.healthy
        n = len(usable)
        if n == 0:
            return None
        if n == 1:
            return usable[0]
        rand = self._rand
        first = usable[int(rand() * n)]
        second = usable[int(rand() * n)]
        return second if second.active_requests < first.active_requests else first


class RoundRobin(Balancer):
    __slots__ = ("_hosts", "_next")

    def __init__(self, hosts: HostSet, rng: random.Random) -> None:
        self._hosts = hosts
        self._next = rng.randrange(1 << 16)

    def pick(self, request: RequestHead | None = None, source_ip: str = "") -> Host | None:
        hs = self._hosts
        usable = hs.usable() if hs.panic_threshold else hs.healthy
        if not usable:
            return None
        index = self._next % len(usable)
        self._next = index + 1
        return usable[index]


class RandomLB(Balancer):
    __slots__ = ("_hosts", "_rand")

    def __init__(self, hosts: HostSet, rng: random.Random) -> None:
        self._hosts = hosts
        self._rand = rng.random

    def pick(self, request: RequestHead | None = None, source_ip: str = "") -> Host | None:
        hs = self._hosts
        usable = hs.usable() if hs.panic_threshold else hs.healthy
        if not usable:
            return None
        return usable[int(self._rand() * len(usable))]


class Passthrough(Balancer):
    """ORIGINAL_DST: connect where the request was going. There is no host set: the target is the
    original destination (SO_ORIGINAL_DST) when the data path has it, else the request's authority."""

    __slots__ = ("_cache",)

    def __init__(self) -> None:
        self._cache: dict[tuple[str, int], Host] = {}

    def pick_original(self, ip: str | None, port: int | None) -> Host | None:
        if not ip or not port:
            return None
        key = (ip, port)
        host = self._cache.get(key)
        if host is None:
            if len(self._cache) > 4096:  # bound the cache: original destinations are open-ended
                self._cache.clear()
            host = self._cache[key] = Host.of(ip, port)
        return host

    def pick(self, request: RequestHead | None = None, source_ip: str = "") -> Host | None:
        if request is None:
            return None
        name, sep, port = request.authority.rpartition(":")
        if sep and port.isdigit():
            return self.pick_original(name.strip("[]"), int(port))
        return self.pick_original(request.authority, request.port)


def hash64(text: str) -> int:
    """A stable 64-bit hash (stable across processes, unlike hash(), so replicas agree)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def _cookie(header: str | None, name: str) -> str | None:
    if not header:
        return None
    for part in header.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name:
            return value.strip('"')
    return None


def _query_param(path: str, name: str) -> str | None:
    _, sep, query = path.partition("?")
    if not sep:
        return None
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key == name:
            return value
    return None


@dataclass(frozen=True, slots=True)
class HashKey:
    value: str | None
    set_cookie: str | None = None


def hash_key(policy: ConsistentHash, request: RequestHead, source_ip: str, connection: str = "") -> HashKey:
    """The hash input of a request under Istio's consistentHash keys (None: no key, random pick).

    `connection` is the downstream connection's remote then local address (`ip:port` each), which
    Envoy hashes for a generated cookie: one value per connection (the client's IP without it)."""
    if policy.http_header_name:
        return HashKey(request.headers.get(policy.http_header_name.lower()))
    if policy.http_cookie_name:
        name = policy.http_cookie_name
        value = _cookie(request.headers.get("cookie"), name)
        if value is not None:
            return HashKey(value)
        if policy.http_cookie_ttl is None:
            return HashKey(None)
        # Envoy's router generates the cookie from the connection's addresses; the client sends it back
        # and keeps its host (the generated value is this request's key too).
        value = f"{hash64(connection or source_ip):016x}"
        attrs = [f'{name}="{value}"']
        if policy.http_cookie_ttl > 0:
            attrs.append(f"Max-Age={int(policy.http_cookie_ttl)}")
        if policy.http_cookie_path:
            attrs.append(f"Path={policy.http_cookie_path}")
        attrs.append("HttpOnly")
        return HashKey(value, "; ".join(attrs))
    if policy.use_source_ip:
        return HashKey(source_ip or None)
    if policy.http_query_parameter_name:
        return HashKey(_query_param(request.path, policy.http_query_parameter_name))
    return HashKey(None)


class RingHash(Balancer):
    """Envoy's ring hash: each host owns ceil(ring_size x weight / total) points, hashed from
    `<address>_<i>`; a key belongs to the first point at or after its hash (wrapping around)."""

    __slots__ = ("_built", "_cache", "_hashes", "_header", "_hosts", "_owners", "_policy", "_rand", "min_ring_size")

    def __init__(self, hosts: HostSet, policy: ConsistentHash, rng: random.Random) -> None:
        self._hosts = hosts
        self._policy = policy
        self._rand = rng.random
        self.min_ring_size = min(max(1, policy.minimum_ring_size or MIN_RING_SIZE_DEFAULT), MAX_RING_SIZE)
        self._built = -1
        self._hashes: list[int] = []
        self._owners: list[Host] = []
        self._header = policy.http_header_name.lower() if policy.http_header_name else None
        self._cache: dict[str, int] = {}  # key -> hash: keys (users, client IPs) repeat

    def _build(self, usable: Sequence[Host]) -> None:
        total = sum(h.weight for h in usable)
        points: list[tuple[int, int]] = []
        for index, host in enumerate(usable):
            replicas = max(1, math.ceil(self.min_ring_size * host.weight / total))
            points.extend((hash64(f"{host.address}_{i}"), index) for i in range(replicas))
        points.sort()
        self._hashes = [p[0] for p in points]
        self._owners = [usable[p[1]] for p in points]
        self._built = self._hosts.version

    def pick_hash(self, key: str | None) -> Host | None:
        hs = self._hosts
        usable = hs.usable() if hs.panic_threshold else hs.healthy
        if not usable:
            return None
        if key is None:
            return usable[int(self._rand() * len(usable))]
        if self._built != self._hosts.version or len(self._owners) == 0:
            self._build(usable)
        h = self._cache.get(key)
        if h is None:
            if len(self._cache) >= 8192:
                self._cache.clear()
            h = self._cache[key] = hash64(key)
        i = bisect.bisect_left(self._hashes, h)
        return self._owners[i if i < len(self._owners) else 0]

    @property
    def makes_cookies(self) -> bool:
        """True when a request without the hash cookie gets one generated (httpCookie with a ttl)."""
        return self._policy.http_cookie_name is not None and self._policy.http_cookie_ttl is not None

    def pick_with_cookie(self, request: RequestHead, source_ip: str = "", connection: str = "") -> Pick | None:
        """Like pick(), with the Set-Cookie value when a hash cookie had to be generated."""
        key = hash_key(self._policy, request, source_ip, connection)
        host = self.pick_hash(key.value)
        return None if host is None else Pick(host, key.set_cookie)

    def pick(self, request: RequestHead | None = None, source_ip: str = "") -> Host | None:
        if request is None:
            return self.pick_hash(None)
        if self._header is not None:  # the common case, without building a HashKey
            return self.pick_hash(request.headers.get(self._header))
        return self.pick_hash(hash_key(self._policy, request, source_ip).value)


def make_balancer(policy: LoadBalancer, hosts: HostSet, rng: random.Random) -> Balancer:
    """The balancer a cluster's resolved `loadBalancer` asks for (LEAST_REQUEST unless told otherwise;
    LEAST_CONN and UNSPECIFIED are LEAST_REQUEST in Istio)."""
    if policy.consistent_hash is not None:
        return RingHash(hosts, policy.consistent_hash, rng)
    simple = policy.simple.upper()
    if simple == "ROUND_ROBIN":
        return RoundRobin(hosts, rng)
    if simple == "RANDOM":
        return RandomLB(hosts, rng)
    if simple == "PASSTHROUGH":
        return Passthrough()
    return LeastRequest(hosts, rng)
