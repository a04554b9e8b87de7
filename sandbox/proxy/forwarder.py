"""Carrying out a RouteDecision for one downstream request: the exchange state machine.

`Exchange` is driven by callbacks from both sockets: the downstream connection feeds it the
request (`start`, `request_body`, `request_complete`), the upstream connection feeds it the
response (`upstream_head`, `upstream_body`, `upstream_done`, `upstream_failed`). Response bytes are
handed to the downstream connection inside the upstream's callback (it writes them at the end of the
loop's pass, writes.py), so a plain proxied request costs no task and no future. Timers exist only
when the route asks for them (timeout, per-try timeout, fault delay, retry backoff).

Envoy's edge behaviour (istio-semantics.md §1.5): connect failure 503 UF, upstream reset before
headers 503 UC, upstream protocol error 502 UPE, route timeout 504 UT, overflow 503 UO with
`x-envoy-overloaded: true`, nothing healthy 503 UH, no route 404 NR, fault abort FI; retries add
`x-envoy-attempt-count` and URX when they run out; an upstream reset after the response started
closes the downstream connection.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from sandbox.control.snapshot import PASSTHROUGH_CLUSTER, Endpoint
from sandbox.proxy import http1
from sandbox.proxy.accesslog import start_time_text
from sandbox.proxy.balancing import Host, Passthrough
from sandbox.proxy.cluster import ClusterState
from sandbox.proxy.context import ForwardContext
from sandbox.proxy.decision import DecisionKind, RequestHead, RouteDecision
from sandbox.proxy.flags import join_flags
from sandbox.proxy.metrics import PEER_METADATA_HEADER, Edge
from sandbox.proxy.mirror import Mirror
from sandbox.proxy.retry import Backoff, Failure, Outcome, should_retry
from sandbox.proxy.tracecontext import TraceContext
from sandbox.proxy.upstream import (
    CONNECTION_FAILURE,
    OVERFLOW,
    PROTOCOL_ERROR,
    EndpointPool,
    UpstreamConnection,
    UpstreamSink,
)

if TYPE_CHECKING:
    from sandbox.proxy.server import DownstreamConnection

__all__ = ["RETRY_BUFFER_LIMIT", "Exchange", "ForwardContext"]

RETRY_BUFFER_LIMIT = 1 << 20  # Envoy's per-connection buffer limit: bigger bodies are not retried or mirrored

_NO_BODY_STATUS = frozenset({204, 304})
_FORWARDED_PROTO = "x-forwarded-proto: http\r\n"
_ATTEMPT_1 = b"x-envoy-attempt-count: 1\r\n\r\n"
_CHUNKED_LINE = b"transfer-encoding: chunked\r\n"
_CLOSE_LINE = b"connection: close\r\n"
_NO_BODY: list[bytes] = []


class Exchange(UpstreamSink):
    """One downstream request and its response, from headers to the last byte.

    It is also the request's telemetry record (record.LogRecord): the access log and spans read
    its attributes and properties when they are formatted, in batches, so a request builds no
    record of its own."""

    # Class-level defaults: a request sets only what differs, which matters at tens of thousands a second.
    decision: RouteDecision | None = None
    cluster: ClusterState | None = None
    host: Host | None = None
    upstream_host = ""
    endpoint: Endpoint | None = None
    trace: TraceContext | None = None
    edge: Edge | None = None
    peer_header: str | None = None
    set_cookie: str | None = None  # a generated consistent-hash cookie for the response
    pool: EndpointPool | None = None  # the pool we wait in for a connection
    conn: UpstreamConnection | None = None
    up_head = b""
    attempt = 0
    backoff: Backoff | None = None
    retries_held = 0
    response_code = 0  # the status sent downstream; 0 while none was
    flags = ""
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
    timer: asyncio.TimerHandle | None = None  # per-try timeout, delay or backoff
    route_timer: asyncio.TimerHandle | None = None
    up_start = 0.0
    service_time = -1
    body_size = 0
    bytes_received = 0
    bytes_sent = 0
    duration = 0.0
    # LogRecord fields this data path never sets (no TLS, no gRPC yet)
    response_code_details: str | None = None
    connection_termination_details: str | None = None
    upstream_transport_failure_reason: str | None = None
    upstream_local_address: str | None = None
    requested_server_name: str | None = None
    grpc_status = ""

    def __init__(
        self,
        down: DownstreamConnection,
        ctx: ForwardContext,
        head: RequestHead,
        has_body: bool,
        request_chunked: bool,
        original_dst: tuple[str, int] | None,
    ) -> None:
        self.down = down
        self.ctx = ctx
        self.head = head
        if has_body:
            self.has_body = True
            self.request_done = False
            self.request_chunked = request_chunked
            self.body = []
        if original_dst is not None:
            self.original_dst = original_dst
        self.resp_close = not down.keep_alive
        self.start_time = time.time()
        self.started = ctx.loop.time()
        request_id = head.headers.get("x-request-id")
        if request_id is None:
            request_id = head.headers["x-request-id"] = ctx.request_id()
        self.request_id = request_id

    # ------------------------------------------------------------------ LogRecord (read at flush time)

    @property
    def method(self) -> str:
        return self.head.method

    @property
    def path(self) -> str:
        return self.head.path  # as the client sent it, before any rewrite

    @property
    def protocol(self) -> str:
        return "HTTP/1.0" if self.http10 else "HTTP/1.1"

    @property
    def authority(self) -> str:
        return self.head.authority

    @property
    def scheme(self) -> str:
        return self.head.scheme

    @property
    def user_agent(self) -> str | None:
        return self.head.headers.get("user-agent")

    @property
    def x_forwarded_for(self) -> str | None:
        return self.head.headers.get("x-forwarded-for")

    @property
    def response_flags(self) -> str:
        return self.flags or "-"

    @property
    def upstream_service_time(self) -> float | None:
        return self.service_time / 1000 if self.service_time >= 0 else None

    @property
    def upstream_cluster(self) -> str | None:
        return self.cluster.name if self.cluster is not None else None

    @property
    def downstream_local_address(self) -> str | None:
        return self.down.local_address

    @property
    def downstream_remote_address(self) -> str | None:
        return self.down.remote_address

    @property
    def route_name(self) -> str | None:
        return self.decision.route_name if self.decision is not None else None

    @property
    def operation(self) -> str:
        return self.decision.operation if self.decision is not None else ""

    def text_line(self) -> str:
        """accesslog.format_line(self), written against this class's own fields (no property calls,
        the fields this data path never sets printed as `-`): it runs once per request. A test holds
        the two equal."""
        head = self.head
        headers = head.headers
        down = self.down
        cluster = self.cluster
        decision = self.decision
        st = self.service_time
        return (
            f'[{start_time_text(self.start_time)}] "{head.method or "-"} {head.path or "-"} '
            f'{"HTTP/1.0" if self.http10 else "HTTP/1.1"}" {self.response_code} {self.flags or "-"} - - "-" '
            f"{self.bytes_received} {self.bytes_sent} {int(self.duration * 1000)} {st if st >= 0 else '-'} "
            f'"{headers.get("x-forwarded-for") or "-"}" "{headers.get("user-agent") or "-"}" '
            f'"{self.request_id or "-"}" '
            f'"{head.authority or "-"}" "{self.upstream_host or "-"}" {cluster.name if cluster is not None else "-"} - '
            f"{down.local_address or '-'} {down.remote_address or '-'} - "
            f"{(decision.route_name if decision is not None else '') or '-'}\n"
        )

    # ------------------------------------------------------------------ downstream events

    def start(self, decision: RouteDecision) -> None:
        self.decision = decision
        if decision.kind is not DecisionKind.FORWARD:
            headers: tuple[tuple[str, str], ...] = (("location", decision.location),) if decision.location else ()
            if decision.response_flags != "-":
                self.flags = decision.response_flags
            self.local_reply(decision.status, decision.body, headers)
            return
        if decision.timeout and self.request_done and self.route_timer is None:
            self.route_timer = self.ctx.loop.call_later(decision.timeout, self._route_timeout)
        if decision.delay:
            self.flags = join_flags(self.flags, "DI")
            self.timer = self.ctx.loop.call_later(decision.delay, self._after_delay)
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
            self.route_timer = self.ctx.loop.call_later(decision.timeout, self._route_timeout)
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
        self.flags = join_flags(self.flags, "DC")
        self._abandon_upstream()
        self._finish()

    def downstream_error(self, status: int) -> None:
        """The rest of the request was malformed (Envoy: DPE): give up upstream, answer, close."""
        self._abandon_upstream()
        self.resp_close = True
        self.flags = join_flags(self.flags, "DPE")
        self.local_reply(status)

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
            self.flags = join_flags(self.flags, "FI")
            self.local_reply(decision.abort_status, http1.BODY_FAULT_ABORT)
            return
        cluster = self.ctx.clusters.get(decision.cluster)
        if cluster is None:
            self.flags = join_flags(self.flags, "NC")
            self.local_reply(503)
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
        if "x-forwarded-proto" not in headers:
            own = _FORWARDED_PROTO + own
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
        if cluster.plain_pick:
            host = cluster.pick(self.head, self.down.peer_ip)
        elif isinstance(cluster.balancer, Passthrough):
            host = cluster.balancer.pick_original(*self._original())
        elif cluster.name == PASSTHROUGH_CLUSTER:
            host = self.ctx.passthrough.pick_original(*self._original())
        else:  # consistentHash on a cookie with a ttl (cluster.makes_cookies)
            down = self.down
            pick = cluster.pick_with_cookie(self.head, down.peer_ip, down.remote_address + down.local_address)
            host = pick.host if pick is not None else None
            if pick is not None and pick.set_cookie and self.set_cookie is None:
                self.set_cookie = pick.set_cookie  # once, even if a retry picks again
        if host is None:
            self._fail_locally(503, "UH", http1.BODY_NO_HEALTHY)
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
        ctx = self.ctx
        conn.start(self, self.head.method == "HEAD", ctx.skip_response)
        if self.down.write_paused:
            conn.pause_reading(True)  # the client has not drained what came before: read on its resume
        self.up_start = ctx.loop.time()
        attempt = self.attempt
        head = self.up_head + (_ATTEMPT_1 if attempt == 1 else b"x-envoy-attempt-count: %d\r\n\r\n" % attempt)
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
            self.timer = ctx.loop.call_later(per_try, self._per_try_timeout)

    def upstream_head(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        """The response head; `headers` come lowercased, without hop-by-hop ones (and without
        `server` where we write our own), and are ours to change."""
        ctx = self.ctx
        loop_time = ctx.loop.time()
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
        self.service_time = service_time = int((loop_time - self.up_start) * 1000)
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
            conn.pool.release(conn, self.request_done and conn.parser.should_keep_alive())
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
            self.flags = join_flags(self.flags, "UPE" if reason == PROTOCOL_ERROR else "UC")
            self._settle_attempt(self.response_code)
            self.resp_close = True
            self.down.abort()
            self._finish()
            return
        if reason == CONNECTION_FAILURE:
            failure = Failure.CONNECT_FAILURE
        else:
            failure = Failure.RESET
            if conn is not None and conn.requests > 0 and not conn.got_data and self.body is not None:
                # A pooled connection the upstream closed just as we used it: retry once on a fresh one.
                self._end_attempt(None)
                self.attempt -= 1
                self.ctx.loop.call_soon(self._attempt)
                return
        report = -1 if failure is Failure.CONNECT_FAILURE else (502 if reason == PROTOCOL_ERROR else 0)
        if self._retry(Outcome(failure=failure), report_status=report):
            return
        self._end_attempt(report)
        if failure is Failure.CONNECT_FAILURE:
            self._fail_locally(503, "UF", http1.BODY_CONNECT_FAILURE)
        elif reason == PROTOCOL_ERROR:
            self._fail_locally(502, "UPE", http1.BODY_PROTOCOL_ERROR)
        else:
            self._fail_locally(503, "UC", http1.BODY_TERMINATION)

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
            self.flags = join_flags(self.flags, "URX")  # the retry limit is reached: this outcome stands
            return False
        if self.body is None or (self.has_body and not self.request_done):
            return False  # the body is not (fully) buffered: nothing to replay
        self._end_attempt(report_status)
        if not cluster.breaker.try_retry():
            return False
        self.retries_held += 1
        if self.backoff is None:
            self.backoff = Backoff(self.ctx.rng, retry.backoff_base, retry.backoff_max)
        self.timer = self.ctx.loop.call_later(self.backoff.next(), self._attempt)
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
        self._fail_locally(504, "UT", http1.BODY_TIMEOUT)

    def _route_timeout(self) -> None:
        self.route_timer = None
        if self.finished:
            return
        self._abandon_upstream(report_status=504)
        if self.resp_started:
            self.flags = join_flags(self.flags, "UT")
            self.down.abort()
            self._finish()
        else:
            self._fail_locally(504, "UT", http1.BODY_TIMEOUT)

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
        self._fail_locally(503, "UO", http1.BODY_OVERFLOW, (("x-envoy-overloaded", "true"),))

    def _fail_locally(self, status: int, flag: str, body: str, headers: tuple[tuple[str, str], ...] = ()) -> None:
        self.flags = join_flags(self.flags, flag)
        self.local_reply(status, body, headers)

    def local_reply(self, status: int, body: str = "", headers: tuple[tuple[str, str], ...] = ()) -> None:
        """Answer the client ourselves (Envoy's local reply) and end the exchange."""
        if self.finished or self.resp_started:
            return
        self.response_code = status
        self.resp_started = True
        data = http1.local_reply(status, body, headers, close=self.resp_close, head_only=self.head.method == "HEAD")
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
        """Hand the finished exchange to telemetry, once (bytes received are final by now)."""
        if self.reported:
            return
        self.reported = True
        ctx = self.ctx
        self.duration = ctx.loop.time() - self.started
        if self.body:
            self.body = None  # the access log and spans may hold this exchange a while: not its body
        telemetry = ctx.telemetry
        if telemetry is not None:
            decision = self.decision
            service = decision.service if decision is not None else ""
            if not service and self.cluster is not None:
                service = self.cluster.config.service
            if ctx.outbound:
                self.edge = edge = telemetry.outbound_edge(self.endpoint, service, False)
            else:
                self.edge = edge = telemetry.inbound_edge(self.peer_header, None, service, False)
            # Telemetry.finish(self), written out against this class's own fields: compiled, these are
            # direct reads, where the LogRecord protocol would look each one up by name.
            telemetry.metrics.record_http(
                edge, self.response_code, self.flags, self.duration * 1000.0, self.bytes_received, self.bytes_sent
            )
            trace = self.trace
            spans = telemetry.spans
            if trace is not None and trace.sampled and spans is not None:
                spans.submit(self)
            access_log = telemetry.access_log
            if access_log is not None:
                if access_log.text:
                    access_log.log_line(self.text_line())
                else:
                    access_log.log(self)
        if ctx.on_complete is not None:
            ctx.on_complete(self)

    # ------------------------------------------------------------------ mirrors

    def _start_mirrors(self) -> None:
        decision = self.decision
        if decision is None or self.body is None:
            return
        for name in decision.mirrors:
            cluster = self.ctx.clusters.get(name)
            if cluster is not None:
                Mirror(self, cluster).start()
