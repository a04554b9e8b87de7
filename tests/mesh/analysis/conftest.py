"""Harness for the analyzer's table-driven tests.

A case is YAML text in which each expected finding is marked on the line where it must be
reported: `# !KIA0203 error spec/subsets[1]`. The harness loads the YAML (which must load
cleanly), analyzes it against a Bookinfo-like Compose topology and returns the actual and the
expected (code, severity, line, path) sets, restricted to the codes under test.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection

import pytest

from sandbox.mesh.analysis import Context, run
from sandbox.mesh.diagnostics import Diagnostic
from sandbox.mesh.loader import load_text
from sandbox.mesh.state import MeshState
from sandbox.mesh.topology import parse_compose

BOOKINFO = """\
services:
  productpage:
    image: productpage
    labels: {app: productpage, version: v1}
    x-sandbox: {port: 9080}
  details:
    image: details
    labels: {app: details, version: v1}
    x-sandbox: {port: 9080}
  reviews-v1:
    image: reviews
    labels: {app: reviews, version: v1}
    x-sandbox: {port: 9080, serviceAccount: bookinfo-reviews}
  reviews-v2:
    image: reviews
    labels: {app: reviews, version: v2}
    x-sandbox: {port: 9080, serviceAccount: bookinfo-reviews}
  ratings:
    image: ratings
    labels: {app: ratings, version: v1}
    x-sandbox: {port: 9080}
  legacy:
    image: legacy
    labels: {app: legacy, version: v1}
    x-sandbox: {port: 8080, namespace: legacy}
"""

Finding = tuple[str, str, int, str]
_MARK = re.compile(r"#\s*!(\w+)\s+(error|warning|info)\s+(\S+)")


def expected_findings(text: str, codes: Collection[str]) -> set[Finding]:
    found = set()
    for number, line in enumerate(text.splitlines(), start=1):
        for code, severity, path in _MARK.findall(line):
            assert code in codes, f"marker for {code} in a test of {sorted(codes)}"
            found.add((code, severity, number, path))
    return found


def analyze_text(text: str, compose: str = BOOKINFO, *, auto_mtls: bool = True) -> list[Diagnostic]:
    loaded = load_text(text, "istio.yaml")
    assert not loaded.diagnostics, [d.format() for d in loaded.diagnostics]
    topology = parse_compose(compose, "compose.yaml")
    assert not topology.diagnostics, [d.format() for d in topology.diagnostics]
    return run(Context(MeshState(loaded.resources, topology), auto_mtls=auto_mtls))


Check = Callable[..., tuple[set[Finding], set[Finding]]]


@pytest.fixture
def check() -> Check:
    """`check(yaml, codes, compose=..., auto_mtls=...)` -> (actual, expected) findings."""

    def run_case(
        text: str, codes: Collection[str], compose: str = BOOKINFO, auto_mtls: bool = True
    ) -> tuple[set[Finding], set[Finding]]:
        actual = {
            (d.code, str(d.severity), d.line, d.path)
            for d in analyze_text(text, compose, auto_mtls=auto_mtls)
            if d.code in codes
        }
        return actual, expected_findings(text, codes)

    return run_case
