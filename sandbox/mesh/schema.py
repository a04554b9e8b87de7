"""Typed conversion between plain YAML data and the frozen dataclasses of `resources`.

The dataclasses are the schema: field names are Istio's in snake_case (`retry_on` <-> `retryOn`,
`from_` <-> `from`), types come from the annotations. `decode` never raises: every problem is a
Diagnostic with the path into the resource, and the offending field falls back to its default.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from functools import cache
from typing import Any, TypeVar

from sandbox.mesh.diagnostics import Diagnostic, Severity, join_path

T = TypeVar("T")

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True, slots=True)
class Duration:
    """A Go/protobuf duration as Istio accepts it ("1.5s", "100ms", "1h30m")."""

    seconds: float
    text: str

    @classmethod
    def parse(cls, text: str) -> Duration:
        value = text.strip()
        if not value:
            raise ValueError("empty duration")
        pos, total = 0, 0.0
        while pos < len(value):
            m = _DURATION_PART.match(value, pos)
            if m is None:
                raise ValueError(f"'{text}' is not a duration: write a number with a unit, e.g. '5s' or '100ms'")
            total += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
            pos = m.end()
        return cls(total, value)

    @property
    def millis(self) -> float:
        return self.seconds * 1000.0


def yaml_name(f: dataclasses.Field[Any]) -> str:
    """The key this field has in Istio's YAML."""
    explicit = f.metadata.get("yaml")
    if explicit:
        return str(explicit)
    head, *rest = f.name.rstrip("_").split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


@dataclass(frozen=True)
class _FieldInfo:
    name: str
    key: str
    type: Any
    required: bool


@cache
def _fields(cls: type) -> dict[str, _FieldInfo]:
    hints = typing.get_type_hints(cls)
    out: dict[str, _FieldInfo] = {}
    for f in dataclasses.fields(cls):
        if f.metadata.get("internal"):
            continue
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        info = _FieldInfo(f.name, yaml_name(f), hints[f.name], required)
        out[info.key] = info
    return out


def suggest(word: str, candidates: typing.Iterable[str]) -> str | None:
    """The closest candidate, case-insensitively first: the "did you mean" of every message."""
    pool = list(candidates)
    lowered = {c.lower(): c for c in pool}
    if word.lower() in lowered:
        return lowered[word.lower()]
    close = difflib.get_close_matches(word, pool, n=1, cutoff=0.6)
    return close[0] if close else None


class Decoder:
    """Collects diagnostics while decoding one resource; `locate` maps a path to (line, column)."""

    def __init__(self, file: str, locate: Callable[[str], tuple[int, int]], resource: str = "") -> None:
        self.file = file
        self.locate = locate
        self.resource = resource
        self.diagnostics: list[Diagnostic] = []

    def report(self, code: str, severity: Severity, message: str, path: str) -> None:
        line, col = self.locate(path)
        self.diagnostics.append(
            Diagnostic(code, severity, message, self.file, line, col, path=path, resource=self.resource)
        )

    def error(self, code: str, message: str, path: str) -> None:
        self.report(code, Severity.ERROR, message, path)

    def decode(self, tp: Any, data: Any, path: str) -> Any:
        shape, args = _shape(tp)
        if shape == "union":
            options = args
            if data is None:
                return None
            if len(options) == 1:
                return self.decode(options[0], data, path)
            for option in options:  # e.g. int | str: first option whose Python type fits
                if _fits(option, data):
                    return self.decode(option, data, path)
            names = " or ".join(_type_name(o) for o in options)
            self.error("SBX003", f"{_leaf(path)}: expected {names}, got {_type_name(type(data))}", path)
            return None
        if shape == "tuple":
            (item_type,) = args
            if data is None:
                return ()
            if not isinstance(data, list):
                self.error("SBX003", f"{_leaf(path)}: expected a list, got {_type_name(type(data))}", path)
                return ()
            out = (self.decode(item_type, item, join_path(path, i)) for i, item in enumerate(data))
            return tuple(v for v in out if v is not None)
        if shape == "dict":
            (value_type,) = args
            if data is None:
                return {}
            if not isinstance(data, dict):
                self.error("SBX003", f"{_leaf(path)}: expected a map, got {_type_name(type(data))}", path)
                return {}
            result = {}
            for key, value in data.items():
                decoded = self.decode(value_type, value, join_path(path, str(key)))
                if decoded is not None:
                    result[str(key)] = decoded
            return result
        if shape == "any":  # free-form fields (e.g. `tunnel: dict[str, object]`) take anything
            return data
        if shape == "object":
            return self.decode_object(typing.cast(type, tp), data, path)
        return self.decode_scalar(tp, data, path)

    def decode_object(self, cls: type[T], data: Any, path: str) -> T | None:
        if data is None:
            data = {}
        if not isinstance(data, dict):
            self.error("SBX003", f"{_leaf(path) or cls.__name__}: expected a map, got {_type_name(type(data))}", path)
            return None
        fields = _fields(typing.cast(Any, cls))
        values: dict[str, Any] = {}
        for key, value in data.items():
            info = fields.get(str(key))
            child = join_path(path, str(key))
            if info is None:
                hint = suggest(str(key), fields)
                tail = f"; did you mean '{hint}'?" if hint else ""
                self.report("SBX002", Severity.WARNING, f"unknown field '{key}' in {cls.__name__}{tail}", child)
                continue
            if value is None and not info.required:
                continue
            decoded = self.decode(info.type, value, child)
            if decoded is not None:
                values[info.name] = decoded
        for key, info in fields.items():
            if info.required and info.name not in values:
                if key not in data:  # present but invalid was reported above, once is enough
                    self.error("SBX006", f"missing required field '{key}' in {cls.__name__}", path)
                values[info.name] = _zero(info.type)
        return cls(**values)

    def decode_scalar(self, tp: Any, data: Any, path: str) -> Any:
        if tp is Duration:
            if not isinstance(data, str):
                self.error(
                    "SBX004",
                    f"{_leaf(path)}: '{data}' is not a duration: write a number with a unit, e.g. '5s' or '100ms'",
                    path,
                )
                return None
            try:
                return Duration.parse(data)
            except ValueError as exc:
                self.error("SBX004", f"{_leaf(path)}: {exc}", path)
                return None
        if isinstance(tp, type) and issubclass(tp, Enum):
            allowed = [str(m.value) for m in tp]
            if isinstance(data, str) and data in allowed:
                return tp(data)
            hint = suggest(str(data), allowed)
            tail = f"; did you mean '{hint}'?" if hint else f" (one of {', '.join(allowed)})"
            self.error("SBX005", f"{_leaf(path)}: '{data}' is not a valid {tp.__name__}{tail}", path)
            return None
        if _fits(tp, data):
            if tp is not float:
                return data
            try:
                return float(data)
            except OverflowError:  # an integer with hundreds of digits
                self.error("SBX003", f"{_leaf(path)}: number too large", path)
                return None
        self.error("SBX003", f"{_leaf(path)}: expected {_type_name(tp)}, got {_type_name(type(data))}", path)
        return None


@cache
def _shape(tp: Any) -> tuple[str, tuple[Any, ...]]:
    """How `decode` treats a type, worked out once per type (typing introspection is slow)."""
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        return "union", tuple(a for a in typing.get_args(tp) if a is not type(None))
    if origin is tuple:
        return "tuple", typing.get_args(tp)[:1]
    if origin in (dict, Mapping, typing.Mapping):
        return "dict", typing.get_args(tp)[1:]
    if tp is Any or tp is object:
        return "any", ()
    if dataclasses.is_dataclass(tp) and tp is not Duration:
        return "object", ()
    return "scalar", ()


def _fits(tp: Any, data: Any) -> bool:
    if tp is bool:
        return isinstance(data, bool)
    if tp is int:
        return isinstance(data, int) and not isinstance(data, bool)
    if tp is float:
        return isinstance(data, (int, float)) and not isinstance(data, bool)
    if tp is str:
        return isinstance(data, str)
    if tp is Duration:
        return isinstance(data, str)
    if isinstance(tp, type) and issubclass(tp, Enum):
        return isinstance(data, str)
    origin = typing.get_origin(tp)
    if origin is tuple:
        return isinstance(data, list)
    if origin in (dict, Mapping, typing.Mapping) or dataclasses.is_dataclass(tp):
        return isinstance(data, dict)
    return tp is Any


def _zero(tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin is tuple:
        return ()
    if origin in (dict, Mapping, typing.Mapping):
        return {}
    return {str: "", int: 0, float: 0.0, bool: False}.get(tp)


def _type_name(tp: Any) -> str:
    names = {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "a boolean",
        list: "a list",
        dict: "a map",
        type(None): "null",
        Duration: "a duration",
    }
    if tp in names:
        return names[tp]
    if isinstance(tp, type) and issubclass(tp, Enum):
        return "one of " + ", ".join(str(m.value) for m in tp)
    if dataclasses.is_dataclass(tp):
        return "a map"
    return getattr(tp, "__name__", str(tp))


def _leaf(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def encode(value: Any) -> Any:
    """The plain YAML/JSON data of a decoded value: camelCase keys, unset fields left out."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        if isinstance(value, Duration):
            return value.text
        out: dict[str, Any] = {}
        for f in dataclasses.fields(value):
            if f.metadata.get("internal"):
                continue
            v = getattr(value, f.name)
            if v is None or (isinstance(v, tuple | dict) and not v):
                continue
            if f.default is not dataclasses.MISSING and type(v) is type(f.default) and v == f.default:
                continue  # e.g. `ignoreUriCase: false` nobody wrote
            out[yaml_name(f)] = encode(v)
        return out
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, tuple | list):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        return {k: encode(v) for k, v in value.items()}
    return value
