"""YAML in and out: the only module that imports `yaml`.

Documents are built from parser events with an explicit stack instead of PyYAML's recursive
composer, so no input (deep nesting, alias bombs, binary junk, huge files) can raise a
traceback or hang: every failure becomes a Diagnostic with file and line. Each document keeps
the line and column of every value, keyed by Kiali's slash path (`spec/http[0]/route`).
"""

from __future__ import annotations

import math
import re
import struct
import typing
from dataclasses import dataclass, field
from typing import Any

import yaml

from sandbox.mesh.diagnostics import Diagnostic, Severity, join_path, nearest_position

MAX_BYTES = 16 * 1024 * 1024
MAX_DEPTH = 100
MAX_NODES = 2_000_000  # including what aliases expand to downstream
# Nodes reached only through aliases: each is walked again by the typed decoder, so a 10 KB file
# of nested aliases could otherwise cost seconds and 100,000s of diagnostics.
MAX_ALIAS_NODES = 100_000

try:  # libyaml is much faster; its parser is a state machine, safe on deep input
    _Loader: Any = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - PyYAML built without libyaml
    _Loader = yaml.SafeLoader


class _Resolver(yaml.resolver.Resolver):
    """YAML 1.1 as PyYAML reads it, plus the floats Kubernetes' go-yaml also reads: 1e-3, 5E+2
    (PyYAML wants a dot, so `value: 1e-3` would be a string where kubectl sees a number)."""


class _Dumper(yaml.SafeDumper):
    """Quotes what _Resolver reads as a number, so a string like "1e5" stays a string."""


for _cls in (_Resolver, _Dumper):
    _cls.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)[eE][-+]?[0-9]+$"),
        list("-+.0123456789"),
    )
_resolver = _Resolver()
_constructor = yaml.constructor.SafeConstructor()
_STR = "tag:yaml.org,2002:str"
_SIMPLE_TAGS = {
    _STR,
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
}

Position = tuple[int, int]  # 1-based line and column


@dataclass(frozen=True)
class Document:
    file: str
    index: int  # position of the document in its file, from 0
    line: int
    data: Any
    positions: dict[str, Position] = field(repr=False, compare=False)

    def position(self, path: str) -> Position:
        """The position of `path`, or of its nearest ancestor that has one."""
        return nearest_position(self.positions, path, (self.line, 1))


class _Abort(Exception):
    def __init__(self, code: str, message: str, mark: Any) -> None:
        super().__init__(message)
        self.code, self.message, self.mark = code, message, mark


_plain: dict[str, Any] = {}  # plain scalar text -> value: keys and values repeat a lot across resources


def _scalar(event: Any) -> Any:
    tag = event.tag
    if tag is None or tag == "!":
        if event.style or not event.implicit[0]:
            return event.value
        if event.value in _plain:
            return _plain[event.value]
        tag = _resolver.resolve(yaml.ScalarNode, event.value, event.implicit)  # type: ignore[no-untyped-call]
        value = _typed(tag, event)
        if len(event.value) <= 64:  # short texts only: the cache must not hold on to big files
            if len(_plain) >= 20_000:
                _plain.clear()
            _plain[event.value] = value
        return value
    return _typed(tag, event)


def _typed(tag: str, event: Any) -> Any:
    if tag == _STR or tag not in _SIMPLE_TAGS:
        return event.value  # strings; timestamps, binary, custom tags: keep the text
    node = yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark)
    try:  # the constructor function itself: construct_object() would cache every node forever
        return _constructor.yaml_constructors[tag](_constructor, node)
    except (ValueError, TypeError, OverflowError, LookupError):  # `!!int abc`, `!!bool ""`, 5,000 digits
        name = tag.rsplit(":", 1)[-1]
        text = event.value if len(event.value) <= 40 else f"{event.value[:40]}... ({len(event.value)} characters)"
        raise _Abort("SBX001", f"'{text}' is not a valid {name}", event.start_mark) from None


def _key_text(key: Any, mark: Any) -> str:
    """A map key as Kubernetes reads it: sigs.k8s.io/yaml turns every key into a JSON string, so
    `1:` is "1" (the same key as `"1":`), `true:` and `yes:` are "true" (not Python's "True", and
    not the same key as `1:`, which Python's 1 == True would make them), and a null key is an error."""
    if isinstance(key, str):
        return key
    if isinstance(key, bool):
        return "true" if key else "false"
    if isinstance(key, int):
        return str(key)
    if isinstance(key, float):
        return _go_float32(key)
    if key is None:
        raise _Abort("SBX001", "a map key cannot be null (Kubernetes rejects it)", mark)
    return str(key)  # pragma: no cover - the resolver makes no other scalar types


def _single(value: float) -> float:
    try:
        return float(struct.unpack("<f", struct.pack("<f", value))[0])
    except OverflowError:
        return math.copysign(math.inf, value)


def _go_float32(value: float) -> str:
    """Go's strconv.FormatFloat(value, 'g', -1, 32), which sigs.k8s.io/yaml uses for a float key:
    the shortest digits that identify the float32, exponent form below 1e-4 and from 1e+06."""
    if math.isnan(value):
        return ".nan"
    single = _single(value)
    if math.isinf(single):
        return ".inf" if single > 0 else "-.inf"
    sign = "-" if math.copysign(1.0, single) < 0 else ""
    if single == 0:
        return sign + "0"
    text = next(t for p in range(9) if _single(float(t := f"{abs(single):.{p}e}")) == abs(single))
    mantissa, _, exponent = text.partition("e")
    digits = mantissa.replace(".", "").rstrip("0") or "0"
    exp = int(exponent)
    if exp < -4 or exp >= 6:
        head = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{head}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    point = exp + 1  # digits before the decimal point
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return sign + digits + "0" * (point - len(digits))
    return f"{sign}{digits[:point]}.{digits[point:]}"


def _pos(mark: Any) -> Position:
    return (mark.line + 1, mark.column + 1)


class _Builder:
    """Turns one stream of parser events into Documents, iteratively."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.documents: list[Document] = []
        self.diagnostics: list[Diagnostic] = []

    def run(self, text: str) -> None:
        # frames: [container, path, pending_key, key_mark, anchor, start_count, start_mark, merged_keys]
        stack: list[list[Any]] = []
        anchors: dict[str, tuple[Any, int]] = {}
        positions: dict[str, Position] = {}
        root: Any = None
        doc_line = 1
        count = aliased = 0

        def place(value: Any, mark: Any) -> str | None:
            """Attach a finished value to its parent; returns the value's path (None for a key)."""
            nonlocal root
            if not stack:
                root = "<<" if value is _MERGE else value
                positions[""] = _pos(mark)
                return ""
            frame = stack[-1]
            container, path = frame[0], frame[1]
            if isinstance(container, list):
                child = join_path(path, len(container))
                container.append("<<" if value is _MERGE else value)
                positions[child] = _pos(mark)
                return child
            if frame[2] is _NO_KEY:
                if isinstance(value, (dict, list)) or value is _NO_KEY:
                    raise _Abort("SBX001", "mapping keys must be scalars", mark)
                frame[2], frame[3] = _key_text(value, mark), mark
                return None
            key, key_mark = frame[2], frame[3]
            frame[2] = _NO_KEY
            if value is _MERGE:  # `<<` as a value is just text
                value = "<<"
            merged = frame[7]
            if key is _MERGE:  # YAML merge key
                sources = [value] if isinstance(value, dict) else value if isinstance(value, list) else None
                if sources and all(isinstance(s, dict) for s in sources):
                    for source in sources:  # explicit keys win, then earlier maps over later ones
                        for k, v in source.items():
                            if k not in container:
                                container[k] = v
                                merged.add(k)
                                positions[join_path(path, str(k))] = _pos(key_mark)
                    return None
                key = "<<"  # nothing to merge: an ordinary key, which the schema will question
            if key in merged:  # an explicit key overrides a merged one: that is the point of merging
                merged.discard(key)
            elif key in container:
                self.diagnostics.append(
                    Diagnostic(
                        "SBX010",
                        Severity.WARNING,
                        f"duplicate key '{key}' (the last one wins)",
                        self.file,
                        *_pos(key_mark),
                        path=join_path(path, str(key)),
                    )
                )
            child = join_path(path, str(key))
            container[key] = value
            positions[child] = _pos(key_mark)
            return child

        def child_path() -> str:
            if not stack:
                return ""
            frame = stack[-1]
            if isinstance(frame[0], list):
                return join_path(frame[1], len(frame[0]))
            return join_path(frame[1], str(frame[2]))

        for event in yaml.parse(text, Loader=_Loader):
            event = typing.cast(Any, event)
            kind = type(event)
            if kind is yaml.ScalarEvent or kind is yaml.AliasEvent:
                if kind is yaml.AliasEvent:
                    if event.anchor not in anchors:
                        raise _Abort("SBX001", f"unknown alias '*{event.anchor}'", event.start_mark)
                    value, size = anchors[event.anchor]
                    count += size
                    aliased += size
                    if aliased > MAX_ALIAS_NODES:
                        raise _Abort(
                            "SBX008",
                            f"aliases expand to more than {MAX_ALIAS_NODES} nodes (an alias bomb?)",
                            event.start_mark,
                        )
                else:
                    value = _scalar(event)
                    count += 1
                    if event.anchor:
                        anchors[event.anchor] = (value, 1)
                    if value == "<<" and not event.style and event.tag is None:  # plain `<<`, not '<<'
                        value = _MERGE
                if count > MAX_NODES:
                    raise _Abort(
                        "SBX008", f"document expands to more than {MAX_NODES} nodes (an alias bomb?)", event.start_mark
                    )
                place(value, event.start_mark)
            elif kind is yaml.MappingStartEvent or kind is yaml.SequenceStartEvent:
                if len(stack) >= MAX_DEPTH:
                    raise _Abort("SBX008", f"nesting deeper than {MAX_DEPTH} levels", event.start_mark)
                count += 1
                container: Any = {} if kind is yaml.MappingStartEvent else []
                is_key = bool(stack) and isinstance(stack[-1][0], dict) and stack[-1][2] is _NO_KEY
                if is_key:
                    raise _Abort("SBX001", "mapping keys must be scalars", event.start_mark)
                path = child_path()
                stack.append([container, path, _NO_KEY, None, event.anchor, count, event.start_mark, set()])
            elif kind is yaml.MappingEndEvent or kind is yaml.SequenceEndEvent:
                frame = stack.pop()
                if frame[4]:
                    anchors[frame[4]] = (frame[0], count - frame[5] + 1)
                place(frame[0], frame[6])
            elif kind is yaml.DocumentStartEvent:
                root, positions, anchors = None, {}, {}
                doc_line = event.start_mark.line + 1
            elif kind is yaml.DocumentEndEvent:
                self.documents.append(Document(self.file, len(self.documents), doc_line, root, positions))

    def fail(self, code: str, message: str, line: int, column: int) -> None:
        self.diagnostics.append(Diagnostic(code, Severity.ERROR, message, self.file, line, column))


_NO_KEY: Any = object()
_MERGE: Any = type("_MergeKey", (str,), {})("<<")  # a plain `<<` key; str() of it is "<<"


def parse_documents(source: str | bytes, file: str) -> tuple[list[Document], list[Diagnostic]]:
    """Every document of a YAML stream with positions, and what went wrong, never an exception."""
    builder = _Builder(file)
    if len(source) > MAX_BYTES:
        builder.fail("SBX008", f"file is larger than {MAX_BYTES // (1024 * 1024)} MiB", 1, 1)
        return [], builder.diagnostics
    if isinstance(source, bytes):
        try:
            source = source.decode("utf-8")
        except UnicodeDecodeError as exc:
            builder.fail("SBX001", f"not UTF-8 text (byte {exc.start})", 1, 1)
            return [], builder.diagnostics
    try:
        builder.run(source)
    except _Abort as exc:
        line, col = _pos(exc.mark) if exc.mark is not None else (1, 1)
        builder.fail(exc.code, exc.message, line, col)
    except yaml.YAMLError as exc:
        mark: Any = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line, col = _pos(mark) if mark is not None else (1, 1)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        builder.fail("SBX001", f"invalid YAML: {problem}", line, col)
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:  # constructor edge cases
        builder.fail("SBX001", f"invalid YAML: {exc}", 1, 1)
    return builder.documents, builder.diagnostics


def dump_yaml(data: Any) -> str:
    """Readable YAML with the keys in the order given (for `convert`, `get -o yaml`)."""
    return dump_all_yaml([data])


def dump_all_yaml(documents: list[Any]) -> str:
    text = yaml.dump_all(
        documents, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True, explicit_start=False
    )
    return str(text)
