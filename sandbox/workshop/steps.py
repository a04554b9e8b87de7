"""The Bookinfo workshop's steps, as data: the seed talk's demos in its order, each mapped to the
rule files of Istio's tasks (samples/bookinfo/networking/, samples/httpbin/networking/), the
traffic that shows it, what to look at, the console page that shows it (the console's URL
convention, Kiali's routes), and the check `--auto` runs (checks.py).

Every step starts from the rules the mesh had when the walk began, then applies its `needs`
(listed) and its `rules` (shown with their YAML), so any step can be the first (`--step N`).

Security steps need the sidecar to enforce the policy: a step whose `requires` is not in ENFORCED
is shown as not available in this version and skipped, never played as if the policy held.
"""

from __future__ import annotations

from dataclasses import dataclass

from sandbox.workshop import checks
from sandbox.workshop.checks import Check

# What the sidecar enforces (docs/reference/istio-semantics.md): every step plays and is checked.
ENFORCED: frozenset[str] = frozenset({"mtls", "authorization"})

NOT_ENFORCED = {
    "mtls": "the sidecar does not enforce PeerAuthentication (mutual TLS) yet",
    "authorization": "the sidecar does not enforce AuthorizationPolicy yet",
}


@dataclass(frozen=True)
class Rule:
    """A rule to apply: a file of the sample (`networking/x.yaml`), or inline YAML with a name."""

    name: str
    text: str | None = None  # inline YAML; None: the file `name` under the sample's directory
    refused: bool = False  # the point is that the mesh refuses it (validation)


@dataclass(frozen=True)
class Step:
    key: str
    title: str
    why: str  # what it does and why, for the audience
    look: str  # what to look at
    page: str  # console page (path and query; `#tab` after it)
    check: Check
    rules: tuple[Rule, ...] = ()  # shown with their YAML, then applied
    needs: tuple[str, ...] = ()  # files applied first without showing them (the step's footing)
    sample: str = "bookinfo"
    requires: str | None = None  # "mtls" / "authorization": only where the mesh enforces it

    @property
    def available(self) -> bool:
        return self.requires is None or self.requires in ENFORCED

    @property
    def unavailable_because(self) -> str:
        return "" if self.available else NOT_ENFORCED.get(self.requires or "", "not enforced in this version")


def files(*names: str) -> tuple[Rule, ...]:
    return tuple(Rule(f"networking/{name}") for name in names)


SUBSETS = "networking/destination-rule-all.yaml"
ALL_V1 = "networking/virtual-service-all-v1.yaml"
JASON_V2 = "networking/virtual-service-reviews-test-v2.yaml"

BROKEN = """\
# A slip of the keyboard: v4 is no subset of reviews (destination-rule-all.yaml names v1 to v3).
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts:
  - reviews
  http:
  - route:
    - destination:
        host: reviews
        subset: v4
"""

STRICT_MTLS = """\
# Mutual TLS required between every workload of the mesh (Istio's mTLS task, STRICT mesh-wide).
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: default
  namespace: istio-system
spec:
  mtls:
    mode: STRICT
"""

ALLOW_NOTHING = """\
# Istio's authorization task, step 1: nothing in the namespace may be called.
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: allow-nothing
  namespace: default
spec: {}
"""

PRODUCTPAGE_VIEWER = """\
# Step 2: anyone may GET productpage (and nothing else yet: details and reviews still refuse it).
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: productpage-viewer
  namespace: default
spec:
  selector:
    matchLabels:
      app: productpage
  action: ALLOW
  rules:
  - to:
    - operation:
        methods: ["GET"]
"""

BOOKINFO: tuple[Step, ...] = (
    Step(
        "visualize",
        "The mesh: Bookinfo with a sidecar beside every workload",
        "Four services, six workloads: productpage calls details and reviews, two of the three reviews "
        "versions call ratings. No routing rule yet, so reviews answers from v1 (no stars), v2 (black) "
        "and v3 (red) in turn. Each sidecar reports every request, which is how the console draws the graph.",
        "the traffic graph: productpage -> reviews v1/v2/v3 -> ratings, with rates and response codes",
        "/console/graph/namespaces?namespaces=default&graphType=versionedApp",
        checks.every_version_answers,
    ),
    Step(
        "all-v1",
        "Request routing: every request to v1",
        "Subsets name the versions (a DestinationRule), and a VirtualService per service sends all of "
        "its traffic to v1. The sidecars have the change within milliseconds; the stars are gone.",
        "reviews' VirtualService: one route, to subset v1; the graph's edges to v2 and v3 fade",
        "/console/namespaces/default/istio/virtualservices/reviews",
        checks.only_v1,
        rules=files("destination-rule-all.yaml", "virtual-service-all-v1.yaml"),
    ),
    Step(
        "canary",
        "Weighted routing, a canary: 20% of reviews to v2",
        "Traffic shifting by weight: v2 (black stars) takes a fifth of the requests while v1 keeps the "
        "rest. Raise the weight step by step as the canary proves itself.",
        "about one page in five with black stars; the graph's reviews-v2 edge at ~20% of the requests",
        "/console/namespaces/default/istio/virtualservices/reviews",
        checks.split("black", 0.2),
        rules=files("virtual-service-reviews-80-20.yaml"),
        needs=(SUBSETS, ALL_V1),
    ),
    Step(
        "a-b",
        "Weighted routing, an A/B test: v1 and v3 half and half",
        "Two versions side by side, each for half the readers: no stars or red stars.",
        "half the pages with red stars; the graph splits reviews' traffic between v1 and v3",
        "/console/namespaces/default/services/reviews#inbound",
        checks.split("red", 0.5),
        rules=files("virtual-service-reviews-50-v3.yaml"),
        needs=(SUBSETS, ALL_V1),
    ),
    Step(
        "by-user",
        "Request routing by user: jason gets v2",
        "productpage forwards the signed-in user as the end-user header; a route that matches it sends "
        "jason to v2 (black stars) and everyone else to v1.",
        "sign in as jason (any password): black stars; sign out: none",
        "/console/namespaces/default/istio/virtualservices/reviews",
        checks.jason_sees_black_stars,
        rules=files("virtual-service-reviews-test-v2.yaml"),
        needs=(SUBSETS, ALL_V1),
    ),
    Step(
        "mirroring",
        "Mirroring: v1 answers, v2 gets a copy",
        "Every request to reviews goes to v1, and a copy to v2, fire and forget (Host reviews-shadow). "
        "The reader only ever sees v1's answer; v2 is tried on live traffic without risk.",
        "no stars on the page, and reviews-v2's access log growing with reviews-shadow:9080 requests",
        "/console/namespaces/default/workloads/reviews-v2#logs",
        checks.v2_gets_a_copy,
        rules=files("virtual-service-reviews-v1-mirror-v2.yaml"),
        needs=(SUBSETS, ALL_V1),
    ),
    Step(
        "delay",
        "Fault injection, a delay: ratings answers jason after 7 s",
        "A delay tests the timeouts along the path. reviews v2 waits up to 10 s for ratings, but "
        "productpage gives up on reviews after 3 s and tries once more: jason waits about 6 s and gets "
        "no reviews at all. The delay found a bug in the timeouts, not in ratings.",
        "jason's page takes ~6 s and says reviews are unavailable; the access logs show the 7 s on ratings",
        "/console/namespaces/default/istio/virtualservices/ratings",
        checks.delay_breaks_jasons_reviews,
        rules=files("virtual-service-ratings-test-delay.yaml"),
        needs=(SUBSETS, ALL_V1, JASON_V2),
    ),
    Step(
        "abort",
        "Fault injection, an abort: ratings answers jason with HTTP 500",
        "An abort tests what the callers do with an error: reviews v2 shows that ratings are "
        "unavailable and the page stays up. Everyone else is unaffected.",
        'jason\'s page at once, each review saying "Ratings service is currently unavailable"',
        "/console/namespaces/default/istio/virtualservices/ratings",
        checks.abort_shows_ratings_unavailable,
        rules=files("virtual-service-ratings-test-abort.yaml"),
        needs=(SUBSETS, ALL_V1, JASON_V2),
    ),
    Step(
        "circuit-breaking",
        "Circuit breaking on httpbin: one connection, one pending request",
        "Istio's circuit-breaking task, on the httpbin sample: the caller's sidecar (here the ingress "
        "gateway) allows one connection and one waiting request. One client at a time is fine; with "
        "three at once, the overflow is refused at once with 503 and the UO flag instead of piling up.",
        "the 503s with flag UO in the gateway's access log, and its upstream_rq_pending_overflow counter",
        "/console/namespaces/default/istio/destinationrules/httpbin",
        checks.breaker_trips,
        rules=files("destination-rule-circuit-breaker.yaml"),
        sample="httpbin",
    ),
    Step(
        "outlier-detection",
        "Outlier detection on httpbin: an endpoint that fails is taken out",
        "The same DestinationRule ejects an endpoint after one 5xx (consecutive5xxErrors: 1) for three "
        "minutes. Calls to /status/503 make both versions fail: both are ejected, and the gateway "
        "answers 503 no healthy upstream until they come back.",
        "`sandbox proxy-config endpoints istio-ingressgateway`: OUTLIER CHECK FAILED for httpbin's endpoints",
        "/console/namespaces/default/services/httpbin",
        checks.outliers_ejected,
        rules=files("destination-rule-circuit-breaker.yaml"),
        sample="httpbin",
    ),
    Step(
        "validation",
        "Configuration validation: a mistake is refused, traffic keeps flowing",
        "A route to a subset nobody defined would answer 503 to every request. `sandbox apply` checks "
        "a change against the whole configuration first, as istioctl analyze and Kiali's validations "
        "do, and refuses it with file, line and code: nothing is written, nothing breaks.",
        "the refusal (KIA1107, with file and line); the Istio config list shows every file valid",
        "/console/istio",
        checks.invalid_rule_refused,
        rules=(Rule("reviews-to-v4.yaml", BROKEN, refused=True),),
        needs=(SUBSETS, ALL_V1),
    ),
    Step(
        "tracing",
        "Tracing: one request, one trace across the services",
        "Each sidecar reports a span per request, and the apps pass the trace headers on: a product "
        "page is one trace from the gateway through productpage to details, reviews and ratings.",
        "a trace of productpage: its spans and where the time went",
        "/console/namespaces/default/services/productpage#traces",
        checks.a_trace_crosses_the_services,
    ),
    Step(
        "traffic-stats",
        "Traffic stats: Istio's metrics in Prometheus",
        "Every sidecar counts requests with Istio's metric names and labels (istio_requests_total, "
        "istio_request_duration_milliseconds); Prometheus scrapes them and the console reads them back "
        "with Kiali's queries.",
        "request rates and response times of productpage; in Prometheus: istio_requests_total",
        "/console/namespaces/default/applications/productpage#inbound",
        checks.requests_are_counted,
    ),
    Step(
        "mtls",
        "Mutual TLS: STRICT mode",
        "With PeerAuthentication STRICT, sidecars accept only mutual TLS from other sidecars: a client "
        "outside the mesh cannot reach a workload directly, while traffic through the mesh flows as before.",
        "the graph's lock icons; a plaintext call to productpage's sidecar refused",
        "/console/graph/namespaces?namespaces=default&graphType=versionedApp",
        checks.plaintext_refused,
        rules=(Rule("peer-authentication-strict.yaml", STRICT_MTLS),),
        requires="mtls",
    ),
    Step(
        "authorization",
        "Authorization: nothing allowed, then productpage only",
        "Istio's authorization task: an empty policy denies everything in the namespace; a second one "
        "lets anyone GET productpage. The page loads, but details and reviews refuse productpage's calls.",
        "the page without details and reviews; their sidecars' access logs show 403 for productpage",
        "/console/namespaces/default/istio/authorizationpolicies/productpage-viewer",
        checks.policy_lets_only_productpage_through,
        rules=(Rule("allow-nothing.yaml", ALLOW_NOTHING), Rule("productpage-viewer.yaml", PRODUCTPAGE_VIEWER)),
        requires="authorization",
    ),
)

DEMOS = {"bookinfo": BOOKINFO}
