"""What one `sandbox load` run will do, validated and bounded before anything is sent. Pure.

Like fortio: `connections` workers each keep one HTTP/1.1 connection and send requests one after
another; `qps` is the total rate over all workers (0: each as fast as it can); the run ends after
exactly `requests` calls or after `duration`. Hard caps hold whatever the arguments say, so a
typo cannot turn a check into a flood.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass

MAX_REQUESTS = 1_000_000
MAX_DURATION = 600.0  # seconds; a run stops here even in -n mode
MAX_CONNECTIONS = 1_000
MAX_TIMEOUT = 120.0
DEFAULT_DURATION = 5.0  # fortio's default when neither -n nor -t is given
DEFAULT_TIMEOUT = 10.0
USER_AGENT = "sandbox-load"


class PlanError(ValueError):
    """An argument that cannot make a run (the message names it)."""


@dataclass(frozen=True)
class Target:
    """Where to connect and what to write on the request line."""

    host: str  # connect here (the proxy when there is one)
    port: int
    authority: str  # Host header
    target: str  # origin-form "/get?x", or absolute-form through a proxy


@dataclass(frozen=True)
class LoadPlan:
    url: str
    connections: int = 1
    qps: float = 0.0  # total over all connections; 0 = as fast as possible
    requests: int | None = None  # exactly this many calls ...
    duration: float | None = None  # ... or for this long (seconds)
    headers: tuple[tuple[str, str], ...] = ()
    proxy: str | None = None  # http://host:port: send absolute-form requests there
    timeout: float = DEFAULT_TIMEOUT  # per request, connect included

    def __post_init__(self) -> None:
        if not 1 <= self.connections <= MAX_CONNECTIONS:
            raise PlanError(f"-c/--connections must be 1 to {MAX_CONNECTIONS}, not {self.connections}")
        if not self.qps >= 0:
            raise PlanError(f"--qps must be 0 (as fast as possible) or more, not {self.qps}")
        if self.requests is not None and self.duration is not None:
            raise PlanError("give -n/--requests or -t/--duration, not both")
        if self.requests is not None and not 1 <= self.requests <= MAX_REQUESTS:
            raise PlanError(f"-n/--requests must be 1 to {MAX_REQUESTS:,}, not {self.requests}")
        if self.duration is not None and not 0 < self.duration <= MAX_DURATION:
            raise PlanError(f"-t/--duration must be more than 0 and at most {MAX_DURATION:g}s, not {self.duration:g}s")
        if not 0 < self.timeout <= MAX_TIMEOUT:
            raise PlanError(f"--timeout must be more than 0 and at most {MAX_TIMEOUT:g}s, not {self.timeout:g}s")
        self.target()  # the URL and the proxy must parse

    @property
    def max_requests(self) -> int:
        return self.requests if self.requests is not None else MAX_REQUESTS

    @property
    def run_for(self) -> float:
        """Seconds after which no new request starts."""
        if self.duration is not None:
            return self.duration
        return MAX_DURATION if self.requests is not None else DEFAULT_DURATION

    @property
    def interval(self) -> float:
        """Seconds between two requests of one connection (0: back to back)."""
        return self.connections / self.qps if self.qps > 0 else 0.0

    def target(self) -> Target:
        url = _http_url(self.url, "URL")
        authority = url.netloc
        port = url.port or 80
        assert url.hostname is not None  # _http_url checked
        if self.proxy is None:
            path = url.path or "/"
            return Target(url.hostname, port, authority, path + (f"?{url.query}" if url.query else ""))
        proxy = _http_url(self.proxy, "--proxy")
        assert proxy.hostname is not None
        absolute = urllib.parse.urlunsplit(("http", authority, url.path or "/", url.query, ""))
        return Target(proxy.hostname, proxy.port or 80, authority, absolute)

    def request_bytes(self) -> bytes:
        """The request every call writes (the same bytes each time, as fortio's fast client does)."""
        target = self.target()
        given = {name.lower() for name, _ in self.headers}
        lines = [f"GET {target.target} HTTP/1.1"]
        if "host" not in given:
            lines.append(f"Host: {target.authority}")
        if "user-agent" not in given:
            lines.append(f"User-Agent: {USER_AGENT}")
        lines.extend(f"{name}: {value}" for name, value in self.headers)
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _http_url(text: str, what: str) -> urllib.parse.SplitResult:
    try:
        url = urllib.parse.urlsplit(text)
        url.port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        raise PlanError(f"{what} {text!r}: {exc}") from None
    if url.scheme != "http" or not url.hostname:
        raise PlanError(f"{what} must be an http://host[:port]/path URL, not {text!r}")
    return url


def parse_header(text: str) -> tuple[str, str]:
    """`-H 'Name: value'` -> (name, value)."""
    name, sep, value = text.partition(":")
    name = name.strip()
    if not sep or not name or any(c in name for c in " \t\r\n") or any(c in value for c in "\r\n"):
        raise PlanError(f"-H wants 'Name: value', not {text!r}")
    try:
        (name + value).encode("latin-1")
    except UnicodeEncodeError:
        raise PlanError(f"-H {text!r}: header text must be Latin-1") from None
    return name, value.strip()


def parse_duration(text: str) -> float:
    """'30s', '1m', '500ms', or plain seconds ('10')."""
    from sandbox.mesh.schema import Duration

    try:
        return float(text)
    except ValueError:
        pass
    try:
        return Duration.parse(text).seconds
    except ValueError as exc:
        raise PlanError(f"-t/--duration: {exc}") from None
