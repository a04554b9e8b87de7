"""The analyzer as a whole: the acceptance cases, ignoring codes, and speed on a big mesh."""

from __future__ import annotations

import re
import time
from pathlib import Path

from sandbox.mesh.analysis import analyze
from sandbox.mesh.analysis.codes import CATALOGUE, ENFORCEMENT, KIALI
from sandbox.mesh.diagnostics import Severity
from sandbox.mesh.loader import load_text
from sandbox.mesh.state import MeshState
from sandbox.mesh.topology import parse_compose

from .conftest import BOOKINFO, analyze_text

DR_V3 = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
spec:
  host: reviews
  subsets:
  - name: v1
    labels:
      version: v1
  - name: v3
    labels:
      version: v3
---
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
        subset: v3
"""


def test_acceptance_subset_labels_match_no_workload() -> None:
    (found,) = [d for d in analyze_text(DR_V3) if d.code == "KIA0203"]
    assert found.format() == (
        "istio.yaml:11:5: error KIA0203 This subset's labels are not found in any matching host "
        "[DestinationRule/default/reviews spec/subsets[1]]"
    )


def test_acceptance_subset_no_destination_rule_defines() -> None:
    text = DR_V3.replace("subset: v3", "subset: v2")
    (found,) = [d for d in analyze_text(text) if d.code.startswith("KIA11")]
    assert (found.code, found.severity, found.message) == ("KIA1107", Severity.WARNING, "Subset not found")
    assert (found.line, found.path) == (24, "spec/http[0]/route[0]/destination")


def test_acceptance_host_that_exists_nowhere() -> None:
    text = DR_V3.replace("host: reviews\n        subset: v3", "host: nowhere")
    (found,) = [d for d in analyze_text(text) if d.code.startswith("KIA11")]
    assert (found.code, found.severity, found.line) == ("KIA1101", Severity.WARNING, 25)
    assert found.message == "DestinationWeight on route doesn't have a valid service (host not found)"


def test_bookinfo_rules_are_clean() -> None:
    text = (
        DR_V3.replace("version: v3", "version: v2").replace("name: v3", "name: v2").replace("subset: v3", "subset: v2")
    )
    assert analyze_text(text) == []


def _annotated(value: str) -> str:
    return DR_V3.replace(
        "  name: reviews\nspec:\n  host",
        f"  name: reviews\n  annotations:\n    kiali.io/ignore-validations: {value}\nspec:\n  host",
    )


def test_the_ignore_annotation_silences_listed_codes_or_all() -> None:
    assert [d.code for d in analyze_text(_annotated('"KIA0201, kia0203"'))] == []
    assert [d.code for d in analyze_text(_annotated('"KIA0209"'))] == ["KIA0203"]
    assert [d.code for d in analyze_text(_annotated('""'))] == []


def test_the_ignore_argument_drops_codes() -> None:
    loaded = load_text(DR_V3, "istio.yaml")
    state = MeshState(loaded.resources, parse_compose(BOOKINFO, "compose.yaml"))
    assert [d.code for d in analyze(state)] == ["KIA0203"]
    assert analyze(state, ignore=["KIA0203"]) == []


def test_every_kiali_code_has_kialis_severity_and_a_message() -> None:
    assert KIALI["KIA1107"].severity is Severity.WARNING
    assert KIALI["KIA0203"].message == "This subset's labels are not found in any matching host"
    assert all(c.message and c.code == code for code, c in CATALOGUE.items())


def test_every_code_the_sources_emit_is_catalogued() -> None:
    """SARIF describes each rule it reports from the catalogue: a code missing there is a bare id."""
    sources = Path(__file__).resolve().parents[3] / "sandbox"
    emitted = {
        code for path in sources.rglob("*.py") for code in re.findall(r'"((?:SBX|KIA)\d{3,4})"', path.read_text())
    }
    assert emitted, "no codes found: the pattern no longer matches how codes are written"
    assert sorted(emitted - CATALOGUE.keys()) == []


def big_mesh(services: int) -> tuple[str, str]:
    """A Compose file with `services` x 2 workloads and about 4 Istio resources per service."""
    compose = ["services:"]
    istio = []
    for i in range(services):
        ns = f"ns{i % 10}"
        for version in ("v1", "v2"):
            compose.append(
                f"  s{i}-{version}: {{image: x, labels: {{app: s{i}, version: {version}}}, "
                f"x-sandbox: {{port: 8080, namespace: {ns}}}}}"
            )
        istio.append(f"""\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: s{i}, namespace: {ns}}}
spec:
  hosts: [s{i}]
  gateways: [mesh, istio-system/gw]
  http:
  - match: [{{headers: {{x-user: {{exact: u{i}}}}}}}]
    route: [{{destination: {{host: s{i}, subset: v2}}}}]
  - route:
    - {{destination: {{host: s{i}, subset: v1}}, weight: 90}}
    - {{destination: {{host: s{(i + 1) % services}.ns{(i + 1) % 10}, subset: v1}}, weight: 10}}
    retries: {{attempts: 2, perTryTimeout: 1s}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: s{i}, namespace: {ns}}}
spec:
  host: s{i}
  subsets: [{{name: v1, labels: {{version: v1}}}}, {{name: v2, labels: {{version: v2}}}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: s{i}, namespace: {ns}}}
spec:
  selector: {{matchLabels: {{app: s{i}}}}}
  rules: [{{from: [{{source: {{principals: [cluster.local/ns/{ns}/sa/s{i}], namespaces: [{ns}]}}}}]}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: s{i}, namespace: {ns}}}
spec:
  hosts: [api{i}.example.com]
  ports: [{{number: 443, name: tls, protocol: TLS}}]
""")
    istio.append("""\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 8080, name: http, protocol: HTTP}, hosts: ["*"]}]
""")
    return "\n".join(compose) + "\n", "---\n".join(istio)


def test_a_thousand_resources_analyze_well_under_two_seconds() -> None:
    compose, istio = big_mesh(250)
    loaded = load_text(istio, "big.yaml")
    assert len(loaded.resources) == 1001 and not loaded.diagnostics
    state = MeshState(loaded.resources, parse_compose(compose, "compose.yaml"))
    start = time.perf_counter()
    found = [d for d in analyze(state) if d.code not in ENFORCEMENT]  # SBX7xx: said of every policy
    elapsed = time.perf_counter() - start
    assert found == []  # a consistent mesh: the indexes must not invent findings either
    assert elapsed < 1.0, f"analysis of 1,001 resources took {elapsed:.2f}s"
