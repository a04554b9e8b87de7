from __future__ import annotations

import pytest

CODES = {"KIA0204", "KIA0205", "KIA0206", "KIA0207", "KIA0208", "KIA0401", "KIA0501", "KIA0505", "KIA0506"}


def pa(name: str, namespace: str, mode: str, marker: str = "") -> str:
    return f"""\
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  mtls:{marker}
    mode: {mode}
---
"""


def dr(name: str, host: str, mode: str | None, marker: str = "") -> str:
    policy = f"\n  trafficPolicy:\n    tls:\n      mode: {mode}{marker}" if mode else ""
    return f"""\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: {name}}}
spec:
  host: "{host}"{policy}
---
"""


NS = "*.default.svc.cluster.local"
MESH_DR = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: mesh, namespace: istio-system}\n"

# (case, YAML, auto mTLS)
CASES = {
    "auto mTLS: nothing is missing": (pa("mesh", "istio-system", "STRICT") + dr("ns", NS, "ISTIO_MUTUAL"), True),
    "mesh PA STRICT without a mesh DR": (
        pa("mesh", "istio-system", "STRICT", "  # !KIA0401 error spec/mtls") + dr("r", "reviews", None),
        False,
    ),
    "mesh PA STRICT with a mesh DR": (pa("mesh", "istio-system", "STRICT") + dr("m", "*.local", "ISTIO_MUTUAL"), False),
    "namespace PA STRICT without a DR": (pa("ns", "default", "STRICT", "  # !KIA0501 error spec/mtls"), False),
    "namespace PA STRICT with a namespace DR": (pa("ns", "default", "STRICT") + dr("ns", NS, "ISTIO_MUTUAL"), False),
    "mesh DR without a mesh PA": (
        dr("m", "*.local", "ISTIO_MUTUAL", "  # !KIA0205 error spec/trafficPolicy/tls/mode"),
        False,
    ),
    "namespace DR without a PA": (
        dr("ns", NS, "ISTIO_MUTUAL", "  # !KIA0206 error spec/trafficPolicy/tls/mode"),
        False,
    ),
    "namespace DR with a permissive mesh PA": (
        pa("mesh", "istio-system", "PERMISSIVE") + dr("ns", NS, "ISTIO_MUTUAL"),
        False,
    ),
    "namespace DR DISABLE under a STRICT namespace PA": (
        pa("ns", "default", "STRICT") + dr("ns", NS, "DISABLE", "  # !KIA0207 error spec/trafficPolicy/tls/mode"),
        True,
    ),
    "namespace DR DISABLE under a STRICT mesh PA": (
        pa("mesh", "istio-system", "STRICT")
        + dr("ns", NS, "DISABLE", "  # !KIA0208 error spec/trafficPolicy/tls/mode"),
        True,
    ),
    "mesh DR DISABLE under a STRICT mesh PA": (
        pa("mesh", "istio-system", "STRICT")
        + dr("m", "*.local", "DISABLE", "  # !KIA0208 error spec/trafficPolicy/tls/mode"),
        True,
    ),
    "namespace DR DISABLE under a PERMISSIVE namespace PA": (
        pa("mesh", "istio-system", "STRICT") + pa("ns", "default", "PERMISSIVE") + dr("ns", NS, "DISABLE"),
        True,
    ),
    "namespace PA DISABLE beside a namespace DR enabling mTLS": (
        pa("ns", "default", "DISABLE", "  # !KIA0505 error spec/mtls") + dr("ns", NS, "ISTIO_MUTUAL"),
        True,
    ),
    "namespace PA DISABLE with a namespace DR disabling": (
        pa("ns", "default", "DISABLE") + dr("m", "*.local", "ISTIO_MUTUAL") + dr("ns", NS, "DISABLE"),
        True,
    ),
    "mesh PA DISABLE beside a mesh DR enabling mTLS": (
        pa("mesh", "istio-system", "DISABLE", "  # !KIA0506 error spec/mtls") + dr("m", "*.local", "ISTIO_MUTUAL"),
        True,
    ),
    "a host DR without TLS overrides the namespace DR": (
        dr("ns", NS, "ISTIO_MUTUAL")
        + dr("reviews", "reviews", None).replace(
            '"reviews"',
            '"reviews"\n  trafficPolicy:  # !KIA0204 warning spec/trafficPolicy\n    loadBalancer: {simple: RANDOM}',
        ),
        True,
    ),
    "a host DR with TLS keeps mTLS": (dr("ns", NS, "ISTIO_MUTUAL") + dr("reviews", "reviews", "ISTIO_MUTUAL"), True),
}


@pytest.mark.parametrize(("text", "auto_mtls"), CASES.values(), ids=CASES.keys())
def test_mtls_checks(check, text: str, auto_mtls: bool) -> None:
    actual, expected = check(text, CODES, auto_mtls=auto_mtls)
    assert actual == expected


def bookinfo_pa(name: str, namespace: str, body: str, marker: str = "") -> str:
    return f"""\
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: {name}, namespace: {namespace}}}
spec:
{body}{marker}
---
"""


def bookinfo_dr(name: str, namespace: str, host: str, mode: str, marker: str = "") -> str:
    return f"""\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  host: "{host}"
  trafficPolicy:
    tls:
      mode: {mode}{marker}
---
"""


BOOKINFO_NS = "*.bookinfo.svc.cluster.local"
GRAFANA_PORTS = bookinfo_pa(
    "grafana-ports-mtls-disabled",
    "istio-system",
    "  selector: {matchLabels: {app: grafana}}\n  portLevelMtls: {'3000': {mode: DISABLE}}",
)

# Kiali's own fixtures (kiali/kiali tests/data/validations/{destinationrules,peerauthentications}/
# disabled_*_checker_N.yaml) with the findings its tests expect.
KIALI_CASES = {
    "destinationrules/disabled_meshwide_checker_1": bookinfo_dr(
        "disable-mesh-mtls", "istio-system", "*.local", "DISABLE"
    )
    + bookinfo_pa("disable-mesh-mtls", "istio-system", "  mtls: {mode: DISABLE}"),
    "destinationrules/disabled_meshwide_checker_2": bookinfo_dr(
        "disable-mesh-mtls", "bookinfo", "*.local", "DISABLE", "  # !KIA0208 error spec/trafficPolicy/tls/mode"
    )
    + bookinfo_pa("disable-mesh-mtls", "istio-system", "  mtls: {mode: STRICT}"),
    "destinationrules/disabled_meshwide_checker_3": bookinfo_dr(
        "mesh-enable-mtls", "istio-system", "*.local", "DISABLE"
    )
    + bookinfo_pa(
        "disable-grafana-mtls", "bookinfo", "  selector: {matchLabels: {app: grafana}}\n  mtls: {mode: DISABLE}"
    ),
    "destinationrules/disabled_meshwide_checker_4": bookinfo_dr("enable-mesh-mtls", "bookinfo", "*.local", "DISABLE")
    + bookinfo_pa("permissive-mesh-mtls", "istio-system", "  mtls: {mode: PERMISSIVE}"),
    "peerauthentications/disabled_meshwide_checker_1": bookinfo_pa(
        "disable-mesh-mtls", "istio-system", "  mtls: {mode: DISABLE}"
    )
    + GRAFANA_PORTS
    + bookinfo_dr("disable-mesh-mtls", "istio-system", "*.local", "DISABLE")
    + bookinfo_dr("grafana-enable-mtls", "istio-system", "grafana.istio-system.svc.cluster.local", "ISTIO_MUTUAL"),
    "peerauthentications/disabled_meshwide_checker_2": bookinfo_pa(
        "disable-mesh-mtls", "istio-system", "  mtls: {mode: DISABLE}", "  # !KIA0506 error spec/mtls"
    )
    + GRAFANA_PORTS
    + bookinfo_dr("enable-mesh-mtls", "bookinfo", "*.local", "ISTIO_MUTUAL")
    + bookinfo_dr("grafana-enable-mtls", "istio-system", "grafana.istio-system.svc.cluster.local", "ISTIO_MUTUAL"),
    "peerauthentications/disabled_meshwide_checker_3": bookinfo_pa(
        "disable-mesh-mtls", "istio-system", "  mtls: {mode: DISABLE}"
    )
    + bookinfo_dr("grafana-enable-mtls", "istio-system", "grafana.istio-system.svc.cluster.local", "DISABLE"),
    "peerauthentications/disabled_namespacewide_checker_1": bookinfo_pa(
        "disable-mtls-bookinfo", "bookinfo", "  mtls: {mode: DISABLE}"
    )
    + bookinfo_dr("disable-mtls-bookinfo", "bookinfo", BOOKINFO_NS, "DISABLE")
    + bookinfo_dr("details-enable-mtls", "bookinfo", "details", "ISTIO_MUTUAL"),
    "peerauthentications/disabled_namespacewide_checker_2": bookinfo_pa(
        "disable-mtls-bookinfo", "bookinfo", "  mtls: {mode: DISABLE}", "  # !KIA0505 error spec/mtls"
    )
    + bookinfo_dr("bookinfo-enable-mtls", "bookinfo", BOOKINFO_NS, "ISTIO_MUTUAL")
    + bookinfo_dr("details-enable-mtls", "bookinfo", "details", "ISTIO_MUTUAL"),
    "peerauthentications/disabled_namespacewide_checker_3": bookinfo_pa(
        "disable-mtls-bookinfo", "bookinfo", "  mtls: {mode: DISABLE}"
    )
    + bookinfo_dr("disable-mesh-mtls", "istio-system", "*.local", "DISABLE")
    + bookinfo_dr("details-enable-mtls", "bookinfo", "details", "ISTIO_MUTUAL"),
    "peerauthentications/disabled_namespacewide_checker_4": bookinfo_pa(
        "disable-mtls-bookinfo", "bookinfo", "  mtls: {mode: DISABLE}", "  # !KIA0505 error spec/mtls"
    )
    + bookinfo_dr("enable-mesh-mtls", "istio-system", "*.local", "ISTIO_MUTUAL")
    + bookinfo_dr("details-enable-mtls", "bookinfo", "details", "ISTIO_MUTUAL"),
    "peerauthentications/disabled_namespacewide_checker_5": bookinfo_pa(
        "disable-mtls-bookinfo", "bookinfo", "  mtls: {mode: DISABLE}"
    ),
    "peerauthentications/disabled_namespacewide_checker_6": bookinfo_pa(
        "disable-mtls-bookinfo", "bookinfo", "  mtls: {mode: DISABLE}"
    )
    + bookinfo_pa("mtls-mesh", "istio-system", "  mtls: {mode: STRICT}")
    + bookinfo_dr("enable-mesh-mtls", "istio-system", "*.local", "ISTIO_MUTUAL")
    + bookinfo_dr("bookinfo-disable-mtls", "bookinfo", BOOKINFO_NS, "DISABLE"),
}


@pytest.mark.parametrize("text", KIALI_CASES.values(), ids=KIALI_CASES.keys())
def test_kialis_own_fixtures(check, text: str) -> None:
    actual, expected = check(text, CODES)
    assert actual == expected


# Kiali reads the resources literally (business/checkers/destinationrules/traffic_policy_checker.go,
# kubernetes/istio.go PeerAuthnHasMTLSEnabled, ParseHost): these pin the corners where that differs
# from resolving hosts or selectors as Istio would.
LITERAL_CASES = {
    "a selector, even an empty one, makes a workload policy (no namespace-wide check)": (
        bookinfo_pa("ns", "bookinfo", "  selector: {}\n  mtls: {mode: DISABLE}")
        + bookinfo_dr("ns", "bookinfo", BOOKINFO_NS, "ISTIO_MUTUAL")
    ),
    "a tls without a mode is DISABLE": (
        bookinfo_pa("ns", "bookinfo", "  mtls: {mode: STRICT}")
        + "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: ns, namespace: bookinfo}\n"
        'spec:\n  host: "*.bookinfo.svc.cluster.local"\n  trafficPolicy:\n'
        "    tls: {sni: x}  # !KIA0207 error spec/trafficPolicy/tls/mode\n---\n"
    ),
    "the first namespace policy enabling mTLS decides (PERMISSIVE before STRICT)": (
        bookinfo_pa("a", "bookinfo", "  mtls: {mode: PERMISSIVE}")
        + bookinfo_pa("b", "bookinfo", "  mtls: {mode: STRICT}")
        + bookinfo_dr("ns", "bookinfo", BOOKINFO_NS, "DISABLE")
    ),
    "a namespace DISABLE policy shields a namespace DR DISABLE from a STRICT mesh": (
        bookinfo_pa("ns", "bookinfo", "  mtls: {mode: DISABLE}")
        + bookinfo_pa("mesh", "istio-system", "  mtls: {mode: STRICT}")
        + bookinfo_dr("ns", "bookinfo", BOOKINFO_NS, "DISABLE")
    ),
    "an UNSET namespace policy leaves the STRICT mesh in force": (
        bookinfo_pa("ns", "bookinfo", "  mtls: {}")
        + bookinfo_pa("mesh", "istio-system", "  mtls: {mode: STRICT}")
        + bookinfo_dr("ns", "bookinfo", BOOKINFO_NS, "DISABLE", "  # !KIA0208 error spec/trafficPolicy/tls/mode")
    ),
    "a wildcard for another namespace is not namespace-wide": (
        bookinfo_pa("ns", "bookinfo", "  mtls: {mode: STRICT}") + bookinfo_dr("ns", "default", BOOKINFO_NS, "DISABLE")
    ),
    "the first decisive namespace-wide rule answers KIA0505 (DISABLE before ISTIO_MUTUAL)": (
        bookinfo_pa("ns", "bookinfo", "  mtls: {mode: DISABLE}")
        + bookinfo_dr("disable", "bookinfo", BOOKINFO_NS, "DISABLE")
        + bookinfo_dr("enable", "bookinfo", BOOKINFO_NS, "ISTIO_MUTUAL")
    ),
    "a mesh-wide ISTIO_MUTUAL rule is overridden by any rule without TLS, external hosts too": (
        bookinfo_dr("mesh", "istio-system", "*.local", "ISTIO_MUTUAL")
        + "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: wiki, namespace: bookinfo}\n"
        'spec:  # !KIA0204 warning spec/trafficPolicy\n  host: "wikipedia.org"\n---\n'
    ),
    "a namespace-wide rule covers its namespace's hosts only": (
        bookinfo_dr("ns", "bookinfo", BOOKINFO_NS, "ISTIO_MUTUAL")
        + "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r, namespace: bookinfo}\n"
        "spec:  # !KIA0204 warning spec/trafficPolicy\n  host: reviews\n---\n"
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r, namespace: other}\n"
        "spec:\n  host: reviews.other.svc.cluster.local\n  trafficPolicy: {loadBalancer: {simple: RANDOM}}\n---\n"
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: short, namespace: bookinfo}\n"
        "spec:\n  host: reviews.bookinfo\n---\n"  # two labels: Kiali takes it for an external host
    ),
    "a port-level TLS setting keeps mTLS": (
        bookinfo_dr("ns", "bookinfo", BOOKINFO_NS, "ISTIO_MUTUAL")
        + "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r, namespace: bookinfo}\n"
        "spec:\n  host: reviews\n  trafficPolicy:\n    portLevelSettings:\n"
        "    - {port: {number: 9080}, tls: {mode: ISTIO_MUTUAL}}\n---\n"
    ),
}


@pytest.mark.parametrize("text", LITERAL_CASES.values(), ids=LITERAL_CASES.keys())
def test_kialis_literal_reading(check, text: str) -> None:
    actual, expected = check(text, CODES)
    assert actual == expected


def test_without_auto_mtls_the_missing_counterparts_show_on_kialis_paths(check) -> None:
    text = (
        bookinfo_pa("mesh", "istio-system", "  mtls: {mode: STRICT}", "  # !KIA0401 error spec/mtls")
        + bookinfo_pa("ns", "bookinfo", "  mtls: {mode: STRICT}", "  # !KIA0501 error spec/mtls")
        + bookinfo_dr("ns", "default", "*.default.svc.cluster.local", "ISTIO_MUTUAL")
        + bookinfo_pa("sel", "default", "  selector: {matchLabels: {app: reviews}}\n  mtls: {mode: STRICT}")
    )
    actual, expected = check(text, CODES, auto_mtls=False)
    assert actual == expected
    # the mesh-wide STRICT policy enables mTLS for the default namespace's rule: no KIA0206
    assert not any(code == "KIA0206" for code, *_ in actual)
