"""Fuzzing the loader and the Compose parser: no input, however broken, raises or hangs.

Every example must come back as a LoadResult (or Topology) holding only Diagnostics that name a
file and a line, within a per-example deadline. The strategies go from raw bytes to documents
shaped like real Istio resources whose fields hold the wrong types, so the typed decoder is
exercised everywhere, not just the YAML parser.
"""

from __future__ import annotations

import dataclasses
import time
import types
import typing
from datetime import timedelta
from enum import Enum
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sandbox.mesh.legacy  # noqa: F401  (registers the legacy kinds: fuzz them too, in a stable order)
from sandbox.mesh.analysis import analyze
from sandbox.mesh.diagnostics import Diagnostic, Severity
from sandbox.mesh.loader import LoadResult, load_text, load_texts
from sandbox.mesh.resources import KINDS
from sandbox.mesh.schema import Duration, yaml_name
from sandbox.mesh.state import MeshState
from sandbox.mesh.topology import MeshSettings, Topology, WorkloadSettings, parse_compose
from sandbox.mesh.yamlsrc import dump_yaml
from sandbox.output import FORMATS, render

FUZZ = settings(
    max_examples=120,
    deadline=timedelta(seconds=2),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,  # the same examples on every run: a red CI run reproduces on a laptop
)
FUZZ_CHEAP = settings(FUZZ, max_examples=500)  # raw input is rejected fast: afford more examples


def check_load(result: Any, file: str) -> None:
    assert isinstance(result, LoadResult)
    for d in result.diagnostics:
        assert isinstance(d, Diagnostic)
        assert isinstance(d.severity, Severity)
        assert d.file == file
        assert d.line >= 0 and d.column >= 0
        assert d.code.startswith("SBX") and d.message
    for r in result.resources:
        assert r.origin.file == file and r.name


def check_topology(topology: Any, file: str) -> None:
    assert isinstance(topology, Topology)
    for d in topology.diagnostics:
        assert isinstance(d, Diagnostic) and d.file == file and d.line >= 0
    assert any(w.builtin for w in topology.workloads) or topology.diagnostics


# --- raw input -------------------------------------------------------------------------------


@FUZZ_CHEAP
@given(st.binary(max_size=2000))
def test_arbitrary_bytes(data: bytes) -> None:
    check_load(load_text(data, "bytes.yaml"), "bytes.yaml")
    check_topology(parse_compose(data, "compose.yaml"), "compose.yaml")


@FUZZ_CHEAP
@given(st.text(max_size=2000))
def test_arbitrary_text(text: str) -> None:
    check_load(load_text(text, "text.yaml"), "text.yaml")
    check_topology(parse_compose(text, "compose.yaml"), "compose.yaml")


TOKENS = [
    "\n", "\n", "\n", " ", "  ", "    ", "\t", "- ", ": ", ":", ",", "[", "]", "{", "}", "? ", "---\n", "...\n",
    "&a ", "*a", "&b ", "*b", "<<: ", "!!str ", "!!int ", "!!binary ", "!!timestamp ", "!!set ", "!custom ",
    "|\n", ">-\n", "'", '"', "#", "%YAML 1.1\n", "~", "null", "true", "no", "0x1F", "0o17", "1e400", ".inf", ".nan",
    "-.inf", "12:30:00", "2001-12-14t21:59:43.10-05:00", "99999999999999999999999", "1.5s", "100ms", "1h30m",
    "apiVersion", "networking.istio.io/v1", "security.istio.io/v1", "kind", "VirtualService", "DestinationRule",
    "Gateway", "ServiceEntry", "AuthorizationPolicy", "PeerAuthentication", "List", "items", "metadata", "name",
    "namespace", "spec", "hosts", "http", "route", "destination", "host", "subset", "weight", "match", "uri",
    "prefix", "timeout", "retries", "subsets", "labels", "trafficPolicy", "services", "x-sandbox", "app", "version",
    "port", "replicas", "local", "command", "ingress", "\\u0000", "é", "😀", "\ufeff",
]  # fmt: skip


@FUZZ_CHEAP
@given(st.lists(st.sampled_from(TOKENS), max_size=300).map("".join))
def test_yaml_shaped_token_soup(text: str) -> None:
    check_load(load_text(text, "soup.yaml"), "soup.yaml")
    check_topology(parse_compose(text, "compose.yaml"), "compose.yaml")


# --- well-formed YAML, wrong shapes ------------------------------------------------------------

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**300, max_value=10**320),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["5", "1.5s", "100ms", "1h30m", "-1s", "ROUND_ROBIN", "STRICT", "v1", "*", "*.local", ""]),
)
JUNK = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.one_of(st.text(max_size=10), st.integers()), inner, max_size=4)
    ),
    max_leaves=25,
)


def shaped(tp: Any, depth: int = 0) -> st.SearchStrategy[Any]:
    """Data following the schema of `tp` most of the time, junk of any type the rest."""
    if depth > 8:
        return JUNK
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(tp) if a is not type(None)]
        right = st.one_of(*(shaped(o, depth) for o in options))
    elif origin is tuple:
        right = st.lists(shaped(typing.get_args(tp)[0], depth + 1), max_size=3)
    elif origin is dict:
        right = st.dictionaries(st.text(max_size=8), shaped(typing.get_args(tp)[1], depth + 1), max_size=3)
    elif tp is Duration:
        right = st.sampled_from(["1s", "0.5s", "100ms", "1h30m", "5", "", "1.5", "s", "-1s", "1d", "9" * 400 + "h"])
    elif isinstance(tp, type) and issubclass(tp, Enum):
        right = st.sampled_from([m.value for m in tp] + [m.value.lower() for m in tp] + ["NOPE"])
    elif dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        fields = {yaml_name(f): shaped(hints[f.name], depth + 1) for f in dataclasses.fields(tp)}
        right = st.fixed_dictionaries({}, optional=fields).flatmap(
            lambda d: st.dictionaries(st.sampled_from(["bogus", "hots", "Host"]), JUNK, max_size=1).map(
                lambda extra: {**d, **extra}
            )
        )
    else:
        right = SCALARS
    return st.one_of(right, right, right, JUNK)  # mostly right, sometimes any junk


@st.composite
def resources(draw: st.DrawFn) -> str:
    info = draw(st.sampled_from(sorted(KINDS.values(), key=lambda k: k.kind)))
    version = draw(st.sampled_from([*info.versions, "v9"]))
    doc: dict[str, Any] = {
        "apiVersion": f"{info.group}/{version}",
        "kind": info.kind,
        "metadata": draw(st.one_of(st.just({"name": "r", "namespace": "ns"}), JUNK)),
        "spec": draw(shaped(info.spec)),
    }
    if draw(st.booleans()):
        doc["extra"] = draw(JUNK)
    return dump_yaml(doc)


@FUZZ
@given(st.lists(resources(), min_size=1, max_size=4))
def test_resources_with_wrong_types_everywhere(documents: list[str]) -> None:
    text = "---\n".join(documents)
    check_load(load_text(text, "resources.yaml"), "resources.yaml")


@FUZZ
@given(st.lists(resources(), max_size=3), st.booleans())
def test_kind_list_and_several_files(documents: list[str], as_list: bool) -> None:
    if as_list:
        from sandbox.mesh.yamlsrc import parse_documents

        items = [parse_documents(d, "x")[0][0].data for d in documents]
        sources = [("list.yaml", dump_yaml({"apiVersion": "v1", "kind": "List", "items": items}))]
    else:
        sources = [(f"f{i}.yaml", d) for i, d in enumerate(documents)]
    result = load_texts(sources)
    assert isinstance(result, LoadResult)
    assert {d.file for d in result.diagnostics} <= {file for file, _ in sources}
    assert all(d.line >= 1 for d in result.diagnostics)  # everything here was parsed: a real line


@st.composite
def compose_files(draw: st.DrawFn) -> str:
    services = {}
    for name in draw(st.lists(st.sampled_from(["web", "api", "api-v2", "db", "1", "x y"]), max_size=4, unique=True)):
        labels = draw(
            st.one_of(
                st.fixed_dictionaries({}, optional={"app": SCALARS, "version": SCALARS}),
                st.lists(st.sampled_from(["app=api", "version=v1", "version=v2", "app", "=", "app=web"]), max_size=3),
                JUNK,
            )
        )
        spec = draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "image": SCALARS,
                    "ports": st.one_of(st.lists(st.sampled_from(["8080", "80:9080/tcp", "a:b", "1-2"])), JUNK),
                    "expose": JUNK,
                    "x-sandbox": shaped(WorkloadSettings),
                },
            )
        )
        services[name] = {"labels": labels, **spec} if draw(st.booleans()) else draw(JUNK)
    doc: dict[str, Any] = {"services": draw(st.one_of(st.just(services), st.just(services), JUNK))}
    if draw(st.booleans()):
        doc["x-sandbox"] = draw(shaped(MeshSettings))
    return dump_yaml(doc)


@FUZZ
@given(compose_files())
def test_compose_files_with_wrong_types_everywhere(text: str) -> None:
    topology = parse_compose(text, "compose.yaml")
    check_topology(topology, "compose.yaml")
    assert all(d.line >= 1 for d in topology.diagnostics)
    for w in topology.workloads:  # whatever got through is usable downstream
        assert isinstance(w.app, str) and isinstance(w.version, str) and w.replicas >= 0
        assert w.port is None or isinstance(w.port, int)


@settings(FUZZ, max_examples=80)
@given(st.lists(resources(), min_size=1, max_size=4), compose_files())
def test_analyze_survives_whatever_the_loader_let_through(documents: list[str], compose: str) -> None:
    """What `sandbox analyze` does with it: the checkers and the renderers see half-valid objects."""
    loaded = load_text("---\n".join(documents), "resources.yaml")
    topology = parse_compose(compose, "compose.yaml")
    found = [*loaded.diagnostics, *topology.diagnostics, *analyze(MeshState(loaded.resources, topology))]
    assert all(isinstance(d, Diagnostic) and d.line >= 0 for d in found)
    for fmt in FORMATS:
        assert isinstance(render(found, fmt), str)


# --- the classic attacks, one by one ---------------------------------------------------------

VS = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: x}\nspec:\n"


def _laughs(levels: int, width: int) -> str:
    lines = ['a0: &a0 ["lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def _typed_bomb(copies: int) -> str:
    """Aliases of a route full of type errors: every copy is decoded (and reported) again."""
    text = (
        VS
        + "  hosts: [a]\n  x: &r {timeout: 5, retries: {attempts: x, perTryTimeout: 7}, route: [{destination: {}}]}\n"
    )
    text += "  http: &h [" + ", ".join(["*r"] * 1000) + "]\n"
    return text + "  tcp: [" + ", ".join(["{route: *h}"] * copies) + "]\n"


ATTACKS: list[tuple[str, str | bytes, str | None]] = [
    ("billion laughs", _laughs(10, 10), "SBX008"),
    ("typed alias bomb", _typed_bomb(100), "SBX008"),
    ("aliases just under the limit", _typed_bomb(6), "SBX003"),
    ("laughs inside a spec", VS + "  hosts: &h [a, a, a, a]\n  exportTo: [*h, *h, *h, *h]\n", "SBX003"),
    ("100,000 [", "[" * 100_000, "SBX001"),
    ("100,000 [ closed", "[" * 100_000 + "]" * 100_000, "SBX001"),
    ("100,000 {", "{a: " * 100_000, "SBX008"),
    ("deep block nesting", "".join("  " * i + f"k{i}:\n" for i in range(5_000)), "SBX008"),
    ("deep block lists", "".join("  " * i + "- \n" for i in range(5_000)), "SBX008"),
    ("17 MiB", "a: " + "x" * (17 * 1024 * 1024), "SBX008"),
    ("NUL in text", "a: b\x00c\n", "SBX001"),
    ("NUL bytes", b"\x00" * 100, "SBX001"),
    ("invalid UTF-8", b"kind: \xff\xfe\xfd\n", "SBX001"),
    ("UTF-16 with BOM", "kind: x\n".encode("utf-16"), "SBX001"),
    ("tab indentation", "spec:\n\thosts: [a]\n", "SBX001"),
    ("5,000-digit integer", VS + "  hosts: [a]\n  http: [{retries: {attempts: " + "9" * 5000 + "}}]\n", "SBX001"),
    ("300-digit float", VS + "  http: [{fault: {abort: {percentage: {value: 1" + "0" * 400 + "}}}}]\n", "SBX003"),
    ("300-digit integer for an int", VS + "  http: [{retries: {attempts: " + "9" * 300 + "}}]\n", None),
    (".inf and .nan", VS + "  hosts: [.inf]\n  http: [{fault: {abort: {httpStatus: .nan, percentage: {value: .inf}}}}]",
     "SBX003"),
    ("timestamps", VS + "  hosts: [2001-12-14t21:59:43.10-05:00]\n  http: [{timeout: 2002-12-14}]\n", "SBX004"),
    ("binary tag", VS + "  hosts: [!!binary R0lGODlhDAAMAIQAAP]\n  http: [{timeout: !!binary R0lG}]\n", "SBX004"),
    ("bad explicit tag", VS + "  http: [{retries: {attempts: !!int many}}]\n", "SBX001"),
    ("python tag", "!!python/object/apply:os.system [echo hi]\n", "SBX007"),
    ("complex key (sequence)", "? [a, b]\n: c\n", "SBX001"),
    ("complex key (map)", VS + "  ? {a: b}\n  : c\n", "SBX001"),
    ("alias as key to a map", "a: &x {b: c}\n*x : d\n", "SBX001"),
    ("unknown alias", "a: *nope\n", "SBX001"),
    ("a set", "!!set {a, b}\n", "SBX006"),
    ("only a comment", "# nothing\n", None),
    ("only separators", "---\n---\n...\n", None),
    ("a scalar document", "hello\n", "SBX007"),
    ("a list document", "- a\n- b\n", "SBX007"),
    ("1,000 documents", "---\na: 1\n" * 1000, "SBX006"),
    ("a 16 MB scalar", VS + "  hosts: [" + "a" * (15 * 1024 * 1024) + "]\n", None),
    ("a directive only", "%YAML 1.1\n", "SBX001"),
    ("a bad directive", "%YAML 9.9\n---\na: 1\n", "SBX001"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "code"), [(t, c) for _, t, c in ATTACKS], ids=[n for n, _, _ in ATTACKS])
def test_known_attacks_end_in_a_diagnostic_quickly(text: str | bytes, code: str | None) -> None:
    start = time.perf_counter()
    result = load_text(text, "attack.yaml")
    topology = parse_compose(text, "attack.yaml")
    elapsed = time.perf_counter() - start
    check_load(result, "attack.yaml")
    check_topology(topology, "attack.yaml")
    assert elapsed < 5.0, f"took {elapsed:.1f} s"
    codes = {d.code for d in result.diagnostics}
    if code is None:
        assert not result.errors, [d.format() for d in result.errors]
    else:
        assert code in codes, [d.format() for d in result.diagnostics]
