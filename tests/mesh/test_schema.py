"""schema: durations, typed decoding with did-you-mean diagnostics, and encoding back to YAML data."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox.mesh.diagnostics import Severity, join_path, nearest_position
from sandbox.mesh.resources import (
    AuthorizationPolicySpec,
    DestinationRuleSpec,
    PeerAuthenticationSpec,
    VirtualServiceSpec,
)
from sandbox.mesh.resources.destinationrule import SimpleLB
from sandbox.mesh.schema import Decoder, Duration, encode, suggest
from sandbox.mesh.yamlsrc import dump_yaml, parse_documents


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1s", 1.0),
        ("0.5s", 0.5),
        (".5s", 0.5),
        ("1.5s", 1.5),
        ("100ms", 0.1),
        ("250us", 0.00025),
        ("250µs", 0.00025),
        ("10ns", 1e-8),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        ("1m30.5s", 90.5),
        (" 3s ", 3.0),
        ("0s", 0.0),
    ],
)
def test_durations_go_style(text: str, seconds: float) -> None:
    duration = Duration.parse(text)
    assert duration.seconds == pytest.approx(seconds)
    assert duration.millis == pytest.approx(seconds * 1000)
    assert duration.text == text.strip()


@pytest.mark.parametrize("text", ["5", "1.5", "", "   ", "s", "1d", "-1s", "1 s", "1s2", "1sec", "ms100", "1h30"])
def test_not_durations(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        Duration.parse(text)


def test_a_number_without_unit_says_how_to_write_it() -> None:
    with pytest.raises(ValueError) as info:
        Duration.parse("5")
    assert str(info.value) == "'5' is not a duration: write a number with a unit, e.g. '5s' or '100ms'"


def decode(cls: type, text: str) -> tuple[Any, list[tuple[str, Severity, str, int, str]]]:
    """Decode YAML `text` as `cls`; diagnostics as (code, severity, path, line, message)."""
    (document,), problems = parse_documents(text, "f.yaml")
    assert problems == []
    # `text` is the spec of a resource: its paths start with spec/, as the loader's do
    positions = {join_path("spec", k) if k else "spec": v for k, v in document.positions.items()}
    decoder = Decoder("f.yaml", lambda path: nearest_position(positions, path, (1, 1)), "Kind/ns/name")
    value = decoder.decode_object(cls, document.data, "spec")
    assert all(d.file == "f.yaml" and d.resource == "Kind/ns/name" for d in decoder.diagnostics)
    return value, [(d.code, d.severity, d.path, d.line, d.message) for d in decoder.diagnostics]


def test_a_valid_spec_decodes_to_typed_values() -> None:
    vs, diagnostics = decode(
        VirtualServiceSpec,
        "hosts: [reviews]\nhttp:\n- timeout: 1.5s\n  retries: {attempts: 3, retryOn: 5xx}\n"
        "  route:\n  - destination: {host: reviews, subset: v2, port: {number: 9080}}\n    weight: 100\n",
    )
    assert diagnostics == []
    assert vs.hosts == ("reviews",)
    route = vs.http[0]
    assert route.timeout == Duration(1.5, "1.5s")
    assert (route.retries.attempts, route.retries.retry_on) == (3, "5xx")
    assert route.route[0].destination.port.number == 9080
    assert route.route[0].weight == 100


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "hots: [a]\n",
            ("SBX002", Severity.WARNING, "spec/hots", 1,
             "unknown field 'hots' in VirtualServiceSpec; did you mean 'hosts'?"),
        ),
        (
            "hosts: [a]\nHTTP: []\n",
            ("SBX002", Severity.WARNING, "spec/HTTP", 2,
             "unknown field 'HTTP' in VirtualServiceSpec; did you mean 'http'?"),
        ),
        ("zzz: 1\n", ("SBX002", Severity.WARNING, "spec/zzz", 1, "unknown field 'zzz' in VirtualServiceSpec")),
        ("hosts: reviews\n", ("SBX003", Severity.ERROR, "spec/hosts", 1, "hosts: expected a list, got a string")),
        ("hosts: [[a]]\n", ("SBX003", Severity.ERROR, "spec/hosts[0]", 1, "hosts[0]: expected a string, got a list")),
        (
            "http:\n- route:\n  - destination: {host: r}\n    weight: '90'\n",
            ("SBX003", Severity.ERROR, "spec/http[0]/route[0]/weight", 4, "weight: expected an integer, got a string"),
        ),
        (
            "http:\n- retries: {attempts: true}\n",
            ("SBX003", Severity.ERROR, "spec/http[0]/retries/attempts", 2,
             "attempts: expected an integer, got a boolean"),
        ),
        ("http: {a: 1}\n", ("SBX003", Severity.ERROR, "spec/http", 1, "http: expected a list, got a map")),
        (
            "http:\n- timeout: 5\n",
            (
                "SBX004",
                Severity.ERROR,
                "spec/http[0]/timeout",
                2,
                "timeout: '5' is not a duration: write a number with a unit, e.g. '5s' or '100ms'",
            ),
        ),
        (
            "http:\n- timeout: 1d\n",
            ("SBX004", Severity.ERROR, "spec/http[0]/timeout", 2, "timeout: '1d' is not a duration: write a number "
             "with a unit, e.g. '5s' or '100ms'"),
        ),
        (
            "http:\n- route:\n  - weight: 1\n",
            ("SBX006", Severity.ERROR, "spec/http[0]/route[0]", 3,
             "missing required field 'destination' in HTTPRouteDestination"),
        ),
        (
            "http:\n- fault: {delay: {percentage: {value: 1" + "0" * 400 + "}}}\n",
            ("SBX003", Severity.ERROR, "spec/http[0]/fault/delay/percentage/value", 2, "value: number too large"),
        ),
    ],
)  # fmt: skip
def test_problems_name_the_field_its_line_and_the_fix(text: str, expected: tuple[Any, ...]) -> None:
    _, diagnostics = decode(VirtualServiceSpec, text)
    assert diagnostics == [expected]


def test_a_wrong_field_falls_back_to_its_default_and_the_rest_still_decodes() -> None:
    vs, diagnostics = decode(VirtualServiceSpec, "hosts: [a]\nhttp:\n- timeout: 5\n  retries: {attempts: 2}\n")
    assert [d[0] for d in diagnostics] == ["SBX004"]
    assert vs.hosts == ("a",)
    assert vs.http[0].timeout is None
    assert vs.http[0].retries.attempts == 2


def test_a_required_field_present_but_wrong_is_reported_once() -> None:
    _, diagnostics = decode(DestinationRuleSpec, "host: [a]\n")
    assert [d[0] for d in diagnostics] == ["SBX003"]
    dr, diagnostics = decode(DestinationRuleSpec, "subsets: [{labels: {version: v1}}]\n")
    assert [(d[0], d[2], d[4]) for d in diagnostics] == [
        ("SBX006", "spec/subsets[0]", "missing required field 'name' in Subset"),
        ("SBX006", "spec", "missing required field 'host' in DestinationRuleSpec"),
    ]
    assert dr.host == ""  # a zero value keeps the object usable for the analyzer


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("ROUND_ROBN", "simple: 'ROUND_ROBN' is not a valid SimpleLB; did you mean 'ROUND_ROBIN'?"),
        ("round_robin", "simple: 'round_robin' is not a valid SimpleLB; did you mean 'ROUND_ROBIN'?"),
        (
            "XYZ",
            "simple: 'XYZ' is not a valid SimpleLB "
            "(one of UNSPECIFIED, LEAST_CONN, RANDOM, PASSTHROUGH, ROUND_ROBIN, LEAST_REQUEST)",
        ),
        ("3", "simple: '3' is not a valid SimpleLB (one of UNSPECIFIED, LEAST_CONN, RANDOM, PASSTHROUGH, "
         "ROUND_ROBIN, LEAST_REQUEST)"),
    ],
)  # fmt: skip
def test_enums_suggest_the_closest_value(value: str, message: str) -> None:
    dr, diagnostics = decode(DestinationRuleSpec, f"host: r\ntrafficPolicy:\n  loadBalancer:\n    simple: {value}\n")
    assert diagnostics == [("SBX005", Severity.ERROR, "spec/trafficPolicy/loadBalancer/simple", 4, message)]
    assert dr.traffic_policy.load_balancer.simple is None


def test_an_enum_decodes_to_its_member() -> None:
    dr, diagnostics = decode(DestinationRuleSpec, "host: r\ntrafficPolicy: {loadBalancer: {simple: LEAST_REQUEST}}\n")
    assert diagnostics == []
    assert dr.traffic_policy.load_balancer.simple is SimpleLB.LEAST_REQUEST


def test_free_form_fields_take_anything() -> None:
    dr, diagnostics = decode(
        DestinationRuleSpec, "host: r\ntrafficPolicy: {tunnel: {protocol: CONNECT, targetPort: 1}}"
    )
    assert diagnostics == []
    assert dr.traffic_policy.tunnel == {"protocol": "CONNECT", "targetPort": 1}


def test_reserved_words_use_their_yaml_key() -> None:
    ap, diagnostics = decode(
        AuthorizationPolicySpec,
        "action: DENY\nrules:\n- from:\n  - source: {namespaces: [foo]}\n  to:\n  - operation: {methods: [POST]}\n",
    )
    assert diagnostics == []
    assert ap.rules[0].from_[0].source.namespaces == ("foo",)


@pytest.mark.parametrize(
    ("cls", "text"),
    [
        (
            VirtualServiceSpec,
            "hosts: [reviews]\ngateways: [mesh]\nhttp:\n- name: canary\n  match:\n"
            "  - headers:\n      end-user: {exact: jason}\n"
            "    uri: {prefix: /api}\n  route:\n  - destination: {host: reviews, subset: v2}\n    weight: 90\n"
            "  - destination: {host: reviews, subset: v3}\n    weight: 10\n  timeout: 1h30m\n"
            "  retries: {attempts: 3, perTryTimeout: 100ms, retryOn: 'gateway-error,connect-failure'}\n"
            "  fault: {abort: {httpStatus: 503, percentage: {value: 0.5}}}\n",
        ),
        (
            DestinationRuleSpec,
            "host: reviews.default.svc.cluster.local\ntrafficPolicy:\n  loadBalancer: {simple: RANDOM}\n"
            "  connectionPool: {http: {http1MaxPendingRequests: 1, maxRequestsPerConnection: 1}}\n"
            "  outlierDetection:\n"
            "    {consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 3m, maxEjectionPercent: 100}\n"
            "subsets:\n- name: v1\n  labels: {version: v1}\n- name: v2\n  labels: {version: v2}\n"
            "  trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}\n",
        ),
        (
            AuthorizationPolicySpec,
            "selector: {matchLabels: {app: ratings}}\naction: ALLOW\nrules:\n- from:\n"
            "  - source: {principals: [cluster.local/ns/default/sa/bookinfo-reviews]}\n"
            "  to:\n  - operation: {methods: [GET], paths: [/ratings/*]}\n"
            "  when:\n  - key: request.headers[x]\n    values: [a]\n",
        ),
        (PeerAuthenticationSpec, "mtls: {mode: STRICT}\nportLevelMtls:\n  '8080': {mode: DISABLE}\n"),
    ],
)  # fmt: skip
def test_encode_gives_back_the_yaml_data(cls: type, text: str) -> None:
    value, diagnostics = decode(cls, text)
    assert diagnostics == []
    (document,), _ = parse_documents(text, "f.yaml")
    assert encode(value) == document.data
    again, _ = decode(cls, dump_yaml(encode(value)))
    assert again == value


def test_encode_leaves_unset_fields_out() -> None:
    vs, _ = decode(VirtualServiceSpec, "hosts: [a]\nhttp: [{route: [{destination: {host: a}}]}]\n")
    assert encode(vs) == {"hosts": ["a"], "http": [{"route": [{"destination": {"host": "a"}}]}]}


@pytest.mark.parametrize(
    ("word", "candidates", "expected"),
    [
        ("hots", ["hosts", "http", "tcp"], "hosts"),
        ("HOSTS", ["hosts", "http"], "hosts"),
        ("xyz", ["hosts", "http"], None),
        ("subet", ["subset", "subsets"], "subset"),
    ],
)
def test_suggest(word: str, candidates: list[str], expected: str | None) -> None:
    assert suggest(word, candidates) == expected
