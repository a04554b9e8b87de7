"""CUSTOM authorization: Envoy's ext_authz filter over HTTP, as Istio's envoyExtAuthzHttp sets it up.

A request a CUSTOM rule matches is first sent to the extension provider: same method, the
provider's `pathPrefix` before the request's path, the request's Host, `content-length: 0`, and
of the client's headers only those `includeRequestHeadersInCheck` names (plus
`includeAdditionalHeadersInCheck`). The check goes through the provider's cluster like any
request of this proxy (its endpoints, pools and their limits). The answer decides
(envoy ext_authz raw_http_client_impl.cc):
- 200: allowed; `headersToUpstreamOnAllow` of the answer's headers go to the upstream request,
  `headersToDownstreamOnAllow` to the client's response;
- another 2xx-4xx: denied with the provider's status and body, and its headers listed in
  `headersToDownstreamOnDeny` (all of them when that list is empty);
- 5xx, no answer within `timeout`, no cluster or endpoint: an error, answered `statusOnError`
  (403) unless `failOpen`.
A denial or error carries the response flag UAEX. Compiled.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from sandbox.proxy.authz import StringMatch
from sandbox.proxy.balancing import Host
from sandbox.proxy.context import ForwardContext
from sandbox.proxy.decision import RequestHead
from sandbox.proxy.timers import Timer
from sandbox.proxy.upstream import OVERFLOW, EndpointPool, UpstreamConnection, UpstreamSink
from sandbox.xds.access import ExtAuthzProvider

MAX_BODY = 64 * 1024  # what is kept of a denial's body
ALWAYS_ON_DENY = ("www-authenticate", "location")  # Envoy adds these to any allowed_client_headers
NEVER_COPIED = frozenset({"host", "content-length", "transfer-encoding", "connection", "server", "date"})
DENIED, ERROR = "ext_authz_denied", "ext_authz_error"  # RESPONSE_CODE_DETAILS
FLAG = "UAEX"


class HeaderList:
    """A provider's header list: names in Istio's string match forms, lowercase."""

    def __init__(self, names: Iterable[str]) -> None:
        names = [n.lower() for n in names]
        self.empty = not names
        self.match = StringMatch(names)

    def pick(self, headers: list[tuple[str, str]], everything_when_empty: bool = False) -> list[tuple[str, str]]:
        if self.empty:
            return [(k, v) for k, v in headers if k not in NEVER_COPIED] if everything_when_empty else []
        return [(k, v) for k, v in headers if self.match.match(k)]


class ExtAuthz:
    """One extension provider, compiled once per snapshot."""

    def __init__(self, config: ExtAuthzProvider) -> None:
        self.config = config
        self.name = config.name
        self.cluster = config.cluster
        self.include = HeaderList(config.include_request_headers_in_check)
        self.additional = sorted(config.include_additional_headers_in_check.items())
        self.to_upstream = HeaderList(config.headers_to_upstream_on_allow)
        self.on_allow = HeaderList(config.headers_to_downstream_on_allow)
        self.on_deny = HeaderList([*config.headers_to_downstream_on_deny, *ALWAYS_ON_DENY])
        self.deny_everything = not config.headers_to_downstream_on_deny

    def request(self, head: RequestHead) -> bytes:
        lines = [f"{head.method} {self.config.path_prefix}{head.path} HTTP/1.1", f"host: {head.authority}"]
        lines += [f"{k}: {v}" for k, v in head.headers.items() if k != "host" and self.include.match.match(k)]
        lines += [f"{k}: {v}" for k, v in self.additional]
        lines.append("content-length: 0")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")


class CheckResult:
    """The provider's answer: `allowed`, or the reply to send instead (status, body, headers)."""

    def __init__(self, allowed: bool, status: int, body: str, headers: list[tuple[str, str]], details: str) -> None:
        self.allowed = allowed
        self.status = status
        self.body = body
        self.headers = headers  # to the client (denied) or, with upstream, on allow
        self.upstream: list[tuple[str, str]] = []
        self.details = details


class ExtAuthzCheck(UpstreamSink):
    """One check request through the provider's cluster; `done` hears the result once."""

    def __init__(
        self, provider: ExtAuthz, ctx: ForwardContext, head: RequestHead, done: Callable[[CheckResult], None]
    ) -> None:
        self.provider = provider
        self.ctx = ctx
        self.head = head
        self.done = done
        self.conn: UpstreamConnection | None = None
        self.pool: EndpointPool | None = None
        self.host: Host | None = None
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        self.body: list[bytes] = []
        self.size = 0
        self.finished = False
        self.timer: Timer | None = None

    def start(self) -> None:
        cluster = self.ctx.clusters.get(self.provider.cluster)
        host = cluster.pick(None, "") if cluster is not None else None
        if cluster is None or host is None:
            self._error()
            return
        self.host = host
        self.timer = self.ctx.timers.call_later(self.provider.config.timeout, self._timeout)
        pool = self.ctx.upstreams.pool(cluster, host)
        got = pool.acquire(self)
        if got is None:
            self.pool = pool
        elif got is OVERFLOW:
            self._error()
        else:
            assert isinstance(got, UpstreamConnection)
            self.upstream_connected(got)

    def cancel(self) -> None:
        """The request went away: drop the check without an answer."""
        self.finished = True
        self._release(False)

    # ---------------------------------------------------------------- UpstreamSink

    def upstream_connected(self, conn: UpstreamConnection) -> None:
        self.pool = None
        if self.finished:
            conn.pool.release(conn, True)
            return
        self.conn = conn
        conn.start(self, False)
        conn.write(self.provider.request(self.head))

    def upstream_head(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.status = status
        self.headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers]

    def upstream_body(self, data: bytes) -> None:
        if self.size < MAX_BODY:
            self.body.append(data[: MAX_BODY - self.size])
            self.size += len(data)

    def upstream_done(self) -> None:
        conn = self.conn
        self.conn = None
        if conn is not None:
            conn.pool.release(conn, conn.keep_alive())
        if self.finished:
            return
        provider = self.provider
        status = self.status
        if status >= 500 or status < 200:
            self._error()
            return
        if status == 200:
            result = CheckResult(True, 200, "", provider.on_allow.pick(self.headers), "")
            result.upstream = provider.to_upstream.pick(self.headers)
        else:
            body = b"".join(self.body).decode("utf-8", "replace")
            headers = provider.on_deny.pick(self.headers, provider.deny_everything)
            result = CheckResult(False, status, body, headers, DENIED)
        self._finish(result)

    def upstream_failed(self, reason: str) -> None:
        self.conn = None
        self.pool = None
        if not self.finished:
            self._error()

    def upstream_paused(self, paused: bool) -> None:
        pass

    # ---------------------------------------------------------------- endings

    def _timeout(self) -> None:
        self.timer = None
        if not self.finished:
            self._release(False)
            self._error()

    def _error(self) -> None:
        config = self.provider.config
        if config.fail_open:
            self._finish(CheckResult(True, 200, "", [], ""))
        else:
            self._finish(CheckResult(False, config.status_on_error, "", [], ERROR))

    def _finish(self, result: CheckResult) -> None:
        if self.finished:
            return
        self.finished = True
        self._release(False)
        self.done(result)

    def _release(self, reusable: bool) -> None:
        timer = self.timer
        if timer is not None:
            self.timer = None
            timer.cancel()
        if self.pool is not None:
            self.pool.cancel(self)
            self.pool = None
        conn = self.conn
        if conn is not None:
            self.conn = None
            if reusable:
                conn.pool.release(conn, True)
            else:
                conn.close()
