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
