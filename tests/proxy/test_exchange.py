"""The exchange as a written-out conversation: fake client, fake upstream connections, manual clock.

Each test states Envoy's behaviour as Istio configures it (docs/reference/istio-semantics.md §1.5):
the status, body and headers the client gets, the RESPONSE_FLAGS and RESPONSE_CODE_DETAILS the
access log shows, and what reached the upstream. Nothing sleeps: time moves when a test says so.
"""

from __future__ import annotations

from dataplane_support import compose_for
from factories import reviews_routes, reviews_to_v1
from sansio import Playbook

from sandbox.proxy.context import ListenerClass

COMPOSE = compose_for(
    ("productpage-v1", "productpage", "v1"), ("reviews-v1", "reviews", "v1"), ("reviews-v2", "reviews", "v2")
)
ADDRESSES = {"reviews-v1": "10.0.0.1:9080", "reviews-v2": "10.0.0.2:9080"}


def playbook(istio: str = "", **kwargs: object) -> Playbook:
    return Playbook.of(COMPOSE, istio, "productpage-v1", ADDRESSES, **kwargs)


def fields(line: str) -> tuple[str, str, str]:
    """(status, RESPONSE_FLAGS, RESPONSE_CODE_DETAILS) of an access log line."""
    status, flags, details = line.split('" ', 1)[1].split()[:3]
    return status, flags, details


# --------------------------------------------------------------------------- upstream failures


def test_connect_failures_are_retried_twice_then_answered_503_uf_urx() -> None:
    pb = playbook(reviews_to_v1())
    _, client = pb.send()
    pb.connector.refuse()
    assert client.sent == b""  # Istio's default policy retries connect failures, after a backoff
    for _ in range(2):
        pb.timers.advance(0.25)  # the backoff is at most 10 x 25 ms
        pb.connector.refuse()
    response = client.response()
    assert response.status == 503
    assert (
        response.body == b"upstream connect error or disconnect/reset before headers. reset reason: connection failure"
    )
    assert fields(pb.log()[0]) == ("503", "UF,URX", "upstream_reset_before_response_started{connection_failure}")


def test_a_reset_before_the_response_is_503_uc_and_not_retried_by_default() -> None:
    pb = playbook(reviews_to_v1())
    _, client = pb.send()
    pb.connector.accept().reset()
    assert client.response().status == 503
    assert client.response().body.endswith(b"reset reason: connection termination")
    assert fields(pb.log()[0]) == ("503", "UC", "upstream_reset_before_response_started{connection_termination}")
    assert pb.connector.waiting == []  # no second attempt


def test_an_upstream_that_does_not_speak_http_is_502_upe() -> None:
    pb = playbook(reviews_to_v1())
    _, client = pb.send()
    pb.connector.accept().garbage()
    assert client.response().status == 502
    assert fields(pb.log()[0]) == ("502", "UPE", "upstream_reset_before_response_started{protocol_error}")


def test_a_reset_after_the_response_started_aborts_the_client_connection() -> None:
    pb = playbook(reviews_to_v1())
    _, client = pb.send()
    pb.connector.accept().respond_head_then_reset()
    assert client.aborted and client.sent.startswith(b"HTTP/1.1 200 ")
    assert fields(pb.log()[0]) == ("200", "UC", "upstream_reset_after_response_started{connection_termination}")


def test_a_proxied_response_says_via_upstream_and_its_service_time() -> None:
    pb = playbook(reviews_to_v1())
    _, client = pb.send()
    upstream = pb.connector.accept()
    pb.timers.advance(0.042)
    upstream.respond(200, b"hello")
    response = client.response()
    assert (response.status, response.body) == (200, b"hello")
    assert response.headers["x-envoy-upstream-service-time"] == "42"
    assert response.headers["server"] == "envoy"
    assert fields(pb.log()[0]) == ("200", "-", "via_upstream")


# --------------------------------------------------------------------------- timeouts


def test_the_route_timeout_answers_504_ut_and_drops_the_upstream_request() -> None:
    pb = playbook(reviews_to_v1(timeout="1s"))
    _, client = pb.send()
    upstream = pb.connector.accept()
    assert upstream.request_heads()[0]["x-envoy-expected-rq-timeout-ms"] == "1000"
    pb.timers.advance(0.999)
    assert client.sent == b""
    pb.timers.advance(0.001)
    assert (client.response().status, client.response().body) == (504, b"upstream request timeout")
    assert upstream.closed
    assert fields(pb.log()[0]) == ("504", "UT", "response_timeout")


def test_per_try_timeouts_are_retried_then_answered_504() -> None:
    pb = playbook(reviews_to_v1(retries="{attempts: 1, perTryTimeout: 0.2s, retryOn: gateway-error}"))
    _, client = pb.send()
    first = pb.connector.accept()
    pb.timers.advance(0.2)
    assert first.closed and client.sent == b""
    pb.timers.advance(0.25)  # backoff
    second = pb.connector.accept()
    assert second.request_heads()[0]["x-envoy-attempt-count"] == "2"
    pb.timers.advance(0.2)
    assert client.response().status == 504
    assert fields(pb.log()[0]) == ("504", "UT,URX", "upstream_per_try_timeout")


# --------------------------------------------------------------------------- retries


def test_retries_on_5xx_carry_the_attempt_count_until_one_succeeds() -> None:
    pb = playbook(reviews_to_v1(retries="{attempts: 3, retryOn: 5xx}"))
    _, client = pb.send()
    counts = []
    for status in (503, 503, 200):
        pb.timers.advance(0.25)
        conn = pb.connector.accept() if pb.connector.waiting else pb.connector.opened[-1]
        counts.append(conn.request_heads()[-1]["x-envoy-attempt-count"])
        conn.respond(status, b"ok" if status == 200 else b"fail", keep_alive=False)
    assert counts == ["1", "2", "3"]
    assert (client.response().status, client.response().body) == (200, b"ok")
    assert fields(pb.log()[0]) == ("200", "-", "via_upstream")


def test_exhausted_retries_pass_the_last_response_on_with_urx() -> None:
    pb = playbook(reviews_to_v1(retries="{attempts: 2, retryOn: 5xx}"))
    _, client = pb.send()
    for _ in range(3):
        pb.timers.advance(0.25)
        pb.connector.accept().respond(503, b"still broken", keep_alive=False)
    assert (client.response().status, client.response().body) == (503, b"still broken")
    assert fields(pb.log()[0]) == ("503", "URX", "via_upstream")


def test_each_retry_after_a_connect_failure_picks_the_other_endpoint() -> None:
    # Istio's default retry_host_predicate (previous_hosts, 5 selection attempts): with two
    # endpoints, the retry never goes back to the host that just failed.
    pb = playbook(
        reviews_routes(
            "  - route: [{destination: {host: reviews}}]\n    retries: {attempts: 1, retryOn: connect-failure}"
        )
    )
    for _ in range(8):
        _, client = pb.send()
        failed = pb.connector.waiting[0].host.address
        pb.connector.refuse()
        pb.timers.advance(0.25)
        retried = pb.connector.waiting[0].host.address
        assert retried != failed
        pb.connector.accept().respond(keep_alive=False)  # no warm connection: each attempt connects
        assert client.response().status == 200


# --------------------------------------------------------------------------- faults and local replies


def test_a_fault_delay_holds_the_request_then_forwards_it_with_di() -> None:
    pb = playbook(reviews_to_v1(fault="{delay: {fixedDelay: 2s, percentage: {value: 100}}}"))
    _, client = pb.send()
    pb.timers.advance(1.999)
    assert pb.connector.waiting == []
    pb.timers.advance(0.001)
    pb.connector.accept().respond()
    assert client.response().status == 200
    assert fields(pb.log()[0]) == ("200", "DI", "via_upstream")


def test_a_fault_abort_answers_locally_with_fi_and_the_routes_response_headers() -> None:
    abort = "{abort: {httpStatus: 555, percentage: {value: 100}}}"
    pb = playbook(reviews_to_v1(fault=abort, headers="{response: {set: {x-served-by: mesh}, add: {x-trace: fault}}}"))
    _, client = pb.send()
    response = client.response()
    assert (response.status, response.body) == (555, b"fault filter abort")
    assert response.headers["x-served-by"] == "mesh" and response.headers["x-trace"] == "fault"
    assert pb.connector.waiting == []
    assert fields(pb.log()[0]) == ("555", "FI", "fault_filter_abort")


def test_redirects_and_direct_responses_carry_the_routes_response_headers() -> None:
    http = """  - match: [{uri: {exact: /old}}]
    redirect: {uri: /new}
    headers: {response: {set: {x-why: moved}}}
  - match: [{uri: {exact: /teapot}}]
    directResponse: {status: 418, body: {string: teapot}}
    headers: {response: {add: {x-why: short-and-stout}}}"""
    pb = playbook(reviews_routes(http))
    _, moved = pb.send("/old")
    _, teapot = pb.send("/teapot")
    assert moved.response().status == 301 and moved.response().headers["location"] == "http://reviews:9080/new"
    assert moved.response().headers["x-why"] == "moved"
    assert (teapot.response().status, teapot.response().body) == (418, b"teapot")
    assert teapot.response().headers["x-why"] == "short-and-stout"
    assert [fields(line)[2] for line in pb.log()] == ["direct_response", "direct_response"]


def test_a_cors_preflight_is_answered_with_the_access_control_headers() -> None:
    cors = (
        "{allowOrigins: [{exact: 'https://shop.example'}], allowMethods: [GET, POST], allowHeaders: [x-token],"
        " maxAge: 24h, allowCredentials: true}"
    )
    pb = playbook(reviews_to_v1(corsPolicy=cors))
    preflight = {"origin": "https://shop.example", "access-control-request-method": "POST"}
    _, client = pb.send(method="OPTIONS", headers=preflight)
    response = client.response()
    assert response.status == 200
    assert response.headers["access-control-allow-origin"] == "https://shop.example"
    assert response.headers["access-control-allow-methods"] == "GET,POST"
    assert response.headers["access-control-allow-headers"] == "x-token"
    assert response.headers["access-control-max-age"] == "86400"
    assert response.headers["access-control-allow-credentials"] == "true"
    assert pb.connector.waiting == []
    assert fields(pb.log()[0]) == ("200", "-", "cors_response")


def test_a_mirror_gets_a_shadow_copy_and_the_primary_never_waits_for_it() -> None:
    pb = playbook(reviews_to_v1(mirror="{host: reviews, subset: v2}"))
    _, client = pb.send("/m", method="POST", body=b"payload")
    pools = [pool.host.address for pool in pb.connector.waiting]
    assert sorted(pools) == sorted(ADDRESSES.values())  # the primary's and the shadow's connections
    pb.connector.accept(ADDRESSES["reviews-v1"]).respond(200, b"hello")
    assert client.response().body == b"hello"  # answered while the shadow has no connection yet
    shadow = pb.connector.accept(ADDRESSES["reviews-v2"])
    (copy,) = shadow.request_heads()
    assert copy[":line"] == "POST /m HTTP/1.1" and copy["host"] == "reviews-shadow:9080"
    assert bytes(shadow.sent).endswith(b"\r\n\r\npayload")
    shadow.respond(500)  # its answer goes nowhere
    assert len(pb.log()) == 1


def test_no_route_is_404_nr_and_an_unknown_subset_503_nc() -> None:
    http = """  - match: [{uri: {prefix: /v9}}]
    route: [{destination: {host: reviews, subset: v9}}]
  - match: [{uri: {prefix: /v1}}]
    route: [{destination: {host: reviews, subset: v1}}]"""
    pb = playbook(reviews_routes(http))
    _, nowhere = pb.send("/elsewhere")  # no route of the service matches
    _, missing = pb.send("/v9")
    assert (nowhere.response().status, missing.response().status) == (404, 503)
    assert [fields(line) for line in pb.log()] == [("404", "NR", "route_not_found"), ("503", "NC", "cluster_not_found")]


def test_the_client_leaving_mid_request_closes_the_upstream_request_with_dc() -> None:
    pb = playbook(reviews_to_v1())
    exchange, _ = pb.send()
    upstream = pb.connector.accept()
    exchange.downstream_lost()
    assert upstream.closed
    assert fields(pb.log()[0]) == ("0", "DC", "downstream_remote_disconnect")


# --------------------------------------------------------------------------- circuit breaking and outliers


BREAKER = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 1}
      http: {http1MaxPendingRequests: 1}
    loadBalancer: {simple: ROUND_ROBIN}
  subsets:
  - {name: v1, labels: {version: v1}}
"""


def test_past_the_pending_limit_requests_overflow_with_503_uo() -> None:
    pb = playbook(reviews_routes("  - route: [{destination: {host: reviews, subset: v1}}]", BREAKER))
    _, first = pb.send()
    conn = pb.connector.accept()  # the one connection (maxConnections 1) serves the first
    _, second = pb.send()  # waits for it: the one pending request allowed
    _, third = pb.send()
    response = third.response()
    assert response.status == 503 and response.headers["x-envoy-overloaded"] == "true"
    assert response.body.endswith(b"reset reason: overflow")
    conn.respond()
    pb.timers.run_soon()  # the freed connection goes to the waiter on the next turn
    conn.respond()
    assert (first.response().status, second.response().status) == (200, 200)
    assert len(pb.connector.opened) == 1
    assert [fields(line)[:2] for line in pb.log()] == [("503", "UO"), ("200", "-"), ("200", "-")]


OUTLIERS = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    outlierDetection: {consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 30s, maxEjectionPercent: 100}
"""


def test_a_failing_endpoint_is_ejected_for_base_ejection_time_then_brought_back() -> None:
    pb = playbook(reviews_routes("  - route: [{destination: {host: reviews}}]\n    retries: {attempts: 0}", OUTLIERS))
    bad = ADDRESSES["reviews-v1"]

    def answer_one() -> str:
        pb.send()
        pool = pb.connector.waiting[0] if pb.connector.waiting else None
        conn = pb.connector.accept() if pool is not None else next(c for c in pb.connector.opened if c.sink)
        address = conn.pool.host.address
        conn.respond(500 if address == bad else 200)
        return address

    seen = [answer_one() for _ in range(4)]
    assert seen.count(bad) == 1  # one 500 ejected it
    assert [answer_one() for _ in range(4)] == [ADDRESSES["reviews-v2"]] * 4
    pb.timers.advance(31)  # baseEjectionTime x 1, noticed at the next sweep
    assert bad in [answer_one() for _ in range(4)]


def test_nothing_healthy_is_503_uh() -> None:
    pb = playbook(reviews_routes("  - route: [{destination: {host: reviews}}]\n    retries: {attempts: 0}", OUTLIERS))
    for _ in range(2):
        pb.send()
        pb.connector.accept().respond(500)
    _, client = pb.send()
    assert (client.response().status, client.response().body) == (503, b"no healthy upstream")
    assert fields(pb.log()[-1]) == ("503", "UH", "no_healthy_upstream")


# --------------------------------------------------------------------------- the connection pool


def pool_rule(settings: str) -> str:
    return reviews_routes(
        "  - route: [{destination: {host: reviews, subset: v1}}]",
        f"""
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: reviews}}
spec:
  host: reviews
  trafficPolicy:
    connectionPool: {settings}
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
""",
    )


def test_an_idle_upstream_connection_is_closed_after_idle_timeout() -> None:
    pb = playbook(pool_rule("{http: {idleTimeout: 5s}}"))
    pb.send()
    conn = pb.connector.accept()
    conn.respond()
    pb.timers.advance(4.9)
    assert not conn.closed
    pb.send()  # reused: idle again from here
    assert pb.connector.waiting == []
    conn.respond()
    pb.timers.advance(4.9)
    assert not conn.closed
    pb.timers.advance(0.2)
    assert conn.closed


def test_a_connection_older_than_max_connection_duration_takes_no_new_request() -> None:
    pb = playbook(pool_rule("{tcp: {maxConnectionDuration: 10s}}"))
    pb.send()
    old = pb.connector.accept()
    pb.timers.advance(9)
    old.respond()
    pb.send()
    assert pb.connector.waiting == []  # still young: reused
    pb.timers.advance(2)
    old.respond()
    assert old.closed  # past its duration: closed instead of parked
    pb.send()
    assert len(pb.connector.waiting) == 1


# --------------------------------------------------------------------------- the listener classes


def test_the_inbound_side_passes_the_callers_attempt_count_to_the_app() -> None:
    # Istio's inbound route counts no attempts: the app sees the attempt of the client's sidecar.
    pb = Playbook.inbound(COMPOSE, "reviews-v1", "127.0.0.1:9080")
    _, client = pb.send(headers={"x-envoy-attempt-count": "3", "x-request-id": "r1"})
    app = pb.connector.accept()
    assert app.request_heads()[0]["x-envoy-attempt-count"] == "3"
    app.respond(200, headers=(("server", "gunicorn"),))
    assert client.response().headers["server"] == "istio-envoy"  # Istio's inbound server name


def test_a_gateway_appends_the_client_to_x_forwarded_for_and_answers_as_istio_envoy() -> None:
    gateway = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: ["*"]
  gateways: [gw]
  http: [{route: [{destination: {host: reviews}}]}]
"""
    pb = Playbook.of(COMPOSE, gateway, "istio-ingressgateway", ADDRESSES, listener=ListenerClass.GATEWAY)
    _, client = pb.send(host="shop.example:80", headers={"x-forwarded-for": "203.0.113.9"})
    conn = pb.connector.accept()
    sent = conn.request_heads()[0]
    assert sent["x-forwarded-for"] == "203.0.113.9,127.0.0.1"
    assert sent["x-envoy-external-address"] == "127.0.0.1"
    conn.respond(200, headers=(("server", "gunicorn"),))
    assert client.response().headers["server"] == "istio-envoy"
    assert '"203.0.113.9,127.0.0.1"' in pb.log()[0]


# --------------------------------------------------------------------------- the Telemetry API


def telemetry(spec: str, namespace: str = "default") -> str:
    return f"""
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {{name: t, namespace: {namespace}}}
spec:
{spec}
"""


def test_without_telemetry_resources_every_request_is_logged_and_traced() -> None:
    pb = playbook(reviews_to_v1())
    pb.send()
    pb.connector.accept().respond()
    assert len(pb.log()) == 1 and len(pb.sent_spans()) == 1


def test_telemetry_turns_the_client_sides_access_log_off() -> None:
    pb = playbook(reviews_to_v1() + "---" + telemetry("  accessLogging: [{match: {mode: CLIENT}, disabled: true}]"))
    _, client = pb.send()
    pb.connector.accept().respond()
    assert client.response().status == 200 and pb.log() == []


def test_telemetry_sampling_zero_sends_no_span_but_keeps_the_metrics() -> None:
    pb = playbook(reviews_to_v1() + "---" + telemetry("  tracing: [{randomSamplingPercentage: 0}]", "istio-system"))
    pb.send()
    pb.connector.accept().respond()
    assert pb.sent_spans() == []
    assert 'response_code="200"' in pb.ctx.telemetry.prometheus_text()  # type: ignore[union-attr]


def test_telemetry_custom_tags_reach_every_span() -> None:
    tags = "{team: {literal: {value: shop}}, user: {header: {name: end-user, defaultValue: anonymous}}}"
    pb = playbook(reviews_to_v1() + "---" + telemetry(f"  tracing: [{{customTags: {tags}}}]"))
    for headers in ({"end-user": "jason"}, {}):
        pb.send(headers=headers)
        (
            pb.connector.opened[0] if pb.connector.opened and pb.connector.opened[0].sink else pb.connector.accept()
        ).respond()
    first, second = pb.sent_spans()
    assert first["tags"]["team"] == second["tags"]["team"] == "shop"
    assert (first["tags"]["user"], second["tags"]["user"]) == ("jason", "anonymous")
