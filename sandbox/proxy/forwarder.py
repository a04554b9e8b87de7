"""Carrying out a RouteDecision for one downstream request: the exchange state machine.

`Exchange` is driven by callbacks from both sides: its downstream connection feeds it the request
(`start`, `request_body`, `request_complete`), its upstream connection the response
(`upstream_head`, `upstream_body`, `upstream_done`, `upstream_failed`). It talks to them through
seams (downstream.Downstream, upstream.UpstreamConnection and the pools) and to time through
timers.Timers, never to a socket or the loop, so sans-io tests drive it with fakes and a manual
clock. Response bytes are handed to the downstream inside the upstream's callback (the downstream
writes them at the end of the loop's pass, writes.py), so a plain proxied request costs no task
and no future. Timers exist only when the route asks for them (timeout, per-try timeout, fault
delay, retry backoff).

The exchange is also the request's record (record.RequestRecord): it fills the fields as it goes
and hands itself to telemetry once, when it ends.

Envoy's edge behaviour (docs/reference/istio-semantics.md §1.5): connect failure 503 UF, upstream
reset before headers 503 UC, upstream protocol error 502 UPE, route timeout 504 UT, overflow 503
UO with `x-envoy-overloaded: true`, nothing healthy 503 UH, no route 404 NR, unknown cluster 503
NC, fault abort FI; retries add `x-envoy-attempt-count`, avoid the hosts already tried (Istio's
previous_hosts predicate) and flag URX when they run out; an upstream reset after the response
started closes the downstream connection. RESPONSE_CODE_DETAILS says which, in Envoy's words.
"""

from __future__ import annotations

from sandbox.proxy import http1
from sandbox.proxy.balancing import Host, Passthrough
from sandbox.proxy.cluster import ClusterState
from sandbox.proxy.context import XFCC, ForwardContext
from sandbox.proxy.decision import DecisionKind, RequestHead, RouteDecision
from sandbox.proxy.downstream import Downstream
from sandbox.proxy.flags import join_flags
from sandbox.proxy.metrics import PEER_METADATA_HEADER
from sandbox.proxy.mirror import Mirror, shadow_request
from sandbox.proxy.record import RequestRecord
from sandbox.proxy.retry import Backoff, Failure, Outcome, should_retry
from sandbox.proxy.timers import Timer
from sandbox.proxy.upstream import (
    CONNECTION_FAILURE,
    CONNECTION_TERMINATION,
    OVERFLOW,
    PROTOCOL_ERROR,
    EndpointPool,
    UpstreamConnection,
    UpstreamSink,
)
from sandbox.xds.snapshot import PASSTHROUGH_CLUSTER, Endpoint, HeaderMutation

__all__ = ["RETRY_BUFFER_LIMIT", "Exchange", "ForwardContext"]

RETRY_BUFFER_LIMIT = 1 << 20  # Envoy's per-connection buffer limit: bigger bodies are not retried or mirrored

_NO_BODY_STATUS = frozenset({204, 304})
_FORWARDED_PROTO = "x-forwarded-proto: http\r\n"
_FORWARDED_PROTO_TLS = "x-forwarded-proto: https\r\n"
_ATTEMPT_1 = b"x-envoy-attempt-count: 1\r\n\r\n"
_CHUNKED_LINE = b"transfer-encoding: chunked\r\n"
_CLOSE_LINE = b"connection: close\r\n"
_NO_BODY: list[bytes] = []
_NO_MUTATIONS: tuple[HeaderMutation, ...] = ()

# RESPONSE_CODE_DETAILS as Envoy writes them (envoy/stream_info/stream_info.h ResponseCodeDetailValues)
VIA_UPSTREAM = "via_upstream"
EARLY_RESET = "upstream_reset_before_response_started{%s}"
LATE_RESET = "upstream_reset_after_response_started{%s}"
DETAILS_BY_KIND = {
    DecisionKind.NO_ROUTE: "route_not_found",
    DecisionKind.NO_CLUSTER: "cluster_not_found",
    DecisionKind.REDIRECT: "direct_response",
    DecisionKind.DIRECT_RESPONSE: "direct_response",
}


def _reason(reason: str) -> str:
    """`connection failure` -> `connection_failure`, as Envoy puts a reset reason in the details."""
    return reason.replace(" ", "_")


class Exchange(RequestRecord, UpstreamSink):
    """One downstream request and its response, from headers to the last byte."""

    # Class-level defaults: a request sets only what differs, which matters at tens of thousands a second.
    decision: RouteDecision | None = None
    cluster: ClusterState | None = None
    host: Host | None = None
    endpoint: Endpoint | None = None
    peer_header: str | None = None
    set_cookie: str | None = None  # a generated consistent-hash cookie for the response
    pool: EndpointPool | None = None  # the pool we wait in for a connection
    conn: UpstreamConnection | None = None
    tried: list[Host] | None = None  # hosts of earlier attempts (Istio's previous_hosts predicate)
    up_head = b""
    attempt = 0
    backoff: Backoff | None = None
    retries_held = 0
    resp_started = False
    resp_chunked = False
    finished = False
    reported = False
    has_body = False
    request_done = True
    request_chunked = False
    http10 = False  # the client spoke HTTP/1.0
    original_dst: tuple[str, int] | None = None
    # The request body kept for retries and mirrors (None: too big to keep). Bodiless requests share this
    # empty list: llhttp calls on_body only for requests whose framing has_body saw, which get their own.
    body: list[bytes] | None = _NO_BODY
    timer: Timer | None  # per-try timeout, delay or backoff (set in __init__: compiled, mypyc drops
    route_timer: Timer | None  # the class-level default of an attribute typed with a Protocol)
    up_start = 0.0
    body_size = 0
    up_mtls = False  # the last attempt's upstream connection is mesh mutual TLS

    def __init__(
        self,
        down: Downstream,
        ctx: ForwardContext,
        head: RequestHead,
        has_body: bool,
        request_chunked: bool,
        original_dst: tuple[str, int] | None,
    ) -> None:
        self.down = down
        self.ctx = ctx
        self.head = head
        self.timer = self.route_timer = None
        if has_body:
            self.has_body = True
            self.request_done = False
            self.request_chunked = request_chunked
            self.body = []
        if original_dst is not None:
            self.original_dst = original_dst
        self.resp_close = not down.keep_alive
        timers = ctx.timers
        self.start_time = timers.wall()
        self.started = timers.now()
        headers = head.headers
        if ctx.use_remote_address:
            # An edge proxy (a gateway): the client's address joins X-Forwarded-For, and is the
            # external address, before routing sees the headers (Envoy's HCM mutateRequestHeaders).
            peer = down.peer_ip
            xff = headers.get("x-forwarded-for")
            headers["x-forwarded-for"] = f"{xff},{peer}" if xff else peer
            headers["x-envoy-external-address"] = peer
        request_id = headers.get("x-request-id")
        if request_id is None:
            request_id = headers["x-request-id"] = ctx.request_id()
        self.request_id = request_id

    # ------------------------------------------------------------------ downstream events

    def start(self, decision: RouteDecision) -> None:
        self.decision = decision
        if decision.kind is not DecisionKind.FORWARD:
            headers: tuple[tuple[str, str], ...] = (("location", decision.location),) if decision.location else ()
            if decision.response_flags != "-":
                self.response_flags = decision.response_flags
            details = decision.details or DETAILS_BY_KIND.get(decision.kind, "")
            mutations = decision.response_headers if decision.kind is not DecisionKind.NO_CLUSTER else _NO_MUTATIONS
            self.local_reply(decision.status, decision.body, headers, details, mutations)
            return
        if decision.timeout and self.request_done and self.route_timer is None:
            self.route_timer = self.ctx.timers.call_later(decision.timeout, self._route_timeout)
        if decision.delay:
            self.response_flags = join_flags(self.response_flags, "DI")
            self.timer = self.ctx.timers.call_later(decision.delay, self._after_delay)
            return
        self._after_delay()

    def request_body(self, data: bytes) -> None:
        self.bytes_received += len(data)
        if self.finished:
            return  # answered already (a local reply, an early upstream answer): drain the rest
        body = self.body
        if body is not None:
            self.body_size += len(data)
            if self.body_size <= RETRY_BUFFER_LIMIT or self.conn is None:
                body.append(data)
            else:
                self.body = None  # too big to replay: no more retries or mirrors for this one
        conn = self.conn
        if conn is not None:
            conn.write(http1.chunk(data) if self.request_chunked else data)
        elif self.body_size > RETRY_BUFFER_LIMIT:
            self.down.pause_reading(True)  # no upstream yet and the buffer is full: back-pressure

    def request_complete(self) -> None:
        had_body = not self.request_done  # a bodiless request was done at its head: mirrors already left
        self.request_done = True
        conn = self.conn
        if conn is not None and self.request_chunked:
            conn.write(http1.LAST_CHUNK)
        decision = self.decision
        if decision is not None and decision.timeout and self.route_timer is None and not self.finished:
            self.route_timer = self.ctx.timers.call_later(decision.timeout, self._route_timeout)
        if self.finished:
            self._report()
            self.down.exchange_done(self)
        elif decision is not None and decision.mirrors and self.up_head and had_body:
            self._start_mirrors()

    def downstream_lost(self) -> None:
        """The client went away: drop the upstream side, and log what we had (flag DC)."""
        if self.finished:
            self._report()  # answered, but the client left before sending all of its body
            return
        self.response_flags = join_flags(self.response_flags, "DC")
        self.response_code_details = "downstream_remote_disconnect"
        self._abandon_upstream()
        self._finish()

    def downstream_error(self, status: int, details: str) -> None:
        """The rest of the request was malformed (Envoy: DPE): give up upstream, answer, close."""
        self._abandon_upstream()
        self.resp_close = True
        self.response_flags = join_flags(self.response_flags, "DPE")
        self.local_reply(status, "", (), details)

    def downstream_paused(self, paused: bool) -> None:
        conn = self.conn
        if conn is not None:
            conn.pause_reading(paused)

    # ------------------------------------------------------------------ forwarding

    def _after_delay(self) -> None:
        self.timer = None
        decision = self.decision
        assert decision is not None
        if decision.abort_status is not None:
            self.response_flags = join_flags(self.response_flags, "FI")
            # The route's response header operations apply to its fault abort too.
            self.local_reply(
                decision.abort_status, http1.BODY_FAULT_ABORT, (), "fault_filter_abort", decision.response_headers
            )
            return
        cluster = self.ctx.clusters.get(decision.cluster)
        if cluster is None:
            self.response_flags = join_flags(self.response_flags, "NC")
            self.local_reply(503, "", (), "cluster_not_found")
            return
        self.cluster = cluster
        self.up_head = self._build_upstream_head(decision)
        if decision.mirrors and self.request_done:
            self._start_mirrors()
        self._attempt()

    def _build_upstream_head(self, decision: RouteDecision) -> bytes:
        """The request head for the upstream, minus the attempt count (added per attempt)."""
        head = self.head
        ctx = self.ctx
        headers = head.headers
        if decision.request_headers:
            headers = dict(headers)
            http1.apply_request_mutations(headers, decision.request_headers)
        skip = ctx.skip_request
        lines = "".join([f"{name}: {value}\r\n" for name, value in headers.items() if name not in skip])
        telemetry = ctx.telemetry
        if telemetry is None:
            own = ""
        elif ctx.outbound:
            self.trace = trace = telemetry.trace_ids.outbound(head.headers)
            own = ctx.peer_line + trace.header_lines()
        else:
            self.trace = trace = telemetry.trace_ids.inbound(head.headers)
            self.peer_header = head.headers.get(PEER_METADATA_HEADER)
            own = trace.header_lines()
        client_cert = self.down.client_cert
        if client_cert:  # a mutual TLS client (context.py: X-Forwarded-Client-Cert)
            prior = headers.get(XFCC) if ctx.append_xfcc else None
            own = f"{XFCC}: {prior},{client_cert}\r\n{own}" if prior else f"{XFCC}: {client_cert}\r\n{own}"
        # The connection's scheme, unless an inner hop already said (a gateway, the edge, always says)
        if ctx.use_remote_address or "x-forwarded-proto" not in headers:
            own = (_FORWARDED_PROTO_TLS if self.down.tls else _FORWARDED_PROTO) + own
        if decision.timeout:
            own = f"x-envoy-expected-rq-timeout-ms: {int(decision.timeout * 1000)}\r\n{own}"
        if self.request_chunked:
            own = "transfer-encoding: chunked\r\n" + own
        return (
            f"{head.method} {decision.path or head.path} HTTP/1.1\r\nhost: {decision.authority or head.authority}\r\n"
            f"{lines}{own}"
        ).encode("latin-1", "replace")

    def _attempt(self) -> None:
        self.timer = None
        cluster = self.cluster
        assert cluster is not None
        if self.finished:
            return
        host = self._pick(cluster)
        tried = self.tried
        if tried is not None and host is not None:
            # Istio's retry_host_predicate previous_hosts: pick again (up to host_selection_max_attempts
            # times) while the pick is a host an earlier attempt used; then take the last pick.
            decision = self.decision
            assert decision is not None
            for _ in range(decision.retry.host_selection_max_attempts):
                if host not in tried:
                    break
                host = self._pick(cluster)
                if host is None:
                    break
        if host is None:
            self._fail_locally(503, "UH", http1.BODY_NO_HEALTHY, "no_healthy_upstream")
            return
        if not cluster.breaker.try_request():
            self._overflow()
            return
        self.attempt += 1
        self.host = host
        self.upstream_host = host.address
        self.endpoint = host.endpoint
        cluster.start(host)
        pool = self.ctx.upstreams.pool(cluster, host)
        got = pool.acquire(self)
        if got is None:
            self.pool = pool
        elif got is OVERFLOW:
            cluster.breaker.release_request()
            host.active_requests -= 1
            self._overflow()
        else:
            assert isinstance(got, UpstreamConnection)
            self.upstream_connected(got)

    def _pick(self, cluster: ClusterState) -> Host | None:
        if cluster.plain_pick:
            return cluster.pick(self.head, self.down.peer_ip)
        if isinstance(cluster.balancer, Passthrough):
            return cluster.balancer.pick_original(*self._original())
        if cluster.name == PASSTHROUGH_CLUSTER:
            return self.ctx.passthrough.pick_original(*self._original())
        # consistentHash on a cookie with a ttl (cluster.makes_cookies)
        down = self.down
        pick = cluster.pick_with_cookie(self.head, down.peer_ip, down.remote_address + down.local_address)
        if pick is None:
            return None
        if pick.set_cookie and self.set_cookie is None:
            self.set_cookie = pick.set_cookie  # once, even if a retry picks again
        return pick.host

    def _original(self) -> tuple[str | None, int | None]:
        if self.original_dst is not None:
            return self.original_dst
        host, port = http1.split_authority(self.head.authority, self.head.port)
        return host.strip("[]"), port

    # ------------------------------------------------------------------ upstream events

    def upstream_connected(self, conn: UpstreamConnection) -> None:
        if self.pool is not None:
            self.pool = None
        if self.finished:  # gave up while waiting
            conn.pool.release(conn, True)
            return
        self.conn = conn
        self.up_mtls = conn.mtls
        ctx = self.ctx
        conn.start(self, self.head.method == "HEAD", ctx.skip_response)
        if self.down.write_paused:
            conn.pause_reading(True)  # the client has not drained what came before: read on its resume
        self.up_start = ctx.timers.now()
        attempt = self.attempt
        if not ctx.attempt_count:
            head = self.up_head + b"\r\n"
        elif attempt == 1:
            head = self.up_head + _ATTEMPT_1
        else:
            head = self.up_head + b"x-envoy-attempt-count: %d\r\n\r\n" % attempt
        body = self.body
        if body:
            if self.request_chunked:
                conn.write(head + b"".join([http1.chunk(b) for b in body]))
            else:
                conn.write(head + b"".join(body))
            if self.body_size > RETRY_BUFFER_LIMIT:
                self.body = None  # streamed from here on: too big to replay
                self.down.pause_reading(False)
        else:
            conn.write(head)
        if self.request_chunked and self.request_done:
            conn.write(http1.LAST_CHUNK)
        decision = self.decision
        assert decision is not None
        per_try = decision.retry.per_try_timeout
        if per_try:
            self.timer = ctx.timers.call_later(per_try, self._per_try_timeout)

    def upstream_head(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        """The response head; `headers` come lowercased, without hop-by-hop ones (and without
        `server`, which this hop writes), and are ours to change."""
        ctx = self.ctx
        now = ctx.timers.now()
        decision = self.decision
        assert decision is not None
        retry = decision.retry
        # (gRPC needs HTTP/2, which this data path does not speak yet: no grpc-status based retries.)
        if (
            retry.attempts
            and (status >= 500 or status == 409 or retry.retriable_status_codes)
            and self._retry(Outcome(status), report_status=status)
        ):
            return
        if self.timer is not None:
            self._cancel_timer()
        self.response_code = status
        self.response_code_details = VIA_UPSTREAM
        self.upstream_service_time = service_time = int((now - self.up_start) * 1000)
        extra = b"x-envoy-upstream-service-time: " + str(service_time).encode() + b"\r\n" + ctx.server_line
        conn = self.conn
        if (conn is None or not conn.has_length) and status not in _NO_BODY_STATUS and self.head.method != "HEAD":
            if self.http10:
                self.resp_close = True
            else:
                self.resp_chunked = True
                extra += _CHUNKED_LINE
        if self.resp_close:
            extra += _CLOSE_LINE
        if self.set_cookie is not None:  # Envoy's router adds it before the route's header mutations
            headers.append((b"set-cookie", self.set_cookie.encode("latin-1", "replace")))
        if decision.response_headers:
            http1.apply_response_mutations(headers, decision.response_headers)
        self.resp_started = True
        # (The downstream writes at the end of the loop's pass: head and body leave in one write.)
        self.down.write(http1.response_head_bytes(status, headers, extra))

    def upstream_body(self, data: bytes) -> None:
        self.down.write(http1.chunk(data) if self.resp_chunked else data)
        self.bytes_sent += len(data)

    def upstream_done(self) -> None:
        if self.resp_chunked:
            self.down.write(http1.LAST_CHUNK)
        conn = self.conn
        self.conn = None
        if conn is not None:
            # Reusable only if the whole request went out: an early answer leaves the request half-sent.
            conn.pool.release(conn, self.request_done and conn.keep_alive())
        self._settle_attempt(self.response_code)
        self._finish()

    def upstream_failed(self, reason: str) -> None:
        self.pool = None
        conn = self.conn
        self.conn = None
        if self.finished:
            return
        if self.resp_started:
            # Reset after the response started: nothing to say to the client but closing.
            self.response_flags = join_flags(self.response_flags, "UPE" if reason == PROTOCOL_ERROR else "UC")
            self.response_code_details = LATE_RESET % _reason(reason)
            self._settle_attempt(self.response_code)
            self.resp_close = True
            self.down.abort()
            self._finish()
            return
        if reason.startswith(CONNECTION_FAILURE):
            failure = Failure.CONNECT_FAILURE
        else:
            failure = Failure.RESET
            if conn is not None and conn.requests > 0 and not conn.got_data and self.body is not None:
                # A pooled connection the upstream closed just as we used it: retry once on a fresh one.
                self._end_attempt(None)
                self.attempt -= 1
                self.ctx.timers.call_soon(self._attempt)
                return
        report = -1 if failure is Failure.CONNECT_FAILURE else (502 if reason == PROTOCOL_ERROR else 0)
        if self._retry(Outcome(failure=failure), report_status=report):
            return
        self._end_attempt(report)
        details = EARLY_RESET % _reason(reason)
        if failure is Failure.CONNECT_FAILURE:
            transport = reason[len(CONNECTION_FAILURE) :]
            if transport:  # ", transport failure reason: TLS_error:...": the handshake failed
                self.upstream_transport_failure_reason = transport.partition(": ")[2]
                details = EARLY_RESET % f"connection_failure,{self.upstream_transport_failure_reason}"
            self._fail_locally(503, "UF", http1.RESET_BEFORE_HEADERS + reason, details)
        elif reason == PROTOCOL_ERROR:
            self._fail_locally(502, "UPE", http1.BODY_PROTOCOL_ERROR, details)
        else:
            self._fail_locally(503, "UC", http1.BODY_TERMINATION, EARLY_RESET % _reason(CONNECTION_TERMINATION))

    def upstream_paused(self, paused: bool) -> None:
        self.down.pause_reading(paused)

    # ------------------------------------------------------------------ retries and timeouts

    def _retry(self, outcome: Outcome, report_status: int) -> bool:
        """Start another attempt if the policy allows, ending this one; False leaves it to the caller.

        `report_status` is what the outlier detector hears for this attempt (0: a reset, -1: a
        connect failure the pool already reported)."""
        decision = self.decision
        cluster = self.cluster
        assert decision is not None and cluster is not None
        retry = decision.retry
        if retry.attempts <= 0 or not should_retry(self.ctx.retry_on(retry), outcome):
            return False
        if self.attempt > retry.attempts:
            self.response_flags = join_flags(self.response_flags, "URX")  # the limit is reached: this outcome stands
            return False
        if self.body is None or (self.has_body and not self.request_done):
            return False  # the body is not (fully) buffered: nothing to replay
        host = self.host
        self._end_attempt(report_status)
        if not cluster.breaker.try_retry():
            return False
        if retry.retry_ignore_previous_hosts and host is not None:
            if self.tried is None:
                self.tried = []
            self.tried.append(host)
        self.retries_held += 1
        if self.backoff is None:
            self.backoff = Backoff(self.ctx.rng, retry.backoff_base, retry.backoff_max)
        self.timer = self.ctx.timers.call_later(self.backoff.next(), self._attempt)
        return True

    def _settle_attempt(self, report_status: int | None) -> None:
        """Account for the end of the current attempt: least-request count, outlier detection, breaker."""
        host = self.host
        cluster = self.cluster
        if host is None or cluster is None:
            return
        self.host = None
        if report_status is None or report_status < 0:
            host.active_requests -= 1
        else:
            cluster.finish(host, report_status)
        cluster.breaker.release_request()
        if self.retries_held:
            self.retries_held -= 1
            cluster.breaker.release_retry()

    def _end_attempt(self, report_status: int | None) -> None:
        """Close the current attempt: its connection, its per-try timer, its counters."""
        self._cancel_timer()
        conn = self.conn
        self.conn = None
        if conn is not None:
            conn.close()
        self._settle_attempt(report_status)

    def _per_try_timeout(self) -> None:
        self.timer = None
        if self._retry(Outcome(failure=Failure.PER_TRY_TIMEOUT), report_status=504):
            return
        self._abandon_upstream(report_status=504)
        self._fail_locally(504, "UT", http1.BODY_TIMEOUT, "upstream_per_try_timeout")

    def _route_timeout(self) -> None:
        self.route_timer = None
        if self.finished:
            return
        self._abandon_upstream(report_status=504)
        if self.resp_started:
            self.response_flags = join_flags(self.response_flags, "UT")
            self.response_code_details = "response_timeout"
            self.down.abort()
            self._finish()
        else:
            self._fail_locally(504, "UT", http1.BODY_TIMEOUT, "response_timeout")

    def _abandon_upstream(self, report_status: int | None = None) -> None:
        pool = self.pool
        if pool is not None:
            pool.cancel(self)
            self.pool = None
        self._end_attempt(report_status)

    def _cancel_timer(self) -> None:
        timer = self.timer
        if timer is not None:
            self.timer = None
            timer.cancel()

    # ------------------------------------------------------------------ local replies

    def _overflow(self) -> None:
        self._fail_locally(503, "UO", http1.BODY_OVERFLOW, EARLY_RESET % "overflow", (("x-envoy-overloaded", "true"),))

    def _fail_locally(
        self, status: int, flag: str, body: str, details: str, headers: tuple[tuple[str, str], ...] = ()
    ) -> None:
        self.response_flags = join_flags(self.response_flags, flag)
        self.local_reply(status, body, headers, details)

    def deny(
        self,
        decision: RouteDecision | None,
        status: int,
        body: str,
        headers: tuple[tuple[str, str], ...],
        details: str,
        flag: str,
    ) -> None:
        """A filter before the router refused the request (filters.py: a bad token, RBAC, ext_authz).
        It is logged with the route it would have taken, as Envoy's HCM resolves that first."""
        if decision is not None:
            self.decision = decision
            if decision.kind is DecisionKind.FORWARD:
                self.upstream_cluster = decision.cluster
        if flag:
            self.response_flags = join_flags(self.response_flags, flag)
        self.local_reply(status, body, headers, details)

    def local_reply(
        self,
        status: int,
        body: str = "",
        headers: tuple[tuple[str, str], ...] = (),
        details: str = "",
        mutations: tuple[HeaderMutation, ...] = _NO_MUTATIONS,
    ) -> None:
        """Answer the client ourselves (Envoy's local reply) and end the exchange. `mutations`:
        the route's response header operations, for the replies Envoy applies them to (a redirect,
        a direct response, a fault abort)."""
        if self.finished or self.resp_started:
            return
        self.response_code = status
        self.response_code_details = details
        self.resp_started = True
        data = http1.local_reply(
            status,
            body,
            headers,
            close=self.resp_close,
            head_only=self.head.method == "HEAD",
            server=self.ctx.server_name,
            mutations=mutations,
        )
        self.bytes_sent = len(body)
        self.down.write(data)
        self._finish()

    def _finish(self) -> None:
        if self.finished:
            return
        self.finished = True
        if self.timer is not None:
            self._cancel_timer()
        timer = self.route_timer
        if timer is not None:
            self.route_timer = None
            timer.cancel()
        if self.pool is not None:
            self.pool.cancel(self)
            self.pool = None
        if self.conn is not None or self.host is not None:
            self._end_attempt(None)
        if self.retries_held and self.cluster is not None:
            for _ in range(self.retries_held):
                self.cluster.breaker.release_retry()
            self.retries_held = 0
        if self.request_done or self.resp_close or self.down.closed:
            self._report()
            self.down.exchange_done(self)
        else:
            # The client is still sending; Envoy logs when the stream ends (request_complete). Reading
            # may be paused (a full upstream, or a full retry buffer) with nothing left to resume it.
            self.down.pause_reading(False)

    def _report(self) -> None:
        """Complete the record and hand it to telemetry, once (bytes received are final by now)."""
        if self.reported:
            return
        self.reported = True
        ctx = self.ctx
        self.duration = ctx.timers.now() - self.started
        if self.body:
            self.body = None  # the access log and spans may hold this exchange a while: not its body
        head = self.head
        headers = head.headers
        down = self.down
        decision = self.decision
        cluster = self.cluster
        self.method = head.method
        self.path = head.path  # as the client sent it, before any rewrite
        if self.http10:
            self.protocol = "HTTP/1.0"
        self.authority = head.authority
        if head.scheme != "http":
            self.scheme = head.scheme
        self.user_agent = headers.get("user-agent", "")
        self.x_forwarded_for = headers.get("x-forwarded-for", "")
        self.downstream_local_address = down.local_address
        self.downstream_remote_address = down.remote_address
        if down.sni:
            self.requested_server_name = down.sni
        service = ""
        if decision is not None:
            self.route_name = decision.route_name
            self.operation = decision.operation
            service = decision.service
        if cluster is not None:
            self.upstream_cluster = cluster.name
            if not service:
                service = cluster.config.service
        telemetry = ctx.telemetry
        if telemetry is not None:
            if ctx.outbound:
                self.edge = telemetry.outbound_edge(self.endpoint, service, self.up_mtls)
            else:
                self.edge = telemetry.inbound_edge(self.peer_header, down.peer_principal, service, down.mtls)
            if telemetry.header_tags:  # after any the filters set (dry-run results)
                self.span_tags = self.span_tags + telemetry.header_tag_values(headers)
            telemetry.finish(self, ctx.outbound)
        if ctx.on_complete is not None:
            ctx.on_complete(self)

    # ------------------------------------------------------------------ mirrors

    def _start_mirrors(self) -> None:
        decision = self.decision
        if decision is None or self.body is None:
            return
        ctx = self.ctx
        request = shadow_request(
            self.up_head, decision.authority or self.head.authority, self.body, self.request_chunked
        )
        for name in decision.mirrors:
            cluster = ctx.clusters.get(name)
            if cluster is not None:
                Mirror(cluster, ctx.upstreams, ctx.timers, request, decision.timeout).start()
