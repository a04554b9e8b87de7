"""Outlier detection (passive health checking) with Envoy's algorithm as Istio configures it.

Sources: Envoy `outlier_detection_impl.cc` (`putHttpResponseCode`, `ejectHost`,
`checkHostForUneject`), Istio `applyOutlierDetection`; reference: docs/reference/istio-semantics.md §1.2.

- Every result lands on the host: a 5xx bumps `consecutive_5xx`; a 502/503/504 also bumps
  `consecutive_gateway` (any other 5xx resets that one); anything else resets both. Reaching a
  threshold exactly ejects the host at once (not at the next sweep).
- Local-origin failures (connect failure, connect timeout) count as 503 and 504, unless
  `splitExternalLocalOriginErrors` is set, when they count against `consecutiveLocalOriginFailures`.
- An ejection is allowed while the ejected share (before it) is below maxEjectionPercent, so one
  host can always be ejected, as in Envoy; otherwise `ejections_overflow` counts it.
- A host stays out for min(baseEjectionTime x backoff, max(300s, baseEjectionTime)), where backoff
  grows by one per ejection and shrinks by one per sweep the host spends healthy. Hosts come back
  at the first sweep (every `interval`) after their time is up, with their counters reset.
Sweeps run lazily: `maybe_sweep(now)` costs one float comparison per request; a timer may call it too.
The clock is injected (monotonic seconds), so tests need no sleeps.
"""

from __future__ import annotations

import math

from sandbox.proxy.balancing import Host, HostSet
from sandbox.xds.snapshot import OutlierDetectionPolicy


class OutlierDetector:
    __slots__ = (
        "config",
        "ejections_active",
        "ejections_detected_consecutive_5xx",
        "ejections_detected_consecutive_gateway_failure",
        "ejections_detected_consecutive_local_origin_failure",
        "ejections_enforced_total",
        "ejections_overflow",
        "hosts",
        "max_ejection_time",
        "next_sweep",
    )

    def __init__(self, config: OutlierDetectionPolicy, hosts: HostSet, now: float) -> None:
        self.config = config
        self.max_ejection_time = max(config.max_ejection_time, config.base_ejection_time)
        self.hosts = hosts
        hosts.panic_threshold = float(config.min_health_percent)
        self.next_sweep = now + config.interval
        self.ejections_active = 0
        self.ejections_enforced_total = 0
        self.ejections_overflow = 0
        self.ejections_detected_consecutive_5xx = 0
        self.ejections_detected_consecutive_gateway_failure = 0
        self.ejections_detected_consecutive_local_origin_failure = 0

    def on_response(self, host: Host, status: int, now: float) -> None:
        """An HTTP status from the upstream (or 503/504 standing in for a local failure)."""
        if status >= 500 and status < 600:
            if host.ejected:
                return
            cfg = self.config
            if status == 502 or status == 503 or status == 504:
                host.consecutive_gateway += 1
                if host.consecutive_gateway == cfg.consecutive_gateway_errors and cfg.consecutive_gateway_errors > 0:
                    self.ejections_detected_consecutive_gateway_failure += 1
                    host.consecutive_gateway = 0
                    self._eject(host, now)
            else:
                host.consecutive_gateway = 0
            host.consecutive_5xx += 1
            if (
                host.consecutive_5xx == cfg.consecutive_5xx_errors
                and cfg.consecutive_5xx_errors > 0
                and not host.ejected
            ):
                self.ejections_detected_consecutive_5xx += 1
                host.consecutive_5xx = 0
                self._eject(host, now)
        else:
            host.consecutive_5xx = 0
            host.consecutive_gateway = 0
            host.consecutive_local = 0

    def on_connect_failure(self, host: Host, now: float, timeout: bool = False) -> None:
        """A local-origin failure: connection refused/reset while connecting, or connect timeout."""
        if not self.config.split_external_local_origin_errors:
            self.on_response(host, 504 if timeout else 503, now)
            return
        if host.ejected:
            return
        host.consecutive_local += 1
        limit = self.config.consecutive_local_origin_failures
        if host.consecutive_local == limit and limit > 0:
            self.ejections_detected_consecutive_local_origin_failure += 1
            host.consecutive_local = 0
            self._eject(host, now)

    def _eject(self, host: Host, now: float) -> None:
        total = len(self.hosts.hosts)
        if total == 0 or 100.0 * self.ejections_active / total >= min(100, self.config.max_ejection_percent):
            self.ejections_overflow += 1
            return
        self.ejections_active += 1
        self.ejections_enforced_total += 1
        host.ejected = True
        host.times_ejected += 1
        host.last_ejection = now
        cfg = self.config
        if host.ejection_backoff * cfg.base_ejection_time < self.max_ejection_time + cfg.base_ejection_time:
            host.ejection_backoff += 1
        self.hosts.refresh()

    def ejection_time(self, host: Host) -> float:
        """How long this host stays out in its current ejection."""
        cfg = self.config
        return min(cfg.base_ejection_time * host.ejection_backoff, self.max_ejection_time)

    def maybe_sweep(self, now: float) -> None:
        if now >= self.next_sweep:
            self.sweep(now)

    def sweep(self, now: float) -> None:
        """Run Envoy's interval timer for every sweep due by `now` (several if requests were idle):
        hosts return at the first sweep after their time is up; each sweep a host spends healthy
        (not counting the one that returns it) takes one off its backoff."""
        first = self.next_sweep
        if now < first:
            return
        interval = self.config.interval
        if interval > 0:
            due_sweeps = int((now - first) // interval) + 1
            self.next_sweep = first + due_sweeps * interval
        else:  # not a valid Istio interval; sweep on every call rather than never
            due_sweeps, interval = 1, 0.0
            self.next_sweep = now
        changed = False
        for host in self.hosts.hosts:
            decay = due_sweeps
            if host.ejected:
                back_at = host.last_ejection + self.ejection_time(host)
                # the 1-based index of the first sweep at or after back_at
                index = 1 if interval == 0 else max(1, math.ceil((back_at - first) / interval - 1e-9) + 1)
                if index > due_sweeps:
                    continue
                host.ejected = False
                host.consecutive_5xx = host.consecutive_gateway = host.consecutive_local = 0
                self.ejections_active -= 1
                changed = True
                decay = due_sweeps - index
            if decay and host.ejection_backoff:
                host.ejection_backoff = max(0, host.ejection_backoff - decay)
        if changed:
            self.hosts.refresh()

    def stats(self) -> dict[str, int]:
        """Envoy's outlier_detection.* stats for this cluster."""
        return {
            "ejections_active": self.ejections_active,
            "ejections_enforced_total": self.ejections_enforced_total,
            "ejections_overflow": self.ejections_overflow,
            "ejections_detected_consecutive_5xx": self.ejections_detected_consecutive_5xx,
            "ejections_detected_consecutive_gateway_failure": self.ejections_detected_consecutive_gateway_failure,
            "ejections_detected_consecutive_local_origin_failure": (
                self.ejections_detected_consecutive_local_origin_failure
            ),
        }
