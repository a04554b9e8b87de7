"""Simulation tests for route(): (Istio YAML, request) -> the decision a client would live with.

Bookinfo's own rule files (tests/fixtures/bookinfo) drive the scenarios of Istio's tasks; small
inline VirtualServices cover each matching, rewrite, redirect, CORS, fault and mirror rule of
docs/reference/istio-semantics.md §1.1. Random draws use a seeded rng and are checked
against binomial bounds, never exact counts.
"""

from __future__ import annotations

import dataclasses
import math
import random
import textwrap
from collections import Counter
from dataclasses import fields
from pathlib import Path

import pytest

from sandbox.control.compile import compile as compile_snapshot
from sandbox.mesh.loader import load_texts
from sandbox.mesh.state import MeshState
from sandbox.mesh.topology import load_compose, parse_compose
from sandbox.proxy.decision import shadow_authority
from sandbox.proxy.routing import DecisionKind, RequestHead, RouteDecision, RouteTable, route
from sandbox.xds.snapshot import ProxySnapshot

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "bookinfo"
BOOKINFO = load_compose(FIXTURES / "compose.yaml")
REVIEWS = "reviews.default.svc.cluster.local"
RATINGS = "ratings.default.svc.cluster.local"


def cluster(host: str, subset: str = "", port: int = 9080) -> str:
    return f"outbound|{port}|{subset}|{host}"


def snapshot(
    *inline: str, files: tuple[str, ...] = (), proxy: str = "productpage-v1", compose: str | None = None
) -> ProxySnapshot:
    texts: list[tuple[str, str | bytes]] = [(name, (FIXTURES / name).read_text()) for name in files]
    texts += [(f"inline-{i}.yaml", textwrap.dedent(doc)) for i, doc in enumerate(inline)]
    loaded = load_texts(texts)
    assert not loaded.errors, loaded.errors
    topology = parse_compose(textwrap.dedent(compose), "compose.yaml") if compose else BOOKINFO
    return compile_snapshot(MeshState(loaded.resources, topology), proxy)


def request(
    authority: str = "reviews:9080",
    path: str = "/reviews/0",
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    scheme: str = "http",
    port: int | None = None,
) -> RequestHead:
    if port is None:
        port = int(authority.rsplit(":", 1)[1]) if ":" in authority else 80
    return RequestHead(method, path, authority, headers or {}, port, scheme)


def decide(snap: ProxySnapshot, head: RequestHead, seed: int = 1) -> RouteDecision:
    return route(head, snap, random.Random(seed))


def reviews_vs(http: str, extra: str = "") -> str:
    """A VirtualService for reviews with the given `http:` list (YAML, indented by 2)."""
    return (
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews}\n"
        "spec:\n  hosts: [reviews]\n" + extra + "  http:\n" + textwrap.indent(textwrap.dedent(http), "  ")
    )


DR_ALL = ("destination-rule-all.yaml",)
JASON = {"end-user": "jason"}


# --------------------------------------------------------------------------- Bookinfo tasks


BOOKINFO_CASES = [
    # (rule files, request, expected cluster) -- request-routing and traffic-shifting tasks
    ((), request(), cluster(REVIEWS)),  # no VS: default route to every endpoint
    ((), request("details:9080", "/details/0"), cluster("details.default.svc.cluster.local")),
    (("virtual-service-all-v1.yaml",), request(), cluster(REVIEWS, "v1")),
    (("virtual-service-all-v1.yaml",), request(headers=JASON), cluster(REVIEWS, "v1")),
    (("virtual-service-reviews-test-v2.yaml",), request(headers=JASON), cluster(REVIEWS, "v2")),
    (("virtual-service-reviews-test-v2.yaml",), request(), cluster(REVIEWS, "v1")),
    (("virtual-service-reviews-test-v2.yaml",), request(headers={"end-user": "Jason"}), cluster(REVIEWS, "v1")),
    (("virtual-service-reviews-test-v2.yaml",), request(headers={"end-user": "jason2"}), cluster(REVIEWS, "v1")),
    (("virtual-service-reviews-v3.yaml",), request(headers=JASON), cluster(REVIEWS, "v3")),
    (("virtual-service-reviews-v3.yaml",), request(REVIEWS + ":9080"), cluster(REVIEWS, "v3")),
    (("virtual-service-reviews-v3.yaml",), request("reviews.default:9080"), cluster(REVIEWS, "v3")),
    (("virtual-service-reviews-v3.yaml",), request("reviews", port=9080), cluster(REVIEWS, "v3")),  # captured
    (("virtual-service-reviews-v3.yaml",), request("reviews"), "PassthroughCluster"),  # port 80: not the service
    (("virtual-service-ratings-test-delay.yaml",), request("ratings:9080", "/ratings/0"), cluster(RATINGS, "v1")),
]


@pytest.mark.parametrize(("files", "head", "expected"), BOOKINFO_CASES)
def test_bookinfo_routing(files: tuple[str, ...], head: RequestHead, expected: str) -> None:
    decision = decide(snapshot(files=DR_ALL + files), head)
    assert decision.kind is DecisionKind.FORWARD
    assert decision.cluster == expected
    assert decision.path == head.path and decision.authority == head.authority


def test_ratings_delay_for_jason_only() -> None:
    snap = snapshot(files=(*DR_ALL, "virtual-service-ratings-test-delay.yaml"))
    jason = decide(snap, request("ratings:9080", "/ratings/0", headers=JASON))
    assert (jason.delay, jason.abort_status, jason.response_flags) == (7.0, None, "DI")
    assert jason.cluster == cluster(RATINGS, "v1")
    other = decide(snap, request("ratings:9080", "/ratings/0"))
    assert (other.delay, other.response_flags) == (None, "-")


def test_ratings_abort_for_jason_only() -> None:
    snap = snapshot(files=(*DR_ALL, "virtual-service-ratings-test-abort.yaml"))
    jason = decide(snap, request("ratings:9080", "/ratings/0", headers=JASON))
    assert (jason.abort_status, jason.status, jason.body, jason.response_flags) == (
        500,
        500,
        "fault filter abort",
        "FI",
    )
    assert jason.local_reply
    other = decide(snap, request("ratings:9080", "/ratings/0"))
    assert (other.abort_status, other.local_reply) == (None, False)


def binomial_ok(hits: int, n: int, p: float, sigmas: float = 5.0) -> bool:
    spread = sigmas * math.sqrt(n * p * (1 - p))
    return n * p - spread <= hits <= n * p + spread


@pytest.mark.parametrize(
    ("file", "expected"),
    [
        ("virtual-service-reviews-50-v3.yaml", {"v1": 0.5, "v3": 0.5}),
        ("virtual-service-reviews-80-20.yaml", {"v1": 0.8, "v2": 0.2}),
    ],
)
def test_traffic_shifting_is_statistically_right(file: str, expected: dict[str, float]) -> None:
    snap = snapshot(files=(*DR_ALL, file))
    rng = random.Random(20240501)
    n = 4000
    counts = Counter(route(request(), snap, rng).cluster.split("|")[2] for _ in range(n))
    assert set(counts) == set(expected)
    for subset, p in expected.items():
        assert binomial_ok(counts[subset], n, p), (subset, counts)


def test_ingress_gateway_routes_bookinfo_paths() -> None:
    snap = snapshot(files=(*DR_ALL, "bookinfo-gateway.yaml"), proxy="istio-ingressgateway")
    productpage = cluster("productpage.default.svc.cluster.local")
    for path in ("/productpage", "/static/css/x.css", "/login", "/logout", "/api/v1/products/0/reviews"):
        decision = decide(snap, request("localhost:8080", path))
        assert (decision.kind, decision.cluster) == (DecisionKind.FORWARD, productpage), path
    for path in ("/", "/loginx", "/productpage/x", "/health"):
        decision = decide(snap, request("localhost:8080", path))
        assert (decision.kind, decision.status, decision.response_flags) == (DecisionKind.NO_ROUTE, 404, "NR"), path
    assert decide(snap, request("anything.example:8080", "/productpage?u=test")).cluster == productpage


def test_gateway_bound_vs_does_not_apply_to_sidecars() -> None:
    snap = snapshot(files=(*DR_ALL, "bookinfo-gateway.yaml"))
    assert decide(snap, request("productpage:9080", "/productpage")).cluster == cluster(
        "productpage.default.svc.cluster.local"
    )


# --------------------------------------------------------------------------- matching


MATCH_CASES = [
    # (match block YAML, request, matches?)
    ("uri: {exact: /reviews/0}", request(path="/reviews/0"), True),
    ("uri: {exact: /reviews/0}", request(path="/reviews/0?x=1"), True),  # the query is not part of the path
    ("uri: {exact: /reviews/0}", request(path="/reviews/01"), False),
    ("uri: {exact: /reviews/0}", request(path="/Reviews/0"), False),  # case-sensitive by default
    ("{uri: {exact: /reviews/0}, ignoreUriCase: true}", request(path="/REVIEWS/0"), True),
    ("uri: {prefix: /rev}", request(path="/reviews/0"), True),
    ("uri: {prefix: /rev}", request(path="/api/reviews"), False),
    ("{uri: {prefix: /REV}, ignoreUriCase: true}", request(path="/reviews"), True),
    ("uri: {regex: '/reviews/[0-9]+'}", request(path="/reviews/42"), True),
    ("uri: {regex: '/reviews/[0-9]+'}", request(path="/reviews/42/x"), False),  # full match, not search
    ("{uri: {regex: '/reviews/[0-9]+'}, ignoreUriCase: true}", request(path="/REVIEWS/42"), False),
    ("headers: {end-user: {exact: jason}}", request(headers=JASON), True),
    ("headers: {end-user: {prefix: ja}}", request(headers=JASON), True),
    ("headers: {end-user: {regex: 'j.*n'}}", request(headers=JASON), True),
    ("headers: {end-user: {regex: 'j.*'}}", request(headers={"end-user": "xjason"}), False),
    ("headers: {end-user: {}}", request(headers={"end-user": ""}), True),  # presence
    ("headers: {end-user: {}}", request(), False),
    ("headers: {end-user: {regex: '*'}}", request(headers=JASON), True),  # Istio: regex "*" means present
    ("headers: {End-User: {exact: jason}}", request(headers=JASON), True),  # names are case-insensitive
    ("withoutHeaders: {end-user: {exact: jason}}", request(headers=JASON), False),
    ("withoutHeaders: {end-user: {exact: jason}}", request(headers={"end-user": "bob"}), True),
    ("withoutHeaders: {end-user: {exact: jason}}", request(), True),  # missing is treated as empty
    ("withoutHeaders: {end-user: {}}", request(), True),
    ("withoutHeaders: {end-user: {}}", request(headers=JASON), False),
    ("queryParams: {u: {exact: test}}", request(path="/reviews/0?u=test"), True),
    ("queryParams: {u: {exact: test}}", request(path="/reviews/0?u=normal"), False),
    ("queryParams: {u: {exact: test}}", request(path="/reviews/0"), False),
    ("queryParams: {u: {regex: 't.st'}}", request(path="/reviews/0?a=1&u=test"), True),
    ("queryParams: {debug: {exact: ''}}", request(path="/reviews/0?debug"), True),  # `?key` is exact ""
    ("queryParams: {debug: {}}", request(path="/reviews/0?debug=1"), True),
    ("method: {exact: POST}", request(method="POST"), True),
    ("method: {exact: POST}", request(), False),
    ("scheme: {exact: https}", request(scheme="https"), True),
    ("scheme: {exact: https}", request(), False),
    ("authority: {prefix: reviews}", request("reviews.default:9080"), True),
    ("authority: {exact: reviews}", request("reviews:9080"), False),  # the Host header as sent, port included
    ("{uri: {prefix: /reviews}, method: {exact: GET}}", request(method="GET"), True),  # fields are ANDed
    ("{uri: {prefix: /reviews}, method: {exact: GET}}", request(method="PUT"), False),
]


@pytest.mark.parametrize(("match", "head", "matches"), MATCH_CASES)
def test_match_conditions(match: str, head: RequestHead, matches: bool) -> None:
    vs = reviews_vs(
        f"""
        - match:
          - {match}
          route: [{{destination: {{host: reviews, subset: v2}}}}]
        - route: [{{destination: {{host: reviews, subset: v1}}}}]
        """
    )
    decision = decide(snapshot(vs, files=DR_ALL), head)
    assert decision.cluster == cluster(REVIEWS, "v2" if matches else "v1")


def test_match_blocks_are_ored_and_first_route_wins() -> None:
    vs = reviews_vs(
        """
        - match: [{uri: {prefix: /a}}, {headers: {x-canary: {exact: "1"}}}]
          route: [{destination: {host: reviews, subset: v3}}]
        - match: [{uri: {prefix: /a}}]
          route: [{destination: {host: reviews, subset: v2}}]
        - route: [{destination: {host: reviews, subset: v1}}]
        """
    )
    snap = snapshot(vs, files=DR_ALL)
    assert decide(snap, request(path="/a/b")).cluster == cluster(REVIEWS, "v3")
    assert decide(snap, request(path="/b", headers={"x-canary": "1"})).cluster == cluster(REVIEWS, "v3")
    assert decide(snap, request(path="/b")).cluster == cluster(REVIEWS, "v1")


def test_no_matching_route_is_404_nr() -> None:
    snap = snapshot(reviews_vs("- match: [{uri: {exact: /only}}]\n  route: [{destination: {host: reviews}}]\n"))
    decision = decide(snap, request(path="/other"))
    assert (decision.kind, decision.status, decision.body, decision.response_flags) == (
        DecisionKind.NO_ROUTE,
        404,
        "",
        "NR",
    )
    assert decision.virtual_host == f"{REVIEWS}:9080"


# --------------------------------------------------------------------------- destinations


def test_relative_weights_and_zero_weight() -> None:
    vs = reviews_vs(
        """
        - route:
          - {destination: {host: reviews, subset: v1}, weight: 1}
          - {destination: {host: reviews, subset: v2}, weight: 2}
          - {destination: {host: reviews, subset: v3}, weight: 0}
        """
    )
    snap = snapshot(vs, files=DR_ALL)
    rng = random.Random(7)
    n = 3000
    counts = Counter(route(request(), snap, rng).cluster.split("|")[2] for _ in range(n))
    assert counts["v3"] == 0  # weight 0 gets no traffic
    assert binomial_ok(counts["v2"], n, 2 / 3)


def test_single_destination_gets_everything_whatever_its_weight() -> None:
    snap = snapshot(reviews_vs("- route: [{destination: {host: reviews, subset: v2}, weight: 30}]\n"), files=DR_ALL)
    rng = random.Random(3)
    assert {route(request(), snap, rng).cluster for _ in range(200)} == {cluster(REVIEWS, "v2")}


def test_unknown_subset_is_503_nc() -> None:
    snap = snapshot(reviews_vs("- route: [{destination: {host: reviews, subset: v9}}]\n"), files=DR_ALL)
    decision = decide(snap, request())
    assert (decision.kind, decision.status, decision.response_flags) == (DecisionKind.NO_CLUSTER, 503, "NC")
    assert decision.cluster == cluster(REVIEWS, "v9")


def test_destination_port_and_other_service() -> None:
    vs = reviews_vs("- route: [{destination: {host: ratings, port: {number: 9080}}}]\n")
    assert decide(snapshot(vs), request()).cluster == cluster(RATINGS)


def test_unknown_host_passes_through_under_allow_any() -> None:
    decision = decide(snapshot(), request("example.com", "/x"))
    assert (decision.kind, decision.cluster, decision.authority) == (
        DecisionKind.FORWARD,
        "PassthroughCluster",
        "example.com",
    )
    assert decide(snapshot(), request("nowhere:9080", "/")).cluster == "PassthroughCluster"


def test_unknown_host_is_502_under_registry_only() -> None:
    compose = (FIXTURES / "compose.yaml").read_text() + "x-sandbox:\n  outboundTrafficPolicy: {mode: REGISTRY_ONLY}\n"
    snap = snapshot(compose=compose)
    decision = decide(snap, request("example.com", "/x"))
    assert (decision.kind, decision.status, decision.route_name) == (DecisionKind.DIRECT_RESPONSE, 502, "block_all")
    assert decide(snap, request()).cluster == cluster(REVIEWS)


# --------------------------------------------------------------------------- rewrite, redirect, direct response


REWRITE_CASES = [
    # (match, rewrite, request path, expected upstream path)
    ("[{uri: {prefix: /reviews}}]", "{uri: /v2/reviews}", "/reviews/0?x=1", "/v2/reviews/0?x=1"),
    ("[{uri: {prefix: /reviews/}}]", "{uri: /}", "/reviews/0", "/0"),
    ("[{uri: {exact: /reviews/0}}]", "{uri: /r}", "/reviews/0?x=1", "/r?x=1"),  # exact: the whole path
    ("[{uri: {regex: '/reviews/.*'}}]", "{uri: /r}", "/reviews/0", "/r"),  # regex: the whole path
    ("[{headers: {a: {}}}]", "{uri: /p}", "/reviews/0", "/previews/0"),  # no uri match = prefix "/" (Envoy)
    (
        "[{uri: {prefix: /reviews}}]",
        r"{uriRegexRewrite: {match: '^/reviews/(\d+)$', rewrite: '/api/\1'}}",
        "/reviews/42?q",
        "/api/42?q",
    ),
]


@pytest.mark.parametrize(("match", "rewrite", "path", "expected"), REWRITE_CASES)
def test_uri_rewrite(match: str, rewrite: str, path: str, expected: str) -> None:
    vs = reviews_vs(f"- match: {match}\n  rewrite: {rewrite}\n  route: [{{destination: {{host: reviews}}}}]\n")
    decision = decide(snapshot(vs), request(path=path, headers={"a": "1"}))
    assert decision.path == expected


@pytest.mark.parametrize(
    "http",
    [
        "- route: [{destination: {host: reviews}}]\n",
        "- route: [{destination: {host: reviews, subset: v1}, weight: 50},"
        " {destination: {host: reviews, subset: v2}, weight: 50}]\n",
        "- rewrite: {uri: /api}\n  route: [{destination: {host: reviews}}]\n",
        "- rewrite: {authority: reviews.internal}\n  route: [{destination: {host: reviews}}]\n",
        "- timeout: 2s\n  retries: {attempts: 1}\n  route: [{destination: {host: reviews}}]\n",
        "- fault: {abort: {httpStatus: 500, percentage: {value: 100}}}\n  route: [{destination: {host: reviews}}]\n",
    ],
)
def test_the_data_paths_decision_is_route_with_the_requests_own_path_and_authority_left_empty(http: str) -> None:
    snap = snapshot(reviews_vs(http), files=DR_ALL)
    for head in (request(), request(path="/reviews/7?x=1"), request(headers={"x-envoy-upstream-rq-timeout-ms": "50"})):
        full, fast = decide(snap, head, seed=3), RouteTable(snap).route(head, random.Random(3), prototypes=True)
        assert (fast.path or head.path, fast.authority or head.authority) == (full.path, full.authority)
        assert dataclasses.replace(fast, path=full.path, authority=full.authority) == full  # and the rest is equal


def test_authority_rewrite_and_host_header_set() -> None:
    snap = snapshot(reviews_vs("- rewrite: {authority: reviews.internal}\n  route: [{destination: {host: reviews}}]\n"))
    assert decide(snap, request()).authority == "reviews.internal"
    vs = reviews_vs("- headers: {request: {set: {host: by-header}}}\n  route: [{destination: {host: reviews}}]\n")
    decision = decide(snapshot(vs), request())
    assert decision.authority == "by-header"
    assert all(("host", "by-header") not in m.set for m in decision.request_headers)  # not sent as a header


REDIRECT_CASES = [
    # (redirect YAML, request, expected status, expected Location)
    ("{uri: /v1/reviews}", request(path="/old?x=1"), 301, "http://reviews:9080/v1/reviews?x=1"),
    ("{uri: /new, redirectCode: 302}", request(path="/old"), 302, "http://reviews:9080/new"),
    ("{authority: other.example}", request(path="/p"), 301, "http://other.example/p"),
    ("{scheme: https}", request(path="/p"), 301, "https://reviews:9080/p"),  # Envoy keeps a non-default port
    ("{scheme: https, port: 443}", request(path="/p"), 301, "https://reviews:9080/p"),  # Istio drops :443
    ("{port: 8443}", request(path="/p"), 301, "http://reviews:8443/p"),
    ("{authority: a.example, derivePort: FROM_REQUEST_PORT}", request(path="/p"), 301, "http://a.example:9080/p"),
    ("{derivePort: FROM_PROTOCOL_DEFAULT}", request(path="/p"), 301, "http://reviews:9080/p"),  # no port set
    ("{uri: '/n?a=b'}", request(path="/p?x=1"), 301, "http://reviews:9080/n?a=b"),
]


@pytest.mark.parametrize(("redirect", "head", "status", "location"), REDIRECT_CASES)
def test_redirect(redirect: str, head: RequestHead, status: int, location: str) -> None:
    decision = decide(snapshot(reviews_vs(f"- redirect: {redirect}\n")), head)
    assert (decision.kind, decision.status, decision.location) == (DecisionKind.REDIRECT, status, location)


def test_redirect_drops_the_old_schemes_default_port() -> None:
    from sandbox.proxy.routing import _location
    from sandbox.xds.snapshot import Redirect

    to_https = Redirect(scheme="https")
    assert _location(to_https, request("shop.example:80", port=8080), "/p", "?q") == "https://shop.example/p?q"
    assert _location(to_https, request("shop.example:8080"), "/p", "") == "https://shop.example:8080/p"
    assert _location(Redirect(port=80), request("[::1]:9080"), "/p", "") == "http://[::1]:9080/p"


def test_unsupported_redirect_code_drops_the_route() -> None:
    vs = reviews_vs(
        "- match: [{uri: {prefix: /a}}]\n  redirect: {uri: /b, redirectCode: 399}\n"
        "- route: [{destination: {host: reviews, subset: v1}}]\n"
    )
    assert decide(snapshot(vs, files=DR_ALL), request(path="/a")).cluster == cluster(REVIEWS, "v1")


@pytest.mark.parametrize(
    ("body", "expected"),
    [("{string: gone}", "gone"), ("{bytes: aGVsbG8=}", "hello"), ("null", "")],
)
def test_direct_response(body: str, expected: str) -> None:
    decision = decide(snapshot(reviews_vs(f"- directResponse: {{status: 410, body: {body}}}\n")), request())
    assert (decision.kind, decision.status, decision.body) == (DecisionKind.DIRECT_RESPONSE, 410, expected)


# --------------------------------------------------------------------------- headers and CORS


def test_header_operations_route_and_destination_level() -> None:
    vs = reviews_vs(
        """
        - headers:
            request: {set: {x-route: r}, add: {x-multi: route}, remove: [x-secret]}
            response: {set: {x-served-by: route}}
          route:
          - destination: {host: reviews, subset: v1}
            headers:
              request: {set: {x-dest: d, x-route: from-destination}}
              response: {remove: [server]}
        """
    )
    decision = decide(snapshot(vs, files=DR_ALL), request())
    destination, route_level = decision.request_headers
    assert dict(destination.set) == {"x-dest": "d", "x-route": "from-destination"}
    assert dict(route_level.set) == {"x-route": "r"}  # applied last: the route level wins
    assert route_level.add == (("x-multi", "route"),) and route_level.remove == ("x-secret",)
    assert [m.remove for m in decision.response_headers] == [("server",), ()]
    assert dict(decision.response_headers[1].set) == {"x-served-by": "route"}


CORS = """
- corsPolicy:
    allowOrigins: [{exact: "https://shop.example"}, {regex: "https://.*\\\\.dev\\\\.example"}]
    allowMethods: [GET, POST]
    allowHeaders: [x-token]
    exposeHeaders: [x-trace]
    maxAge: 24h
    allowCredentials: true
    {extra}
  route: [{{destination: {{host: reviews}}}}]
"""


def cors_snapshot(extra: str = "") -> ProxySnapshot:
    return snapshot(reviews_vs(CORS.replace("{extra}", extra).replace("{{", "{").replace("}}", "}")))


def preflight(origin: str) -> RequestHead:
    return request(method="OPTIONS", headers={"origin": origin, "access-control-request-method": "POST"})


def test_cors_preflight_from_an_allowed_origin_is_answered_locally() -> None:
    for origin in ("https://shop.example", "https://a.dev.example"):
        decision = decide(cors_snapshot(), preflight(origin))
        assert (decision.kind, decision.status) == (DecisionKind.DIRECT_RESPONSE, 200)
        assert dict(decision.response_headers[0].set) == {
            "access-control-allow-origin": origin,
            "access-control-allow-credentials": "true",
            "access-control-allow-methods": "GET,POST",
            "access-control-allow-headers": "x-token",
            "access-control-max-age": "86400",
        }


def test_cors_unmatched_preflight_is_forwarded_by_default_or_ignored() -> None:
    assert decide(cors_snapshot(), preflight("https://evil.example")).kind is DecisionKind.FORWARD
    ignored = decide(cors_snapshot("unmatchedPreflights: IGNORE"), preflight("https://evil.example"))
    assert (ignored.kind, ignored.status) == (DecisionKind.DIRECT_RESPONSE, 200)
    assert "access-control-allow-origin" not in dict(ignored.response_headers[0].set)  # Envoy: no origin echo


def test_cors_wildcard_methods_and_headers_echo_the_request() -> None:
    vs = reviews_vs(
        "- corsPolicy: {allowOrigins: [{exact: '*'}], allowMethods: ['*'], allowHeaders: ['*']}\n"
        "  route: [{destination: {host: reviews}}]\n"
    )
    head = request(
        method="OPTIONS",
        headers={
            "origin": "https://any.example",
            "access-control-request-method": "PUT",
            "access-control-request-headers": "x-a,x-b",
        },
    )
    decision = decide(snapshot(vs), head)
    assert dict(decision.response_headers[0].set) == {
        "access-control-allow-origin": "https://any.example",  # an exact "*" allows every origin
        "access-control-allow-methods": "PUT",
        "access-control-allow-headers": "x-a,x-b",
    }


def test_cors_simple_request_echoes_an_allowed_origin() -> None:
    decision = decide(cors_snapshot(), request(headers={"origin": "https://shop.example"}))
    assert decision.kind is DecisionKind.FORWARD
    assert dict(decision.response_headers[-1].set) == {
        "access-control-allow-origin": "https://shop.example",
        "access-control-allow-credentials": "true",
        "access-control-expose-headers": "x-trace",
    }
    assert decide(cors_snapshot(), request(headers={"origin": "https://evil.example"})).response_headers == ()


# --------------------------------------------------------------------------- timeouts, retries, faults, mirrors


def test_timeout_and_retries_reach_the_decision() -> None:
    vs = reviews_vs(
        "- timeout: 0.5s\n  retries: {attempts: 3, perTryTimeout: 100ms, retryOn: '5xx,503'}\n"
        "  route: [{destination: {host: reviews}}]\n"
    )
    decision = decide(snapshot(vs), request())
    assert decision.timeout == 0.5
    assert (decision.retry.attempts, decision.retry.per_try_timeout) == (3, 0.1)
    assert decision.retry.retry_on == ("5xx", "retriable-status-codes")
    assert decision.retry.retriable_status_codes == (503,)


def test_default_route_has_istio_default_retry_and_no_timeout() -> None:
    decision = decide(snapshot(), request())
    assert decision.timeout is None
    assert decision.retry.attempts == 2
    assert decision.retry.retry_on == (
        "connect-failure",
        "refused-stream",
        "unavailable",
        "cancelled",
        "retriable-status-codes",
    )
    assert decision.retry.retriable_status_codes == ()  # since Istio 1.24: 503 is not retried by default
    assert (decision.retry.backoff_base, decision.retry.backoff_max) == (0.025, 0.25)


def test_request_timeout_header_overrides_the_route_timeout() -> None:
    snap = snapshot(reviews_vs("- timeout: 5s\n  route: [{destination: {host: reviews}}]\n"))
    assert decide(snap, request(headers={"x-envoy-upstream-rq-timeout-ms": "250"})).timeout == 0.25
    assert decide(snap, request(headers={"x-envoy-upstream-rq-timeout-ms": "0"})).timeout is None
    assert decide(snap, request(headers={"x-envoy-upstream-rq-timeout-ms": "soon"})).timeout == 5.0


def fault_vs(fault: str) -> ProxySnapshot:
    return snapshot(reviews_vs(f"- fault: {fault}\n  route: [{{destination: {{host: reviews}}}}]\n"))


def test_fault_percentages_are_sampled() -> None:
    snap = fault_vs(
        "{abort: {httpStatus: 503, percentage: {value: 30}}, delay: {fixedDelay: 1s, percentage: {value: 60}}}"
    )
    rng = random.Random(11)
    n = 4000
    decisions = [route(request(), snap, rng) for _ in range(n)]
    aborted = sum(d.abort_status == 503 for d in decisions)
    delayed = sum(d.delay == 1.0 for d in decisions)
    assert binomial_ok(aborted, n, 0.3) and binomial_ok(delayed, n, 0.6)
    both = [d for d in decisions if d.abort_status and d.delay]
    assert both and all(d.response_flags == "DI,FI" for d in both)


@pytest.mark.parametrize(
    "fault",
    [
        "{abort: {httpStatus: 503}}",  # no percentage: never
        "{delay: {fixedDelay: 1s}}",
        "{abort: {httpStatus: 503, percentage: {value: 0}}}",
    ],
)
def test_fault_without_percentage_never_fires(fault: str) -> None:
    snap = fault_vs(fault)
    rng = random.Random(5)
    assert all(d.abort_status is None and d.delay is None for d in (route(request(), snap, rng) for _ in range(500)))


def test_tiny_fault_percentage_uses_per_million_resolution() -> None:
    snap = fault_vs("{abort: {httpStatus: 500, percentage: {value: 0.0001}}}")  # 1 per million

    class Low:
        def random(self) -> float:
            return 0.0000005  # 0.5 per million: below 1

    class High:
        def random(self) -> float:
            return 0.0000015

    assert route(request(), snap, Low()).abort_status == 500
    assert route(request(), snap, High()).abort_status is None


def test_mirror_defaults_to_every_request_and_honours_percentages() -> None:
    always = snapshot(
        reviews_vs("- route: [{destination: {host: reviews, subset: v1}}]\n  mirror: {host: reviews, subset: v2}\n"),
        files=DR_ALL,
    )
    decision = decide(always, request())
    assert decision.cluster == cluster(REVIEWS, "v1") and decision.mirrors == (cluster(REVIEWS, "v2"),)
    never = snapshot(
        reviews_vs(
            "- route: [{destination: {host: reviews}}]\n  mirror: {host: reviews, subset: v2}\n"
            "  mirrorPercentage: {value: 0}\n"
        ),
        files=DR_ALL,
    )
    assert decide(never, request()).mirrors == ()
    half = snapshot(
        reviews_vs(
            "- route: [{destination: {host: reviews}}]\n"
            "  mirrors: [{destination: {host: reviews, subset: v2}, percentage: {value: 50}},"
            " {destination: {host: reviews, subset: v3}}]\n"
        ),
        files=DR_ALL,
    )
    rng = random.Random(9)
    n = 2000
    results = [route(request(), half, rng).mirrors for _ in range(n)]
    assert all(cluster(REVIEWS, "v3") in m for m in results)
    assert binomial_ok(sum(cluster(REVIEWS, "v2") in m for m in results), n, 0.5)


@pytest.mark.parametrize(
    ("authority", "shadow"),
    [("httpbin:8000", "httpbin-shadow:8000"), ("reviews", "reviews-shadow"), ("[::1]:80", "[::1]-shadow:80")],
)
def test_shadow_authority(authority: str, shadow: str) -> None:
    assert shadow_authority(authority) == shadow


# --------------------------------------------------------------------------- the table itself


def test_telemetry_names_in_the_decision() -> None:
    vs = reviews_vs(
        "- name: jason-route\n  match: [{name: by-user, headers: {end-user: {exact: jason}}}]\n"
        "  route: [{destination: {host: reviews, subset: v2}}]\n"
    )
    decision = decide(snapshot(vs, files=DR_ALL), request(headers=JASON))
    assert decision.route_name == "jason-route.by-user"
    assert decision.virtual_host == f"{REVIEWS}:9080"
    assert decision.service == REVIEWS
    assert decision.operation == f"{REVIEWS}:9080/*"


def test_positional_fast_path_matches_the_decision_fields() -> None:
    # routing.py builds RouteDecision positionally; this guards the field order it relies on
    assert [f.name for f in fields(RouteDecision)][:6] == ["kind", "cluster", "path", "authority", "timeout", "retry"]
    assert [f.name for f in fields(RouteDecision)][6:] == [
        "mirrors",
        "delay",
        "abort_status",
        "abort_grpc_status",
        "status",
        "body",
        "location",
        "request_headers",
        "response_headers",
        "route_name",
        "virtual_host",
        "service",
        "operation",
        "response_flags",
        "details",
    ]


def test_egress_port_rewrite_to_the_tls_origination_cluster() -> None:
    snap = snapshot(files=("egress-rule-google-apis.yaml",), proxy="details-v1")
    decision = decide(snap, request("www.googleapis.com", "/books/v1/volumes?q=isbn:0486424618"))
    assert (decision.kind, decision.cluster) == (DecisionKind.FORWARD, "outbound|443||www.googleapis.com")
    assert decision.authority == "www.googleapis.com"


# --------------------------------------------------------------------------- RE2 semantics


@pytest.mark.parametrize(
    ("regex", "path", "matches"),
    [
        ("/reviews/\\\\d+", "/reviews/42", True),
        ("/reviews/\\\\d+", "/reviews/\u0663", False),  # RE2's \d is ASCII-only
        ("/(?=x).*", "/x", False),  # lookahead: RE2 (and so Envoy) rejects the pattern; it never matches
        ("/(a+)+b", "/" + "a" * 64, False),  # catastrophic for a backtracking engine, linear for RE2
        ("/(a+)+b", "/aab", True),
        ("/(r|re)+views", "/rereviews", True),
    ],
)
@pytest.mark.timeout(10)
def test_uri_regex_follows_re2(regex: str, path: str, matches: bool) -> None:
    vs = reviews_vs(
        f'- match: [{{uri: {{regex: "{regex}"}}}}]\n  route: [{{destination: {{host: reviews, subset: v2}}}}]\n'
        "- route: [{destination: {host: reviews, subset: v1}}]\n"
    )
    decision = decide(snapshot(vs, files=DR_ALL), request(path=path))
    assert decision.cluster == cluster(REVIEWS, "v2" if matches else "v1")


def test_backtracking_prone_patterns_run_on_re2_and_simple_ones_on_re() -> None:
    import re

    from sandbox.proxy.matching import compile_regex

    assert isinstance(compile_regex("/reviews/[0-9]+"), re.Pattern)
    assert not isinstance(compile_regex("/(a+)+b"), re.Pattern)
    assert not isinstance(compile_regex("(x|xy)*z"), re.Pattern)
    assert compile_regex("(") is None and compile_regex("(?=a)") is None


# --------------------------------------------------------------------------- robustness


FUZZ_RULES = reviews_vs(
    """
    - match: [{uri: {regex: "/r/(\\\\w+)"}, queryParams: {q: {prefix: a}}}, {withoutHeaders: {x: {exact: "1"}}}]
      rewrite: {uriRegexRewrite: {match: "/r/(\\\\w+)", rewrite: "/s/\\\\1"}}
      fault: {abort: {httpStatus: 503, percentage: {value: 10}}, delay: {fixedDelay: 1ms, percentage: {value: 10}}}
      mirrors: [{destination: {host: reviews, subset: v3}, percentage: {value: 50}}]
      route:
      - {destination: {host: reviews, subset: v1}, weight: 50}
      - {destination: {host: reviews, subset: v2}, weight: 50}
    - match: [{uri: {prefix: /redirect}}]
      redirect: {uri: /x, derivePort: FROM_REQUEST_PORT, scheme: https}
    - corsPolicy: {allowOrigins: [{regex: ".*"}], allowMethods: [GET]}
      route: [{destination: {host: reviews}}]
    """
)


def test_route_never_raises_on_arbitrary_requests() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    snaps = [
        snapshot(FUZZ_RULES, files=DR_ALL),
        snapshot(files=("bookinfo-gateway.yaml",), proxy="istio-ingressgateway"),
    ]
    text = st.text(max_size=40)
    heads = st.builds(
        RequestHead,
        method=st.sampled_from(["GET", "POST", "OPTIONS", "", "g\x00t"]),
        path=st.one_of(text, st.from_regex(r"\A/[a-z/?&=%]{0,30}\Z")),
        authority=st.one_of(text, st.sampled_from(["reviews:9080", "[::1]:9080", "reviews:", ":80", "REVIEWS"])),
        headers=st.dictionaries(st.sampled_from(["x", "origin", "end-user", "access-control-request-method"]), text),
        port=st.integers(min_value=0, max_value=65535),
        scheme=st.sampled_from(["http", "https", ""]),
    )

    @settings(max_examples=300, deadline=None)
    @given(head=heads, seed=st.integers(min_value=0, max_value=2**32))
    def check(head: RequestHead, seed: int) -> None:
        for snap in snaps:
            decision = route(head, snap, random.Random(seed))
            assert isinstance(decision.kind, DecisionKind)
            if decision.kind is DecisionKind.FORWARD:
                assert decision.cluster

    check()


def test_unsealed_snapshots_never_share_a_table() -> None:
    import dataclasses

    sealed = snapshot(files=(*DR_ALL, "virtual-service-reviews-v3.yaml"))
    other = snapshot(files=(*DR_ALL, "virtual-service-all-v1.yaml"))
    for _ in range(3):  # fresh objects, whose ids may be reused after collection
        a = dataclasses.replace(sealed, version="")
        assert decide(a, request()).cluster == cluster(REVIEWS, "v3")
        del a
        b = dataclasses.replace(other, version="")
        assert decide(b, request()).cluster == cluster(REVIEWS, "v1")
        del b


# --------------------------------------------------------------------------- delegation


DELEGATE = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-team, namespace: default}
spec:
  http:
  - match: [{uri: {prefix: /reviews/0}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - match: [{uri: {prefix: /other}}]
    route: [{destination: {host: reviews, subset: v3}}]
  - match: [{headers: {end-user: {exact: jason}}}]
    timeout: 2s
    route: [{destination: {host: reviews, subset: v3}}]
  - route: [{destination: {host: reviews, subset: v1}}]
"""


def test_delegate_routes_are_merged_into_the_root() -> None:
    root = reviews_vs("- match: [{uri: {prefix: /reviews}}]\n  timeout: 5s\n  delegate: {name: reviews-team}\n")
    snap = snapshot(root, DELEGATE, files=DR_ALL)
    assert decide(snap, request(path="/reviews/0")).cluster == cluster(REVIEWS, "v2")
    # the delegate's /other lies outside the root's /reviews: it never takes effect
    assert decide(snap, request(path="/other")).kind is DecisionKind.NO_ROUTE
    jason = decide(snap, request(path="/reviews/7", headers=JASON))
    assert (jason.cluster, jason.timeout) == (cluster(REVIEWS, "v3"), 2.0)  # the delegate's own timeout
    other = decide(snap, request(path="/reviews/7"))
    assert (other.cluster, other.timeout) == (cluster(REVIEWS, "v1"), 5.0)  # inherited from the root route


def test_missing_delegate_drops_the_route() -> None:
    root = reviews_vs(
        "- match: [{uri: {prefix: /reviews}}]\n  delegate: {name: nobody}\n"
        "- route: [{destination: {host: reviews, subset: v3}}]\n"
    )
    assert decide(snapshot(root, files=DR_ALL), request()).cluster == cluster(REVIEWS, "v3")


def test_gateway_https_redirect_answers_301_to_https() -> None:
    gateway = (
        (FIXTURES / "bookinfo-gateway.yaml")
        .read_text()
        .replace('    hosts:\n    - "*"\n', '    hosts:\n    - "*"\n    tls: {httpsRedirect: true}\n', 1)
    )
    assert "httpsRedirect" in gateway
    snap = snapshot(gateway, proxy="istio-ingressgateway")
    decision = decide(snap, request("shop.example", "/productpage?u=1", port=8080))
    assert (decision.kind, decision.status, decision.location) == (
        DecisionKind.REDIRECT,
        301,
        "https://shop.example/productpage?u=1",
    )


@pytest.mark.parametrize("key", ["@request.auth.claims.groups", "@request.auth.claims[groups]"])
def test_a_match_on_jwt_claims_never_widens_the_route_without_verified_claims(key: str) -> None:
    # Until a RequestAuthentication's token is verified at this proxy there are no claims: the
    # match must not hold, even for a request that sends a header of the same name.
    http = f"""
    - match: [{{headers: {{"{key}": {{exact: admin}}}}}}]
      route: [{{destination: {{host: reviews, subset: v2}}}}]
    - route: [{{destination: {{host: reviews, subset: v1}}}}]
    """
    snap = snapshot(reviews_vs(http), files=DR_ALL)
    match = next(rc for rc in snap.route_configs if rc.name == "9080")
    assert any(r.match.claims for vh in match.virtual_hosts for r in vh.routes)
    for headers in ({}, {key: "admin"}, {"groups": "admin"}):
        decision = decide(snap, request(headers=headers))
        assert decision.cluster.startswith("outbound|9080|v1|"), headers
