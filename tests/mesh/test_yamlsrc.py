"""yamlsrc: documents with the position of every key and list item, and problems as Diagnostics."""

from __future__ import annotations

import json
from typing import Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox.mesh.diagnostics import Severity, join_path
from sandbox.mesh.yamlsrc import dump_all_yaml, dump_yaml, parse_documents

VS = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts:
  - reviews
  http:
  - route:
    - destination: {host: reviews, subset: v1}
      weight: 90
    - destination:
        host: reviews
        subset: v2
      weight: 10
"""


def parse_one(text: str) -> tuple[object, dict[str, tuple[int, int]]]:
    (doc,), diagnostics = parse_documents(text, "f.yaml")
    assert diagnostics == []
    return doc.data, doc.positions


@pytest.mark.parametrize(
    ("path", "position"),
    [
        ("", (1, 1)),
        ("kind", (2, 1)),
        ("metadata/name", (4, 3)),
        ("spec/hosts", (6, 3)),
        ("spec/hosts[0]", (7, 5)),
        ("spec/http[0]", (9, 5)),  # a list item is where its value starts
        ("spec/http[0]/route[0]/destination/subset", (10, 36)),  # flow style keeps columns
        ("spec/http[0]/route[1]", (12, 7)),
        ("spec/http[0]/route[1]/destination/subset", (14, 9)),
        ("spec/http[0]/route[1]/weight", (15, 7)),
    ],
)
def test_every_key_and_list_item_has_its_line_and_column(path: str, position: tuple[int, int]) -> None:
    _, positions = parse_one(VS)
    assert positions[path] == position


def test_a_missing_path_falls_back_to_its_nearest_ancestor() -> None:
    (doc,), _ = parse_documents(VS, "f.yaml")
    assert doc.position("spec/http[0]/route[1]/destination/port/number") == (12, 7)
    assert doc.position("spec/tcp[3]") == (5, 1)


def test_values_are_typed_like_yaml_1_1_and_odd_tags_keep_their_text() -> None:
    data, _ = parse_one(
        "a: 1\nb: 1.5\nc: true\nd: ~\ne: '5'\nf: 0x1F\ng: .inf\nh: 2001-12-14\ni: !!binary aGk=\nj: !custom x\nk: no\n"
    )
    assert data == {
        "a": 1,
        "b": 1.5,
        "c": True,
        "d": None,
        "e": "5",
        "f": 31,
        "g": float("inf"),
        "h": "2001-12-14",  # a timestamp stays text: a resource field wants a string anyway
        "i": "aGk=",
        "j": "x",
        "k": False,  # YAML 1.1, as Kubernetes reads it
    }


def test_several_documents_each_know_their_index_and_first_line() -> None:
    text = "a: 1\n---\nb: 2\n---\n# only a comment\n---\n- c\n"
    documents, diagnostics = parse_documents(text, "multi.yaml")
    assert diagnostics == []
    assert [(d.index, d.line, d.data) for d in documents] == [
        (0, 1, {"a": 1}),
        (1, 2, {"b": 2}),
        (2, 4, None),
        (3, 6, ["c"]),
    ]
    assert documents[1].positions["b"] == (3, 1)  # lines count from the top of the file


def test_an_error_in_a_later_document_keeps_the_earlier_ones() -> None:
    documents, diagnostics = parse_documents("a: 1\n---\nb: [\n", "f.yaml")
    assert [d.data for d in documents] == [{"a": 1}]
    (diag,) = diagnostics
    assert (diag.code, diag.severity, diag.file, diag.line) == ("SBX001", Severity.ERROR, "f.yaml", 4)


def test_aliases_repeat_the_anchored_value() -> None:
    data, _ = parse_one("base: &b {timeout: 1s}\nlist: &l [a, b]\nx: *b\ny: *l\nz: &s text\nw: *s\n")
    assert data == {
        "base": {"timeout": "1s"},
        "list": ["a", "b"],
        "x": {"timeout": "1s"},
        "y": ["a", "b"],
        "z": "text",
        "w": "text",
    }


def test_an_unknown_alias_is_a_syntax_error_at_its_line() -> None:
    _, diagnostics = parse_documents("a: 1\nb: *nope\n", "f.yaml")
    assert [(d.code, d.line, d.message) for d in diagnostics] == [("SBX001", 2, "unknown alias '*nope'")]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("b: &b {x: 1, y: 2}\nm:\n  <<: *b\n", {"x": 1, "y": 2}),
        ("b: &b {x: 1, y: 2}\nm:\n  <<: *b\n  x: 3\n", {"x": 3, "y": 2}),  # explicit keys win...
        ("b: &b {x: 1, y: 2}\nm:\n  x: 3\n  <<: *b\n", {"x": 3, "y": 2}),  # ...wherever they are
        ("a: &a {x: 1}\nb: &b {x: 2, y: 2}\nm:\n  <<: [*a, *b]\n", {"x": 1, "y": 2}),  # the first map wins
    ],
)
def test_merge_keys(text: str, expected: dict[str, int]) -> None:
    (doc,), diagnostics = parse_documents(text, "f.yaml")
    assert diagnostics == []  # overriding a merged key is the point of merging, not a duplicate
    assert doc.data["m"] == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("'<<': {a: 1}\n", {"<<": {"a": 1}}),  # a quoted << is an ordinary key
        ('"<<": {a: 1}\n', {"<<": {"a": 1}}),
        ("a: <<\nb: [<<]\n", {"a": "<<", "b": ["<<"]}),  # and so is << as a value
        ("<<: 5\n", {"<<": 5}),  # nothing to merge
    ],
)
def test_only_a_plain_merge_key_merges(text: str, expected: object) -> None:
    assert parse_one(text)[0] == expected


def test_a_merged_key_points_at_the_merge() -> None:
    _, positions = parse_one("b: &b {x: 1}\nm:\n  y: 2\n  <<: *b\n")
    assert positions["m/x"] == (4, 3)


def test_a_duplicate_key_is_a_warning_and_the_last_one_wins() -> None:
    (doc,), diagnostics = parse_documents("spec:\n  host: a\n  subsets: []\n  host: b\n", "dr.yaml")
    assert doc.data == {"spec": {"host": "b", "subsets": []}}
    (diag,) = diagnostics
    assert (diag.code, diag.severity, diag.line, diag.column) == ("SBX010", Severity.WARNING, 4, 3)
    assert diag.path == "spec/host"
    assert diag.message == "duplicate key 'host' (the last one wins)"


@pytest.mark.parametrize(
    ("text", "data", "duplicates"),
    [
        ("1: a\ntrue: b\n", {"1": "a", "true": "b"}, []),  # Python's 1 == True must not merge them
        ("1: a\n'1': b\n", {"1": "b"}, ["1"]),  # Kubernetes: both are the key "1"
        ("true: a\nTrue: b\n", {"true": "b"}, ["true"]),
        ("yes: a\nno: b\n", {"true": "a", "false": "b"}, []),  # YAML 1.1 booleans, as go-yaml v2 reads them
        ("0x1F: a\n1_000: b\n", {"31": "a", "1000": "b"}, []),
        ("1.0: a\n1: b\n", {"1": "b"}, ["1"]),  # Go's FormatFloat(1.0, 'g', -1, 32) is "1"
        ("1.5: a\n1e3: b\n1e6: c\n.inf: d\n", {"1.5": "a", "1000": "b", "1e+06": "c", ".inf": "d"}, []),
        ("2001-12-14: a\n", {"2001-12-14": "a"}, []),
    ],
)
def test_map_keys_are_strings_as_kubernetes_reads_them(text: str, data: dict[str, str], duplicates: list[str]) -> None:
    (doc,), diagnostics = parse_documents(text, "k.yaml")
    assert doc.data == data
    assert [(d.code, d.path) for d in diagnostics] == [("SBX010", key) for key in duplicates]
    assert set(doc.positions) == {"", *data}


def test_a_label_selector_with_non_string_keys_reads_them_as_kubernetes_does() -> None:
    data, positions = parse_one("matchLabels:\n  true: x\n  8080: y\n")
    assert data == {"matchLabels": {"true": "x", "8080": "y"}}
    assert positions["matchLabels/true"] == (2, 3)


@pytest.mark.parametrize("text", ["~: a\n", "null: a\n", "? \n: a\n", "m: {~: 1}\n"])
def test_a_null_key_is_an_error_as_in_kubernetes(text: str) -> None:
    documents, (diag,) = parse_documents(text, "k.yaml")
    assert documents == []
    assert (diag.code, diag.severity, diag.line) == ("SBX001", Severity.ERROR, 1)
    assert diag.message == "a map key cannot be null (Kubernetes rejects it)"


@pytest.mark.parametrize(
    ("text", "code", "line", "message"),
    [
        ("a: [1, 2\n", "SBX001", 2, "invalid YAML"),
        ("a:\n\tb: 1\n", "SBX001", 2, "invalid YAML"),
        ("? [a]\n: b\n", "SBX001", 1, "mapping keys must be scalars"),
        ("a: !!int x\n", "SBX001", 1, "'x' is not a valid int"),
        ("[" * 200 + "]" * 200, "SBX008", 1, "nesting deeper than 100 levels"),
    ],
)
def test_broken_yaml_is_one_error_with_a_line(text: str, code: str, line: int, message: str) -> None:
    documents, diagnostics = parse_documents(text, "bad.yaml")
    assert documents == []
    (diag,) = diagnostics
    assert (diag.code, diag.severity, diag.file, diag.line) == (code, Severity.ERROR, "bad.yaml", line)
    assert message in diag.message


def test_bytes_must_be_utf8() -> None:
    assert parse_documents("name: café".encode(), "f.yaml")[0][0].data == {"name": "café"}
    _, (diag,) = parse_documents(b"name: caf\xe9", "f.yaml")
    assert (diag.code, diag.message) == ("SBX001", "not UTF-8 text (byte 9)")


def test_dump_keeps_key_order_and_round_trips() -> None:
    data = {"spec": {"hosts": ["b", "a"], "http": [{"timeout": "1s"}]}, "kind": "VirtualService", "name": "é"}
    text = dump_yaml(data)
    assert text.index("spec") < text.index("kind") and "é" in text
    assert parse_documents(text, "f")[0][0].data == data
    both = dump_all_yaml([data, {"b": 1}])
    assert [d.data for d in parse_documents(both, "f")[0]] == [data, {"b": 1}]


def _paths(data: object, base: str = "") -> list[tuple[str, object]]:
    """Every (Kiali path, key or None) under `data`: keys of maps and items of lists."""
    out: list[tuple[str, object]] = []
    if isinstance(data, dict):
        for key, value in data.items():
            path = join_path(base, str(key))
            out += [(path, key), *_paths(value, path)]
    elif isinstance(data, list):
        for i, value in enumerate(data):
            path = join_path(base, i)
            out += [(path, None), *_paths(value, path)]
    return out


# PyYAML's emitter writes NEL and the Unicode line separators raw, and its reader folds them; JSON
# escapes characters beyond the BMP as surrogate pairs, which YAML 1.1 does not join: leave them out
SURROGATES: tuple[Literal["Cs"]] = ("Cs",)
TEXT = st.characters(max_codepoint=0xFFFF, blacklist_characters="\x85\u2028\u2029", blacklist_categories=SURROGATES)
LEAVES = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
                   st.text(TEXT, max_size=12))  # fmt: skip
LOWER = "abcdefghijklmnopqrstuvwxyz"
# [a-z][a-zA-Z0-9]{0,7}, built from characters: from_regex took half of the test's time generating
NAMES = st.builds(str.__add__, st.sampled_from(LOWER), st.text(LOWER + LOWER.upper() + "0123456789", max_size=7))
# The same examples on every run, no example database and no wall-clock deadline: what was left to
# chance here was timing on a loaded machine (a 2 s deadline), not the code under test.
PROPERTY = settings(derandomize=True, database=None, deadline=None)


def trees(keys: st.SearchStrategy[str]) -> st.SearchStrategy[object]:
    return st.recursive(
        LEAVES,
        lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4)),
        max_leaves=30,
    )


@settings(PROPERTY, max_examples=150)
@given(st.dictionaries(NAMES, trees(NAMES), min_size=1, max_size=5), st.booleans())
def test_any_dumped_tree_parses_back_with_a_position_at_every_key(data: dict[str, object], flow: bool) -> None:
    text = json.dumps(data) if flow else dump_yaml(data)  # JSON is YAML in flow style
    (doc,), diagnostics = parse_documents(text, "t.yaml")
    assert diagnostics == [] and doc.data == data
    lines = text.splitlines()
    for path, key in _paths(data):
        line, column = doc.positions[path]
        if key is not None:  # a key's position is where the key is written
            written = lines[line - 1][column - 1 :]
            assert written.startswith((str(key), f'"{key}"', f"'{key}'")), (path, written)


@settings(PROPERTY, max_examples=100)
@given(trees(st.text(TEXT, max_size=8)))
def test_any_tree_with_any_keys_round_trips(data: object) -> None:
    (doc,), diagnostics = parse_documents(dump_yaml(data), "t.yaml")
    assert diagnostics == [] and doc.data == data
    assert all(path in doc.positions for path, _ in _paths(data))


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1e-3", 0.001),
        ("5E+2", 500.0),
        ("-1.5e3", -1500.0),
        (".5e1", 5.0),
        ("1e", "1e"),
        ("e5", "e5"),
        ("'1e5'", "1e5"),
    ],
)
def test_numbers_with_an_exponent_are_floats_as_in_kubernetes(text: str, value: object) -> None:
    data, _ = parse_one(f"value: {text}\n")
    assert data == {"value": value}


def test_a_string_that_reads_as_a_number_is_dumped_quoted() -> None:
    data = {"a": ["1e5", "1.5", "true", "5s"], "b": 1e-05}
    text = dump_yaml(data)
    assert "'1e5'" in text and "'1.5'" in text and "'true'" in text and "- 5s" in text
    assert parse_one(text)[0] == data
