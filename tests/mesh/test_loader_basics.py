from __future__ import annotations

from sandbox.mesh.diagnostics import Severity
from sandbox.mesh.loader import load_text

VS = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts: [reviews]
  http:
  - retries: {attempts: 3, perTryTimeout: 5}
    route:
    - destination:
        host: reviews
        subset: v1
"""


def test_a_resource_is_typed_and_remembers_where_it_came_from() -> None:
    result = load_text(VS, "vs.yaml")
    (vs,) = result.resources
    assert vs.ref == "VirtualService/default/reviews"
    assert vs.spec.http[0].route[0].destination.subset == "v1"
    assert vs.origin.position("spec/http[0]/route[0]/destination/subset") == (12, 9)


def test_a_bad_duration_is_an_error_at_its_line() -> None:
    (diag,) = load_text(VS, "vs.yaml").diagnostics
    assert (diag.code, diag.severity, diag.line) == ("SBX004", Severity.ERROR, 8)
    assert diag.path == "spec/http[0]/retries/perTryTimeout"
    assert "'5' is not a duration" in diag.message
