"""loader: files, directories and stdin -> typed resources, and diagnostics that name file, line and path."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox.mesh.diagnostics import Severity
from sandbox.mesh.loader import LoadResult, load_paths, load_text, load_texts
from sandbox.mesh.resources import lookup_kind

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

DR = """\
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: reviews, namespace: shop}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
"""

PA = """\
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec:
  mtls: {mode: STRICT}
"""


def codes(result: LoadResult) -> list[tuple[str, str, int, str]]:
    return [(d.code, d.file, d.line, d.path) for d in result.diagnostics]


def test_a_resource_is_typed_and_remembers_where_it_came_from() -> None:
    result = load_text(VS, "vs.yaml")
    (vs,) = result.resources
    assert (vs.kind, vs.api_version, vs.ref) == (
        "VirtualService",
        "networking.istio.io/v1",
        "VirtualService/default/reviews",
    )
    assert vs.spec.http[0].route[0].destination.subset == "v1"
    assert (vs.origin.file, vs.origin.line, vs.origin.document) == ("vs.yaml", 1, 0)
    assert vs.origin.position("spec/http[0]/route[0]/destination/subset") == (12, 9)


def test_a_bad_duration_is_an_error_at_its_line_and_the_resource_still_loads() -> None:
    result = load_text(VS, "vs.yaml")
    (diag,) = result.diagnostics
    assert (diag.code, diag.severity, diag.file, diag.line, diag.column) == ("SBX004", Severity.ERROR, "vs.yaml", 8, 28)
    assert diag.path == "spec/http[0]/retries/perTryTimeout"
    assert diag.resource == "VirtualService/default/reviews"
    assert "'5' is not a duration" in diag.message
    assert result.errors == (diag,)
    assert result.resources[0].spec.http[0].retries.attempts == 3


def test_namespaces_default_like_kubectl_apply() -> None:
    result = load_texts([("a.yaml", VS), ("b.yaml", DR), ("c.yaml", PA)])
    assert [r.ref for r in result.resources] == [
        "VirtualService/default/reviews",
        "DestinationRule/shop/reviews",
        "PeerAuthentication/istio-system/default",
    ]


def test_several_documents_in_one_file_keep_their_own_lines() -> None:
    result = load_text(VS + "---\n" + DR, "all.yaml")
    vs, dr = result.resources
    assert (vs.origin.line, dr.origin.line, dr.origin.document) == (1, 13, 1)  # a document starts at its ---
    assert dr.origin.position("spec/subsets[0]") == (20, 5)


def test_a_kubectl_list_is_unpacked_with_real_lines() -> None:
    text = "apiVersion: v1\nkind: List\nitems:\n" + "".join(
        "- " + doc.replace("\n", "\n  ").rstrip() + "\n"
        for doc in (VS.replace("perTryTimeout: 5", "perTryTimeout: 5s"), DR)
    )
    result = load_text(text, "list.yaml")
    assert [r.ref for r in result.resources] == ["VirtualService/default/reviews", "DestinationRule/shop/reviews"]
    assert result.diagnostics == ()
    vs, dr = result.resources
    assert vs.origin.position("spec/http[0]/route[0]/destination/subset") == (15, 11)
    assert dr.origin.line == 16


def test_a_problem_inside_a_list_item_names_the_item_line() -> None:
    text = (
        "apiVersion: v1\nkind: List\nitems:\n- apiVersion: networking.istio.io/v1\n  kind: Gateway\n"
        "  metadata: {name: gw}\n  spec: {servers: 3}\n"
    )
    assert codes(load_text(text, "list.yaml")) == [("SBX003", "list.yaml", 7, "spec/servers")]


@pytest.mark.parametrize(
    ("text", "code", "severity", "line", "path", "message"),
    [
        (
            "apiVersion: networking.istio.io/v1\nkind: VirtualServce\nmetadata: {name: a}\n",
            "SBX007", Severity.ERROR, 2, "kind",
            "unknown kind 'VirtualServce' in networking.istio.io; did you mean 'VirtualService'?",
        ),
        (
            "apiVersion: security.istio.io/v1\nkind: Whatever\nmetadata: {name: a}\n",
            "SBX007", Severity.ERROR, 2, "kind", "unknown kind 'Whatever' in security.istio.io",
        ),
        (
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: a}\n",
            "SBX007", Severity.INFO, 2, "kind", "Deployment (apps/v1) is not an Istio resource; ignored",
        ),
        (
            "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n",
            "SBX007", Severity.INFO, 2, "kind", "Service (v1) is not an Istio resource; ignored",
        ),
        (
            "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: a}\n",
            "SBX007", Severity.INFO, 2, "kind",
            "Gateway (gateway.networking.k8s.io/v1) is not an Istio resource; ignored",
        ),
        (
            "apiVersion: networking.istio.io/v2\nkind: VirtualService\nmetadata: {name: a}\n",
            "SBX005", Severity.ERROR, 1, "apiVersion",
            "apiVersion 'networking.istio.io/v2' is not served for VirtualService; use networking.istio.io/v1, "
            "networking.istio.io/v1beta1, networking.istio.io/v1alpha3",
        ),
        (
            "apiVersion: security.istio.io/v1alpha1\nkind: PeerAuthentication\nmetadata: {name: a}\n",
            "SBX005", Severity.ERROR, 1, "apiVersion",
            "apiVersion 'security.istio.io/v1alpha1' is not served for PeerAuthentication; use security.istio.io/v1, "
            "security.istio.io/v1beta1",
        ),
        ("kind: VirtualService\nmetadata: {name: a}\n", "SBX006", Severity.ERROR, 1, "",
         "missing or invalid 'apiVersion'"),
        ("apiVersion: networking.istio.io/v1\nkind: 5\n", "SBX006", Severity.ERROR, 2, "kind",
         "missing or invalid 'kind'"),
        ("apiVersion: networking.istio.io/v1\nkind: Gateway\nspec: {}\n", "SBX006", Severity.ERROR, 1, "metadata",
         "missing required field 'name' in ObjectMeta"),
        ("apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: ''}\n", "SBX006", Severity.ERROR, 3,
         "metadata", "missing required field 'metadata.name'"),
        ("apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: [a]}\n", "SBX003", Severity.ERROR, 3,
         "metadata/name", "name: expected a string, got a list"),
        ("- a\n- b\n", "SBX007", Severity.ERROR, 1, "",
         "a document must be a map with apiVersion, kind, metadata and spec"),
        ("apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: a}\nspecs: {}\n", "SBX002",
         Severity.WARNING, 4, "specs", "unknown top-level field 'specs'"),
        ("apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: a, lables: {}}\n", "SBX002",
         Severity.WARNING, 3, "metadata/lables", "unknown field 'lables' in ObjectMeta; did you mean 'labels'?"),
        ("a: [\n", "SBX001", Severity.ERROR, 2, "", "invalid YAML"),
        ("a: 1\na: 2\n", "SBX010", Severity.WARNING, 2, "a", "duplicate key 'a' (the last one wins)"),
    ],
)  # fmt: skip
def test_each_problem_is_one_diagnostic_with_file_line_and_path(
    text: str, code: str, severity: Severity, line: int, path: str, message: str
) -> None:
    result = load_text(text, "x.yaml")
    relevant = [d for d in result.diagnostics if d.code == code]
    assert len(relevant) == 1, [d.format() for d in result.diagnostics]
    (diag,) = relevant
    assert (diag.severity, diag.file, diag.line, diag.path) == (severity, "x.yaml", line, path)
    assert message in diag.message


def test_a_resource_with_a_bad_field_keeps_the_good_ones_and_other_documents_load() -> None:
    text = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n---\n" + DR
    result = load_text(text, "mixed.yaml")
    assert [r.ref for r in result.resources] == ["DestinationRule/shop/reviews"]
    assert [d.severity for d in result.diagnostics] == [Severity.INFO]
    assert result.errors == ()


def test_a_duplicate_resource_is_an_error_at_the_second_definition() -> None:
    result = load_texts([("a.yaml", DR), ("b.yaml", "# a comment\n" + DR)])
    (dr,) = result.resources
    assert dr.origin.file == "a.yaml"
    (diag,) = result.diagnostics
    assert (diag.code, diag.severity, diag.file, diag.line, diag.path) == (
        "SBX009",
        Severity.ERROR,
        "b.yaml",
        4,
        "metadata/name",
    )
    assert diag.resource == "DestinationRule/shop/reviews"
    assert diag.message == "DestinationRule shop/reviews is already defined at a.yaml:1; this definition is ignored"


def test_a_duplicate_names_the_first_definitions_first_line_not_its_separator() -> None:
    first = "# shared rules\n---\n# reviews\n" + DR  # apiVersion on line 4
    result = load_texts([("a.yaml", first), ("b.yaml", "---\n" + DR)])
    (dr,) = result.resources
    assert (dr.origin.line, dr.origin.first_line) == (2, 4)  # the document opens at its ---, the resource at 4
    (diag,) = result.diagnostics
    assert (diag.code, diag.file, diag.line, diag.path) == ("SBX009", "b.yaml", 4, "metadata/name")
    assert "already defined at a.yaml:4;" in diag.message


def test_the_same_name_in_another_namespace_or_kind_is_not_a_duplicate() -> None:
    other_ns = DR.replace("namespace: shop", "namespace: other")
    vs = VS.replace("perTryTimeout: 5", "perTryTimeout: 5s").replace(
        "name: reviews", "name: reviews\n  namespace: shop"
    )
    result = load_texts([("a.yaml", DR), ("b.yaml", other_ns), ("c.yaml", vs)])
    assert len(result.resources) == 3 and result.diagnostics == ()


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_directories_are_read_recursively_in_a_stable_order(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "b/dr.yaml": DR,
            "a/deeper/pa.yml": PA,
            "gw.json": '{"apiVersion": "networking.istio.io/v1", "kind": "Gateway", "metadata": {"name": "gw"}}',
            "notes.txt": "not: yaml: at all: [",
            ".hidden/vs.yaml": VS,
            "a/.git/x.yaml": VS,
        },
    )
    result = load_paths([tmp_path])
    assert [(r.ref, Path(r.origin.file).relative_to(tmp_path).as_posix()) for r in result.resources] == [
        ("PeerAuthentication/istio-system/default", "a/deeper/pa.yml"),
        ("DestinationRule/shop/reviews", "b/dr.yaml"),
        ("Gateway/default/gw", "gw.json"),
    ]
    assert result.diagnostics == ()


def test_files_and_directories_together_and_a_missing_file(tmp_path: Path) -> None:
    write(tmp_path, {"dir/dr.yaml": DR, "pa.yaml": PA})
    missing = tmp_path / "nope.yaml"
    result = load_paths([tmp_path / "pa.yaml", tmp_path / "dir", missing])
    assert [r.kind for r in result.resources] == ["PeerAuthentication", "DestinationRule"]
    (diag,) = result.diagnostics
    assert (diag.code, diag.severity, diag.file) == ("SBX000", Severity.ERROR, str(missing))
    assert diag.message.startswith("cannot read:")


def test_stdin_is_a_dash(tmp_path: Path) -> None:
    write(tmp_path, {"dr.yaml": DR})
    result = load_paths(["-", tmp_path], stdin=VS.encode())
    assert sorted(r.kind for r in result.resources) == ["DestinationRule", "VirtualService"]
    (diag,) = result.diagnostics
    assert (diag.file, diag.line, diag.code) == ("<stdin>", 8, "SBX004")


def test_a_duplicate_across_stdin_and_a_file(tmp_path: Path) -> None:
    write(tmp_path, {"dr.yaml": DR})
    result = load_paths([tmp_path / "dr.yaml", "-"], stdin=DR.encode())
    assert [(d.code, d.file, d.line) for d in result.diagnostics] == [("SBX009", "<stdin>", 3)]


def test_every_diagnostic_has_a_file_a_line_and_for_fields_a_path() -> None:
    broken = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: r, labels: {a: [1]}}
spec:
  hosts: reviews
  htp: []
  http:
  - match: [{uri: {prefx: /a}}]
    route: [{destination: {host: r, port: {number: x}}, weight: '5'}]
    timeout: 1d
    fault: {abort: {httpStatus: 503, percentage: {value: hi}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: r}
spec:
  trafficPolicy: {loadBalancer: {simple: RANDUM}, tls: {mode: 5}}
  subsets: [{labels: 3}]
"""
    result = load_text(broken, "broken.yaml")
    found = {(d.code, d.line, d.path) for d in result.diagnostics}
    assert found == {
        ("SBX003", 3, "metadata/labels/a"),
        ("SBX003", 5, "spec/hosts"),
        ("SBX002", 6, "spec/htp"),
        ("SBX002", 8, "spec/http[0]/match[0]/uri/prefx"),
        ("SBX003", 9, "spec/http[0]/route[0]/destination/port/number"),
        ("SBX003", 9, "spec/http[0]/route[0]/weight"),
        ("SBX004", 10, "spec/http[0]/timeout"),
        ("SBX003", 11, "spec/http[0]/fault/abort/percentage/value"),
        ("SBX006", 16, "spec"),
        ("SBX005", 17, "spec/trafficPolicy/loadBalancer/simple"),
        ("SBX005", 17, "spec/trafficPolicy/tls/mode"),
        ("SBX003", 18, "spec/subsets[0]/labels"),
        ("SBX006", 18, "spec/subsets[0]"),
    }
    assert all(d.file == "broken.yaml" and d.resource for d in result.diagnostics)
    assert [r.ref for r in result.resources] == ["VirtualService/default/r", "DestinationRule/default/r"]


@pytest.mark.parametrize(
    ("name", "kind"),
    [("vs", "VirtualService"), ("virtualservices", "VirtualService"), ("DR", "DestinationRule"),
     ("ap", "AuthorizationPolicy"), ("PeerAuthentication", "PeerAuthentication"), ("se", "ServiceEntry")],
)  # fmt: skip
def test_kinds_by_short_name(name: str, kind: str) -> None:
    info = lookup_kind(name)
    assert info is not None and info.kind == kind
    assert lookup_kind("nope") is None
