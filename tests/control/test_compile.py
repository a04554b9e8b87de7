"""compile(mesh, proxy): which routes, clusters, policies and endpoints one proxy receives.

Each test states an Istio rule from docs/reference/istio-semantics.md §1 and checks the
snapshot a proxy would get under it (Bookinfo's compose file and rule files as the base).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from sandbox.control.compile import UnknownProxy
from sandbox.control.compile import compile as compile_snapshot
from sandbox.control.compile_clusters import endpoints_from_mapping
from sandbox.mesh.loader import load_texts
from sandbox.mesh.state import MeshState
from sandbox.mesh.topology import load_compose, parse_compose
from sandbox.xds.snapshot import MAX_UINT32, Cluster, ProxySnapshot, Route, VirtualHost

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "bookinfo"
BOOKINFO_COMPOSE = (FIXTURES / "compose.yaml").read_text()
REVIEWS = "reviews.default.svc.cluster.local"


def mesh(*inline: str, files: tuple[str, ...] = (), compose: str | None = None) -> MeshState:
    texts: list[tuple[str, str | bytes]] = [(name, (FIXTURES / name).read_text()) for name in files]
    texts += [(f"inline-{i}.yaml", textwrap.dedent(doc)) for i, doc in enumerate(inline)]
    loaded = load_texts(texts)
    assert not loaded.errors, loaded.errors
    topology = parse_compose(compose, "compose.yaml") if compose else load_compose(FIXTURES / "compose.yaml")
    assert not topology.diagnostics, topology.diagnostics
    return MeshState(loaded.resources, topology)


def compile_for(*inline: str, files: tuple[str, ...] = (), proxy: str = "productpage-v1", **kw: str) -> ProxySnapshot:
    return compile_snapshot(mesh(*inline, files=files, compose=kw.get("compose")), proxy)


def vhost(snap: ProxySnapshot, name: str, port: int = 9080) -> VirtualHost:
    rc = snap.route_config(port)
    assert rc is not None
    return next(vh for vh in rc.virtual_hosts if vh.name == name)


def routes(snap: ProxySnapshot, host: str = REVIEWS, port: int = 9080) -> tuple[Route, ...]:
    return vhost(snap, f"{host}:{port}", port).routes


def clusters_of(route: Route) -> list[str]:
    return [wc.cluster for wc in route.clusters]


def cluster(snap: ProxySnapshot, name: str) -> Cluster:
    found = snap.cluster(name)
    assert found is not None, name
    return found


def vs(name: str, body: str, namespace: str = "default") -> str:
    return (
        f"apiVersion: networking.istio.io/v1\nkind: VirtualService\n"
        f"metadata: {{name: {name}, namespace: {namespace}}}\nspec:\n" + textwrap.indent(textwrap.dedent(body), "  ")
    )


def dr(name: str, body: str, namespace: str = "default") -> str:
    return (
        f"apiVersion: networking.istio.io/v1\nkind: DestinationRule\n"
        f"metadata: {{name: {name}, namespace: {namespace}}}\nspec:\n" + textwrap.indent(textwrap.dedent(body), "  ")
    )


# --------------------------------------------------------------------------- identity, listeners


def test_identity_and_inbound_listener() -> None:
    snap = compile_for()
    assert snap.identity.workload == "productpage-v1"
    assert snap.identity.service_account == "bookinfo-productpage"
    assert snap.identity.spiffe_id == "spiffe://cluster.local/ns/default/sa/bookinfo-productpage"
    assert snap.identity.labels == {"app": "productpage", "version": "v1"}
    assert snap.identity.kind == "sidecar"
    (inbound,) = snap.inbound
    assert (inbound.port, inbound.app_address, inbound.cluster) == (9080, "127.0.0.1:9080", "inbound|9080||")
    assert snap.mesh.outbound_traffic_policy == "ALLOW_ANY" and snap.mesh.trust_domain == "cluster.local"


def test_unknown_proxy_is_a_clear_error() -> None:
    with pytest.raises(UnknownProxy, match=r"reviews-v9.*known: .*reviews-v1"):
        compile_for(proxy="reviews-v9")


def test_app_address_is_configurable() -> None:
    snap = compile_snapshot(mesh(), "reviews-v2", app_address="127.0.0.1:41002")
    assert snap.inbound[0].app_address == "127.0.0.1:41002"


# --------------------------------------------------------------------------- default routing


def test_services_without_a_virtual_service_get_the_default_route() -> None:
    snap = compile_for()
    rc = snap.route_config(9080)
    assert rc is not None and rc.name == "9080"
    names = [vh.name for vh in rc.virtual_hosts]
    assert names == [
        "details.default.svc.cluster.local:9080",
        "productpage.default.svc.cluster.local:9080",
        "ratings.default.svc.cluster.local:9080",
        f"{REVIEWS}:9080",
        "allow_any",
    ]
    (default,) = routes(snap)
    assert default.name == "default" and clusters_of(default) == [f"outbound|9080||{REVIEWS}"]
    assert default.timeout is None  # §1.1: disabled unless the VS sets one
    assert (default.retry.attempts, default.retry.retriable_status_codes) == (2, ())
    assert default.operation == f"{REVIEWS}:9080/*"


def test_domains_follow_istio_and_short_names_stay_in_the_namespace() -> None:
    snap = compile_for()
    assert vhost(snap, f"{REVIEWS}:9080").domains == (
        REVIEWS,
        f"{REVIEWS}:9080",
        "reviews.default.svc",
        "reviews.default.svc:9080",
        "reviews.default",
        "reviews.default:9080",
        "reviews",
        "reviews:9080",
    )
    other_ns = compile_for(compose=BOOKINFO_COMPOSE.replace("serviceAccount: bookinfo-ratings", "namespace: db"))
    ratings = vhost(other_ns, "ratings.db.svc.cluster.local:9080")
    assert "ratings" not in ratings.domains and "ratings.db:9080" in ratings.domains


# --------------------------------------------------------------------------- VirtualService selection


def test_all_v1_routes_every_service_to_its_v1_subset() -> None:
    snap = compile_for(files=("destination-rule-all.yaml", "virtual-service-all-v1.yaml"))
    for service in ("productpage", "reviews", "ratings", "details"):
        fqdn = f"{service}.default.svc.cluster.local"
        (only,) = routes(snap, fqdn)
        assert clusters_of(only) == [f"outbound|9080|v1|{fqdn}"]
        assert vhost(snap, f"{fqdn}:9080").source == f"VirtualService/default/{service}"


def test_one_virtual_service_per_host_for_sidecars_the_first_wins() -> None:
    second = vs("reviews-b", "hosts: [reviews]\nhttp:\n- route: [{destination: {host: reviews, subset: v2}}]\n")
    both = compile_for(second, files=("destination-rule-all.yaml", "virtual-service-reviews-v3.yaml"))
    (only,) = routes(both)
    assert clusters_of(only) == [f"outbound|9080|v3|{REVIEWS}"]
    assert vhost(both, f"{REVIEWS}:9080").source == "VirtualService/default/reviews"


def test_weighted_route_keeps_relative_weights() -> None:
    snap = compile_for(files=("destination-rule-all.yaml", "virtual-service-reviews-80-20.yaml"))
    (only,) = routes(snap)
    assert [(wc.cluster.split("|")[2], wc.weight) for wc in only.clusters] == [("v1", 80), ("v2", 20)]
    assert only.operation == "reviews:9080/*"  # several clusters: the VS name (route.go GetRouteOperation)


def test_exact_host_beats_a_wildcard_virtual_service() -> None:
    wildcard = vs("all", "hosts: ['*.default.svc.cluster.local']\nhttp:\n- route: [{destination: {host: details}}]\n")
    snap = compile_for(wildcard, files=("destination-rule-all.yaml", "virtual-service-reviews-v3.yaml"))
    assert clusters_of(routes(snap)[0]) == [f"outbound|9080|v3|{REVIEWS}"]
    assert clusters_of(routes(snap, "ratings.default.svc.cluster.local")[0]) == [
        "outbound|9080||details.default.svc.cluster.local"
    ]


@pytest.mark.parametrize(
    ("gateways", "sidecar_gets_it", "ingress_gets_it"),
    [
        ("", True, False),  # omitted: `mesh`
        ("gateways: [mesh]\n", True, False),
        ("gateways: [bookinfo-gateway]\n", False, True),  # bound only to a gateway: sidecars ignore it
        ("gateways: [bookinfo-gateway, mesh]\n", True, True),
        ("gateways: [default/bookinfo-gateway]\n", False, True),
        ("gateways: [other/bookinfo-gateway]\n", False, False),
    ],
)
def test_gateway_binding(gateways: str, sidecar_gets_it: bool, ingress_gets_it: bool) -> None:
    rule = vs(
        "reviews", "hosts: [reviews]\n" + gateways + "http:\n- route: [{destination: {host: reviews, subset: v2}}]\n"
    )
    files = ("destination-rule-all.yaml", "bookinfo-gateway.yaml")
    sidecar = compile_for(rule, files=files)
    assert (clusters_of(routes(sidecar)[0]) == [f"outbound|9080|v2|{REVIEWS}"]) is sidecar_gets_it
    ingress = compile_for(rule, files=files, proxy="istio-ingressgateway")
    rc = ingress.route_config(8080)
    assert rc is not None and rc.name == "http.8080"
    hosts = {vh.name for vh in rc.virtual_hosts}
    assert (f"{REVIEWS}:8080" in hosts) is ingress_gets_it
    assert "*:8080" in hosts  # the bookinfo VS is always there


def test_ingress_gateway_has_no_inbound_and_no_passthrough() -> None:
    snap = compile_for(files=("bookinfo-gateway.yaml",), proxy="istio-ingressgateway")
    assert snap.identity.kind == "router" and snap.identity.namespace == "istio-system"
    assert snap.inbound == ()
    assert snap.cluster("PassthroughCluster") is None
    (rc,) = snap.route_configs
    (star,) = rc.virtual_hosts
    assert star.domains == ("*",) and len(star.routes) == 5  # one per match block of the bookinfo VS


def test_gateway_merges_virtual_services_and_moves_catch_alls_last() -> None:
    catch_all = vs(
        "catch", "hosts: ['*']\ngateways: [bookinfo-gateway]\nhttp:\n- route: [{destination: {host: details}}]\n"
    )
    # the catch-all VS comes first in file order; merged on the gateway, its route still goes last
    loaded = load_texts([("a.yaml", catch_all), ("b.yaml", (FIXTURES / "bookinfo-gateway.yaml").read_text())])
    snap = compile_snapshot(
        MeshState(loaded.resources, load_compose(FIXTURES / "compose.yaml")), "istio-ingressgateway"
    )
    (star,) = snap.route_configs[0].virtual_hosts
    services = [clusters_of(r)[0].split("|")[3].split(".")[0] for r in star.routes]
    assert services == ["productpage"] * 5 + ["details"]
    assert star.source == "VirtualService/default/catch, VirtualService/default/bookinfo"


@pytest.mark.parametrize(
    ("match", "proxy", "applies"),
    [
        ("sourceLabels: {app: productpage}", "productpage-v1", True),
        ("sourceLabels: {app: productpage}", "reviews-v1", False),
        ("sourceLabels: {app: reviews, version: v2}", "reviews-v2", True),
        ("sourceLabels: {app: reviews, version: v2}", "reviews-v1", False),
        ("sourceNamespace: default", "reviews-v1", True),
        ("sourceNamespace: other", "reviews-v1", False),
        ("gateways: [mesh]", "reviews-v1", True),
        ("gateways: [bookinfo-gateway]", "reviews-v1", False),
        ("port: 9080", "reviews-v1", True),
        ("port: 9999", "reviews-v1", False),
    ],
)
def test_source_selectors_choose_which_sidecars_get_a_route(match: str, proxy: str, applies: bool) -> None:
    rule = vs(
        "ratings",
        f"hosts: [ratings]\nhttp:\n- match: [{{{match}}}]\n  route: [{{destination: {{host: ratings, subset: v2}}}}]\n"
        "- route: [{destination: {host: ratings, subset: v1}}]\n",
    )
    snap = compile_for(rule, files=("destination-rule-all.yaml",), proxy=proxy)
    first = routes(snap, "ratings.default.svc.cluster.local")[0]
    assert (clusters_of(first) == ["outbound|9080|v2|ratings.default.svc.cluster.local"]) is applies
    # selection happened here, so the route carries no source condition
    assert first.match.headers == ()


def test_a_virtual_service_with_no_route_for_this_proxy_falls_back_to_default() -> None:
    rule = vs(
        "ratings",
        "hosts: [ratings]\nhttp:\n- match: [{sourceLabels: {app: reviews}}]\n"
        "  route: [{destination: {host: ratings, subset: v2}}]\n",
    )
    (only,) = routes(compile_for(rule), "ratings.default.svc.cluster.local")
    assert only.name == "default"


def test_catch_all_route_ends_the_list_and_match_blocks_become_routes() -> None:
    rule = vs(
        "reviews",
        """
        hosts: [reviews]
        http:
        - name: split
          match: [{name: a, uri: {prefix: /a}}, {name: b, headers: {x: {exact: "1"}}}]
          route: [{destination: {host: reviews}}]
        - route: [{destination: {host: reviews}}]
        - route: [{destination: {host: details}}]
        """,
    )
    names = [r.name for r in routes(compile_for(rule))]
    assert names == ["split.a", "split.b", ""]


@pytest.mark.parametrize(
    ("export_to", "visible"),
    [("", True), ("exportTo: ['*']\n", True), ("exportTo: ['.']\n", False), ("exportTo: [default]\n", True)],
)
def test_export_to_hides_virtual_services_from_other_namespaces(export_to: str, visible: bool) -> None:
    rule = vs(
        "reviews",
        "hosts: [reviews.default.svc.cluster.local]\n" + export_to + "http:\n"
        "- route: [{destination: {host: reviews.default.svc.cluster.local, subset: v3}}]\n",
        namespace="other",
    )
    snap = compile_for(rule, files=("destination-rule-all.yaml",))
    assert (clusters_of(routes(snap)[0]) == [f"outbound|9080|v3|{REVIEWS}"]) is visible


def test_external_host_gets_a_port_80_virtual_host() -> None:
    rule = vs("ext", "hosts: [api.example.com]\nhttp:\n- timeout: 3s\n  route: [{destination: {host: reviews}}]\n")
    snap = compile_for(rule)
    ext = vhost(snap, "api.example.com:80", 80)
    assert ext.domains == ("api.example.com", "api.example.com:80")
    assert ext.routes[0].timeout == 3.0 and clusters_of(ext.routes[0]) == [f"outbound|9080||{REVIEWS}"]


def test_registry_only_replaces_passthrough_with_block_all() -> None:
    compose = BOOKINFO_COMPOSE + "x-sandbox:\n  outboundTrafficPolicy: {mode: REGISTRY_ONLY}\n"
    snap = compile_for(compose=compose)
    block = vhost(snap, "block_all")
    assert block.domains == ("*",) and block.routes[0].direct_response is not None
    assert block.routes[0].direct_response.status == 502
    assert snap.cluster("PassthroughCluster") is None and snap.mesh.outbound_traffic_policy == "REGISTRY_ONLY"


# --------------------------------------------------------------------------- route translation


def one_route(http: str, files: tuple[str, ...] = ("destination-rule-all.yaml",)) -> Route:
    return routes(compile_for(vs("reviews", "hosts: [reviews]\nhttp:\n" + textwrap.dedent(http)), files=files))[0]


def test_retries_translate_like_istio() -> None:
    r = one_route(
        "- retries: {attempts: 4, retryOn: 'gateway-error,503,reset', perTryTimeout: 2s, backoff: 100ms}\n"
        "  route: [{destination: {host: reviews}}]\n"
    )
    assert r.retry.attempts == 4
    assert r.retry.retry_on == ("gateway-error", "reset", "retriable-status-codes")
    assert r.retry.retriable_status_codes == (503,)
    assert (r.retry.per_try_timeout, r.retry.backoff_base, r.retry.backoff_max) == (2.0, 0.1, 1.0)
    assert one_route("- retries: {attempts: 0}\n  route: [{destination: {host: reviews}}]\n").retry.attempts == 0
    kept = one_route("- retries: {attempts: 5}\n  route: [{destination: {host: reviews}}]\n").retry
    assert kept.attempts == 5 and kept.retry_on[0] == "connect-failure"  # retryOn keeps Istio's default


def test_timeout_fault_and_mirror_translate() -> None:
    r = one_route(
        """
        - timeout: 1.5s
          fault:
            delay: {fixedDelay: 2s, percent: 30}
            abort: {httpStatus: 503}
          mirror: {host: reviews, subset: v3}
          route: [{destination: {host: reviews, subset: v1}}]
        """
    )
    assert r.timeout == 1.5
    assert r.fault is not None
    assert (r.fault.delay, r.fault.delay_percentage) == (2.0, 30.0)  # deprecated int `percent`
    assert (r.fault.abort_status, r.fault.abort_percentage) == (503, 0.0)  # no percentage: never
    assert [(m.cluster, m.percentage) for m in r.mirrors] == [(f"outbound|9080|v3|{REVIEWS}", 100.0)]
    assert one_route("- timeout: 0s\n  route: [{destination: {host: reviews}}]\n").timeout is None


def test_header_authority_becomes_a_rewrite_and_is_not_a_header() -> None:
    r = one_route(
        "- headers: {request: {set: {':authority': a.example, x-a: '1'}}}\n  route: [{destination: {host: reviews}}]\n"
    )
    assert r.rewrite is not None and r.rewrite.authority == "a.example"
    assert r.headers.request.set == (("x-a", "1"),)


# --------------------------------------------------------------------------- clusters and policies


def test_clusters_per_subset_select_endpoints_by_labels() -> None:
    snap = compile_for(files=("destination-rule-all.yaml",))
    assert [e.workload for e in cluster(snap, f"outbound|9080||{REVIEWS}").endpoints] == [
        "reviews-v1",
        "reviews-v2",
        "reviews-v3",
    ]
    v2 = cluster(snap, f"outbound|9080|v2|{REVIEWS}")
    assert (v2.subset, v2.service, v2.port, v2.source) == ("v2", REVIEWS, 9080, "DestinationRule/default/reviews")
    (endpoint,) = v2.endpoints
    assert (endpoint.address, endpoint.host, endpoint.port) == ("reviews-v2:9080", "reviews-v2", 9080)
    assert endpoint.service_account == "bookinfo-reviews" and endpoint.labels["version"] == "v2"
    assert cluster(snap, "outbound|9080|v2-mysql|ratings.default.svc.cluster.local").endpoints == ()


def test_endpoint_addresses_come_from_the_resolver() -> None:
    compose = BOOKINFO_COMPOSE.replace(
        "serviceAccount: bookinfo-ratings", "serviceAccount: bookinfo-ratings, replicas: 2"
    )
    state = mesh(compose=compose)
    default = compile_snapshot(state, "productpage-v1")
    ratings = "outbound|9080||ratings.default.svc.cluster.local"
    assert [e.address for e in cluster(default, ratings).endpoints] == ["ratings-v1-1:9080", "ratings-v1-2:9080"]
    local = compile_snapshot(
        state,
        "productpage-v1",
        endpoints=endpoints_from_mapping({("ratings-v1", 0): "127.0.0.1:41001", ("ratings-v1", 1): "127.0.0.1:41002"}),
    )
    assert [e.address for e in cluster(local, ratings).endpoints] == ["127.0.0.1:41001", "127.0.0.1:41002"]
    assert [e.replica for e in cluster(local, ratings).endpoints] == [0, 1]


def test_default_traffic_policy_is_istios() -> None:
    policy = cluster(compile_for(), f"outbound|9080||{REVIEWS}").traffic_policy
    assert policy.load_balancer.simple == "LEAST_REQUEST"  # not round robin since Istio 1.14
    pool = policy.connection_pool
    assert (pool.max_connections, pool.http1_max_pending_requests, pool.http2_max_requests, pool.max_retries) == (
        MAX_UINT32,
    ) * 4
    assert (pool.connect_timeout, pool.max_requests_per_connection) == (10.0, 0)
    assert policy.outlier_detection is None  # Istio configures none unless a DR asks
    assert (policy.tls.mode, policy.tls.auto) == ("ISTIO_MUTUAL", True)  # auto mTLS to sidecars


def test_outlier_detection_fills_istio_defaults() -> None:
    rule = dr("reviews", "host: reviews\ntrafficPolicy:\n  outlierDetection: {consecutive5xxErrors: 1}\n")
    od = cluster(compile_for(rule), f"outbound|9080||{REVIEWS}").traffic_policy.outlier_detection
    assert od is not None
    assert (od.consecutive_5xx_errors, od.interval, od.base_ejection_time, od.max_ejection_percent) == (1, 10, 30, 10)
    assert od.max_ejection_time == 300.0
    big = dr("reviews", "host: reviews\ntrafficPolicy:\n  outlierDetection: {baseEjectionTime: 10m}\n")
    od2 = cluster(compile_for(big), f"outbound|9080||{REVIEWS}").traffic_policy.outlier_detection
    assert od2 is not None and (od2.consecutive_5xx_errors, od2.max_ejection_time) == (5, 600.0)


def test_subset_policy_overrides_top_level_and_port_level_does_not_inherit() -> None:
    rule = dr(
        "reviews",
        """
        host: reviews
        trafficPolicy:
          loadBalancer: {simple: ROUND_ROBIN}
          connectionPool: {tcp: {maxConnections: 1}, http: {http1MaxPendingRequests: 1}}
        subsets:
        - name: v1
          labels: {version: v1}
          trafficPolicy:
            loadBalancer: {simple: RANDOM}
        - name: v2
          labels: {version: v2}
          trafficPolicy:
            portLevelSettings:
            - port: {number: 9080}
              loadBalancer: {consistentHash: {httpHeaderName: X-User}}
        """,
    )
    snap = compile_for(rule)
    top = cluster(snap, f"outbound|9080||{REVIEWS}").traffic_policy
    assert top.load_balancer.simple == "ROUND_ROBIN"
    assert (top.connection_pool.max_connections, top.connection_pool.http1_max_pending_requests) == (1, 1)
    v1 = cluster(snap, f"outbound|9080|v1|{REVIEWS}").traffic_policy
    assert v1.load_balancer.simple == "RANDOM" and v1.connection_pool.max_connections == 1  # pool inherited
    v2 = cluster(snap, f"outbound|9080|v2|{REVIEWS}").traffic_policy
    assert v2.load_balancer.consistent_hash is not None
    assert v2.load_balancer.consistent_hash.http_header_name == "x-user"
    assert v2.load_balancer.consistent_hash.minimum_ring_size == 1024
    assert v2.connection_pool.max_connections == MAX_UINT32  # port level: defaults, no inheritance


def test_a_subsets_own_policy_wins_over_the_top_levels_port_level_settings() -> None:
    # Istio's MergeTrafficPolicy resolves the top level for the port first, then the subset's
    # settings replace it; the top level's port-level entry must not override a subset's own policy.
    rule = dr(
        "reviews",
        """
        host: reviews
        trafficPolicy:
          portLevelSettings:
          - port: {number: 9080}
            loadBalancer: {simple: ROUND_ROBIN}
            connectionPool: {tcp: {maxConnections: 7}}
        subsets:
        - name: v1
          labels: {version: v1}
          trafficPolicy:
            loadBalancer: {simple: RANDOM}
        """,
    )
    snap = compile_for(rule)
    top = cluster(snap, f"outbound|9080||{REVIEWS}").traffic_policy
    assert (top.load_balancer.simple, top.connection_pool.max_connections) == ("ROUND_ROBIN", 7)
    v1 = cluster(snap, f"outbound|9080|v1|{REVIEWS}").traffic_policy
    assert v1.load_balancer.simple == "RANDOM"  # the subset's own
    assert v1.connection_pool.max_connections == 7  # what the subset leaves alone comes from the top (port) level


@pytest.mark.parametrize(
    ("simple", "expected"),
    [("LEAST_CONN", "LEAST_REQUEST"), ("UNSPECIFIED", "LEAST_REQUEST"), ("PASSTHROUGH", "PASSTHROUGH")],
)
def test_load_balancer_names(simple: str, expected: str) -> None:
    rule = dr("reviews", f"host: reviews\ntrafficPolicy: {{loadBalancer: {{simple: {simple}}}}}\n")
    assert cluster(compile_for(rule), f"outbound|9080||{REVIEWS}").traffic_policy.load_balancer.simple == expected


def test_explicit_tls_mode_turns_auto_mtls_off() -> None:
    rule = dr("reviews", "host: reviews\ntrafficPolicy: {tls: {mode: DISABLE}}\n")
    tls = cluster(compile_for(rule), f"outbound|9080||{REVIEWS}").traffic_policy.tls
    assert (tls.mode, tls.auto) == ("DISABLE", False)


def test_destination_rule_lookup_path_client_then_service_then_root() -> None:
    in_root = dr(
        "r",
        "host: reviews.default.svc.cluster.local\ntrafficPolicy: {loadBalancer: {simple: RANDOM}}\n",
        namespace="istio-system",
    )
    in_service = dr("r", "host: reviews\ntrafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}\n")
    in_client = dr(
        "r",
        "host: reviews.default.svc.cluster.local\ntrafficPolicy: {loadBalancer: {simple: PASSTHROUGH}}\n",
        namespace="web",
    )
    compose = BOOKINFO_COMPOSE.replace("serviceAccount: bookinfo-productpage", "namespace: web")
    name = f"outbound|9080||{REVIEWS}"

    def lb(*rules: str) -> str:
        return cluster(compile_for(*rules, compose=compose), name).traffic_policy.load_balancer.simple

    assert lb(in_root) == "RANDOM"
    assert lb(in_root, in_service) == "ROUND_ROBIN"
    assert lb(in_root, in_service, in_client) == "PASSTHROUGH"


def test_destination_rules_merge_first_policy_and_first_subset_win() -> None:
    a = dr(
        "a",
        "host: reviews\ntrafficPolicy: {loadBalancer: {simple: RANDOM}}\n"
        "subsets: [{name: v1, labels: {version: v1}}]\n",
    )
    b = dr(
        "b",
        "host: reviews\ntrafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}\n"
        "subsets: [{name: v1, labels: {version: v2}}, {name: v3, labels: {version: v3}}]\n",
    )
    snap = compile_for(a, b)
    assert cluster(snap, f"outbound|9080||{REVIEWS}").traffic_policy.load_balancer.simple == "RANDOM"
    assert [e.workload for e in cluster(snap, f"outbound|9080|v1|{REVIEWS}").endpoints] == ["reviews-v1"]
    assert [e.workload for e in cluster(snap, f"outbound|9080|v3|{REVIEWS}").endpoints] == ["reviews-v3"]


def test_destination_rule_export_to_dot_hides_it_from_other_namespaces() -> None:
    hidden = dr(
        "r",
        "host: reviews.default.svc.cluster.local\nexportTo: ['.']\ntrafficPolicy: {loadBalancer: {simple: RANDOM}}\n",
        namespace="other",
    )
    snap = compile_for(hidden)
    assert cluster(snap, f"outbound|9080||{REVIEWS}").traffic_policy.load_balancer.simple == "LEAST_REQUEST"


# --------------------------------------------------------------------------- ServiceEntry


GOOGLE = "www.googleapis.com"


def test_service_entry_egress_with_tls_origination() -> None:
    snap = compile_for(files=("egress-rule-google-apis.yaml",), proxy="details-v1")
    ext = vhost(snap, f"{GOOGLE}:80", 80)
    assert (
        ext.domains == (GOOGLE, f"{GOOGLE}:80") and ext.source == "VirtualService/default/rewrite-port-for-googleapis"
    )
    assert clusters_of(ext.routes[0]) == [f"outbound|443||{GOOGLE}"]  # match port 80 -> destination port 443
    plain = cluster(snap, f"outbound|80||{GOOGLE}").traffic_policy
    assert (plain.load_balancer.simple, plain.tls.mode, plain.tls.auto) == ("ROUND_ROBIN", "DISABLE", True)
    tls = cluster(snap, f"outbound|443||{GOOGLE}")
    assert (tls.traffic_policy.tls.mode, tls.traffic_policy.tls.auto) == ("SIMPLE", False)
    # port-level settings replace the top level whole: the load balancer falls back to the default
    assert tls.traffic_policy.load_balancer.simple == "LEAST_REQUEST"
    assert [e.address for e in tls.endpoints] == [f"{GOOGLE}:443"]  # DNS resolution of the host itself
    assert snap.route_config(443) is None  # an HTTPS port gets no HTTP routes


SE_STATIC = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: legacy-db, namespace: default}
spec:
  hosts: [legacy.internal]
  ports: [{number: 8080, name: http, protocol: HTTP, targetPort: 80}]
  location: MESH_INTERNAL
  resolution: STATIC
  endpoints:
  - {address: 10.0.0.1, labels: {version: v1}}
  - {address: 10.0.0.2, labels: {version: v2}, ports: {http: 8081}}
"""


def test_service_entry_static_endpoints_subsets_and_default_route() -> None:
    subsets = dr("legacy", "host: legacy.internal\nsubsets: [{name: v2, labels: {version: v2}}]\n")
    snap = compile_for(SE_STATIC, subsets)
    (route,) = routes(snap, "legacy.internal", 8080)
    assert clusters_of(route) == ["outbound|8080||legacy.internal"] and route.name == "default"
    assert [e.address for e in cluster(snap, "outbound|8080||legacy.internal").endpoints] == [
        "10.0.0.1:80",
        "10.0.0.2:8081",
    ]
    assert [e.address for e in cluster(snap, "outbound|8080|v2|legacy.internal").endpoints] == ["10.0.0.2:8081"]


def test_service_entry_resolution_none_is_passthrough_and_export_to_hides_it() -> None:
    se = SE_STATIC.replace("resolution: STATIC", "resolution: NONE")
    snap = compile_for(se)
    none = cluster(snap, "outbound|8080||legacy.internal")
    assert none.endpoints == () and none.traffic_policy.load_balancer.simple == "PASSTHROUGH"
    hidden = se.replace("namespace: default}", "namespace: ops}") + "  exportTo: ['.']\n"
    assert compile_for(hidden).cluster("outbound|8080||legacy.internal") is None


def test_service_entry_workload_selector_uses_mesh_workloads() -> None:
    se = """
    apiVersion: networking.istio.io/v1
    kind: ServiceEntry
    metadata: {name: reviews-alias, namespace: default}
    spec:
      hosts: [reviews.alias]
      ports: [{number: 9080, name: http, protocol: HTTP}]
      location: MESH_INTERNAL
      resolution: STATIC
      workloadSelector: {labels: {app: reviews, version: v3}}
    """
    snap = compile_for(se)
    alias = cluster(snap, "outbound|9080||reviews.alias")
    assert [e.address for e in alias.endpoints] == ["reviews-v3:9080"]
    assert alias.traffic_policy.tls.mode == "ISTIO_MUTUAL"  # the endpoints have sidecars: auto mTLS


def test_consistent_hash_routes_retry_without_the_previous_hosts_predicate() -> None:
    hashing = dr("reviews", "host: reviews\ntrafficPolicy: {loadBalancer: {consistentHash: {useSourceIp: true}}}\n")
    single = vs("reviews", "hosts: [reviews]\nhttp:\n- route: [{destination: {host: reviews}}]\n")
    assert routes(compile_for(hashing, single))[0].retry.retry_ignore_previous_hosts is False
    assert routes(compile_for(single))[0].retry.retry_ignore_previous_hosts is True
    explicit = vs(
        "reviews",
        "hosts: [reviews]\nhttp:\n- retries: {attempts: 2, retryIgnorePreviousHosts: true}\n"
        "  route: [{destination: {host: reviews}}]\n",
    )
    assert routes(compile_for(hashing, explicit))[0].retry.retry_ignore_previous_hosts is True


# --------------------------------------------------------------------------- the Sidecar resource


def sidecar(name: str, body: str, namespace: str = "default") -> str:
    return (
        f"apiVersion: networking.istio.io/v1\nkind: Sidecar\n"
        f"metadata: {{name: {name}, namespace: {namespace}}}\nspec:\n" + textwrap.indent(textwrap.dedent(body), "  ")
    )


EGRESS_GATEWAY = "istio-egressgateway.istio-system.svc.cluster.local"


def service_hosts(snap: ProxySnapshot) -> set[str]:
    return {c.service for c in snap.clusters if c.service}


def test_sidecar_egress_hosts_limit_what_a_proxy_knows() -> None:
    only_reviews = sidecar(
        "productpage",
        "workloadSelector: {labels: {app: productpage}}\negress: [{hosts: ['./reviews.default.svc.cluster.local']}]\n",
    )
    snap = compile_for(only_reviews, files=("destination-rule-all.yaml", "virtual-service-all-v1.yaml"))
    assert service_hosts(snap) == {REVIEWS}
    rc = snap.route_config(9080)
    assert rc is not None and [vh.name for vh in rc.virtual_hosts] == [f"{REVIEWS}:9080", "allow_any"]
    # another workload of the namespace is not selected by it: it knows the four and the egress gateway
    assert len(service_hosts(compile_for(only_reviews, proxy="reviews-v1"))) == 5


def test_namespace_and_root_default_sidecars_and_their_outbound_policy() -> None:
    root = sidecar(
        "default",
        "egress: [{hosts: ['istio-system/*']}]\noutboundTrafficPolicy: {mode: REGISTRY_ONLY}\n",
        namespace="istio-system",
    )
    snap = compile_for(root)
    assert service_hosts(snap) == {EGRESS_GATEWAY}  # only the egress gateway lives in istio-system
    assert snap.mesh.outbound_traffic_policy == "REGISTRY_ONLY" and snap.cluster("PassthroughCluster") is None
    namespace_wide = sidecar("default", "egress: [{hosts: ['./*']}]\n")
    assert len(service_hosts(compile_for(root, namespace_wide))) == 4  # the namespace's own Sidecar wins
    assert compile_for(root, namespace_wide).mesh.outbound_traffic_policy == "ALLOW_ANY"


@pytest.mark.parametrize(
    "inline",
    [
        (),
        # a DestinationRule for reviews that only reviews-v1 takes: proxies may not share its clusters
        (
            dr(
                "reviews-from-v1",
                """\
                host: reviews
                workloadSelector: {matchLabels: {app: reviews, version: v1}}
                trafficPolicy: {loadBalancer: {simple: RANDOM}}
                """,
            ),
        ),
        # a namespace of its own: exportTo and the DR lookup path depend on the proxy's namespace
        (
            dr("reviews-here", "host: reviews.default.svc.cluster.local\nexportTo: ['.']\n"),
            dr(
                "reviews-there",
                "host: reviews.default.svc.cluster.local\ntrafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}\n",
                namespace="istio-system",
            ),
        ),
    ],
)
def test_proxies_compiled_against_one_state_get_what_they_would_get_alone(inline: tuple[str, ...]) -> None:
    files = ("destination-rule-all.yaml", "virtual-service-reviews-80-20.yaml")
    shared = mesh(*inline, files=files)
    proxies = [w.name for w in shared.topology.workloads]
    together = [compile_snapshot(shared, p) for p in proxies]  # what the control plane does: clusters shared
    alone = [compile_snapshot(mesh(*inline, files=files), p) for p in proxies]
    assert together == alone
    assert [s.version for s in together] == [s.version for s in alone]
    assert [s.to_json() for s in together] == [s.to_json() for s in alone]
    if len(inline) == 1:
        selected = {
            c.name: c.traffic_policy.load_balancer.simple for c in together[proxies.index("reviews-v1")].clusters
        }
        others = {c.name: c.traffic_policy.load_balancer.simple for c in together[proxies.index("reviews-v2")].clusters}
        assert selected[f"outbound|9080||{REVIEWS}"] == "RANDOM" and others[f"outbound|9080||{REVIEWS}"] != "RANDOM"
