"""Canonical JSON for frozen dataclasses: plain data out (`encode`), typed values back (`decode`).

`decode` checks every field against the dataclass annotations and raises ValueError naming the
path of the first bad value (`snapshot.clusters[0].port: expected int, got str`).
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Callable
from typing import Any


def canonical_json(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


_SCALARS = frozenset({str, int, float, bool, type(None)})
_ENCODERS: dict[type, Callable[[Any], Any]] = {}


def encode(value: Any) -> Any:
    """Plain JSON data for a value built of dataclasses, tuples, lists, dicts and scalars.

    A snapshot is a thousand-odd small objects and encoding it is most of a push's CPU, hence one
    encoder per dataclass type and scalars copied inline rather than through a call each."""
    kind = type(value)
    if kind in _SCALARS:
        return value
    encoder = _ENCODERS.get(kind)
    if encoder is None:
        encoder = _ENCODERS[kind] = _encoder_for(kind)
    return encoder(value)


def _encode_sequence(value: Any) -> list[Any]:
    return [v if type(v) in _SCALARS else encode(v) for v in value]


def _encode_mapping(value: dict[Any, Any]) -> dict[str, Any]:
    return {str(k): v if type(v) in _SCALARS else encode(v) for k, v in value.items()}


def _encoder_for(kind: type) -> Callable[[Any], Any]:
    if issubclass(kind, tuple | list):
        return _encode_sequence
    if issubclass(kind, dict):
        return _encode_mapping
    if not dataclasses.is_dataclass(kind):
        return lambda value: value
    names = tuple(f.name for f in dataclasses.fields(kind))
    scalars = _SCALARS

    def encode_dataclass(value: Any) -> dict[str, Any]:
        out = {}
        for name in names:
            v = getattr(value, name)
            out[name] = v if type(v) in scalars else encode(v)
        return out

    return encode_dataclass


_COMPACT: dict[type, Callable[[Any], Any]] = {}


def compact(value: Any) -> Any:
    """Like `encode`, but dataclass fields equal to their default are left out (`decode` puts them
    back): a snapshot is mostly defaults, and its wire size is what a push to many sidecars costs."""
    kind = type(value)
    if kind in _SCALARS:
        return value
    encoder = _COMPACT.get(kind)
    if encoder is None:
        encoder = _COMPACT[kind] = _compact_encoder_for(kind)
    return encoder(value)


def _compact_encoder_for(kind: type) -> Callable[[Any], Any]:
    if issubclass(kind, tuple | list):
        return lambda value: [v if type(v) in _SCALARS else compact(v) for v in value]
    if issubclass(kind, dict):
        return lambda value: {str(k): v if type(v) in _SCALARS else compact(v) for k, v in value.items()}
    if not dataclasses.is_dataclass(kind):
        return lambda value: value
    fields = []
    for f in dataclasses.fields(kind):
        if f.default is not dataclasses.MISSING:
            fields.append((f.name, True, f.default))
        elif f.default_factory is not dataclasses.MISSING:
            fields.append((f.name, True, f.default_factory()))
        else:
            fields.append((f.name, False, None))
    scalars = _SCALARS

    def compact_dataclass(value: Any) -> dict[str, Any]:
        out = {}
        for name, has_default, default in fields:
            v = getattr(value, name)
            if has_default and type(v) is type(default) and v == default:
                continue
            out[name] = v if type(v) in scalars else compact(v)
        return out

    return compact_dataclass


class _Invalid(Exception):
    """A decoding error on its way out: the path is collected while unwinding, not built per value."""

    def __init__(self, message: str) -> None:
        self.message = message
        self.segments: list[str] = []  # innermost first


def decode(tp: Any, data: Any, path: str) -> Any:
    """`data` as a value of type `tp`; ValueError naming the path of the first bad value."""
    try:
        return _decoder(tp)(data)
    except _Invalid as exc:
        raise ValueError(f"{path}{''.join(reversed(exc.segments))}: {exc.message}") from None


_Decoder = Callable[[Any], Any]
_DECODERS: dict[Any, _Decoder] = {}


def _decoder(tp: Any) -> _Decoder:
    found = _DECODERS.get(tp)
    if found is None:
        found = _DECODERS[tp] = _build_decoder(tp)
    return found


def _build_decoder(tp: Any) -> _Decoder:
    origin = typing.get_origin(tp)
    if origin is types.UnionType or origin is typing.Union:
        (inner_type,) = [a for a in typing.get_args(tp) if a is not type(None)]
        inner = _lazy(inner_type)
        return lambda data: None if data is None else inner(data)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return _dataclass_decoder(tp)
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            item = _lazy(args[0])

            def decode_items(data: Any) -> tuple[Any, ...]:
                if not isinstance(data, list):
                    raise _Invalid("expected a list")
                out = []
                for i, v in enumerate(data):
                    try:
                        out.append(item(v))
                    except _Invalid as exc:
                        exc.segments.append(f"[{i}]")
                        raise
                return tuple(out)

            return decode_items
        fixed = [_lazy(a) for a in args]

        def decode_fixed(data: Any) -> tuple[Any, ...]:
            if not isinstance(data, list):
                raise _Invalid("expected a list")
            if len(fixed) != len(data):
                raise _Invalid(f"expected {len(fixed)} items")
            out = []
            for i, (fn, v) in enumerate(zip(fixed, data, strict=True)):
                try:
                    out.append(fn(v))
                except _Invalid as exc:
                    exc.segments.append(f"[{i}]")
                    raise
            return tuple(out)

        return decode_fixed
    if origin is dict:
        value = _lazy(typing.get_args(tp)[1])

        def decode_dict(data: Any) -> dict[str, Any]:
            if not isinstance(data, dict):
                raise _Invalid("expected an object")
            out = {}
            for k, v in data.items():
                try:
                    out[str(k)] = value(v)
                except _Invalid as exc:
                    exc.segments.append(f".{k}")
                    raise
            return out

        return decode_dict
    if tp is Any:
        return lambda data: data
    return _scalar_decoder(tp)


_BUILDING: set[Any] = set()


def _lazy(tp: Any) -> _Decoder:
    """The decoder of `tp`, or a forwarder to it while it is being built (a type that contains itself)."""
    if tp in _BUILDING:
        return lambda data: _decoder(tp)(data)
    return _decoder(tp)


def _scalar_decoder(tp: Any) -> _Decoder:
    name = getattr(tp, "__name__", str(tp))

    def wrong(data: Any) -> _Invalid:
        return _Invalid(f"expected {name}, got {type(data).__name__}")

    if tp is float:

        def decode_float(data: Any) -> float:
            kind = type(data)
            if kind is float:
                return data  # type: ignore[no-any-return]
            if kind is int:
                return float(data)
            raise wrong(data)

        return decode_float
    if tp is int:

        def decode_int(data: Any) -> int:
            if type(data) is int:
                return data
            raise wrong(data)

        return decode_int
    if tp is bool or tp is str:

        def decode_exact(data: Any) -> Any:
            if type(data) is tp:
                return data
            raise wrong(data)

        return decode_exact

    def unsupported(data: Any) -> Any:
        raise wrong(data)

    return unsupported


def _dataclass_decoder(tp: type) -> _Decoder:
    hints = typing.get_type_hints(tp)
    fields = dataclasses.fields(tp)
    _BUILDING.add(tp)
    try:
        decoders = {f.name: _lazy(hints[f.name]) for f in fields}
    finally:
        _BUILDING.discard(tp)
    if hasattr(tp, "__post_init__") or "__slots__" in vars(tp):
        return _init_decoder(tp, decoders)
    # A frozen dataclass's __init__ sets each field through object.__setattr__, which is most of
    # decoding a snapshot; filling the instance's __dict__ directly gives the same object.
    defaults = {f.name: f.default for f in fields if f.default is not dataclasses.MISSING}
    factories = {f.name: f.default_factory for f in fields if f.default_factory is not dataclasses.MISSING}
    required = [f.name for f in fields if f.name not in defaults and f.name not in factories]
    # Most fields are a str, int or bool (or one of those or None): checked inline, without a call.
    plain = {name: t for name, t in ((f.name, _plain_type(hints[f.name])) for f in fields) if t is not None}
    new = object.__new__

    def decode_dataclass(data: Any) -> Any:
        if type(data) is not dict:
            raise _Invalid("expected an object")
        values = {}
        for name, v in data.items():
            kinds = plain.get(name)
            if kinds is not None and type(v) in kinds:
                values[name] = v
                continue
            fn = decoders.get(name)
            if fn is None:
                unknown = sorted(set(data) - decoders.keys())
                raise _Invalid(f"unknown field(s) {', '.join(unknown)}")
            try:
                values[name] = fn(v)
            except _Invalid as exc:
                exc.segments.append(f".{name}")
                raise
        if len(values) != len(decoders):
            missing = [name for name in required if name not in values]
            if missing:
                raise _Invalid(f"missing required field(s) {', '.join(missing)}")
            for name, default in defaults.items():
                values.setdefault(name, default)
            for name, factory in factories.items():
                if name not in values:
                    values[name] = factory()
        obj: Any = new(tp)
        obj.__dict__.update(values)
        return obj

    return decode_dataclass


def _plain_type(tp: Any) -> tuple[type, ...] | None:
    """The exact JSON types a field of type `tp` accepts as they are (str, int, bool, each maybe
    None), or None when its value needs decoding (floats take ints, objects become dataclasses)."""
    args = typing.get_args(tp) if typing.get_origin(tp) in (types.UnionType, typing.Union) else (tp,)
    if all(a in (str, int, bool, type(None)) for a in args):
        return tuple(args)
    return None


def _init_decoder(tp: type, decoders: dict[str, _Decoder]) -> _Decoder:
    """Through __init__, for dataclasses that validate in __post_init__ or have no __dict__."""

    def decode_dataclass(data: Any) -> Any:
        if not isinstance(data, dict):
            raise _Invalid("expected an object")
        kwargs = {}
        for name, v in data.items():
            fn = decoders.get(name)
            if fn is None:
                unknown = sorted(set(data) - decoders.keys())
                raise _Invalid(f"unknown field(s) {', '.join(unknown)}")
            try:
                kwargs[name] = fn(v)
            except _Invalid as exc:
                exc.segments.append(f".{name}")
                raise
        try:
            return tp(**kwargs)
        except TypeError as exc:
            raise _Invalid(str(exc)) from None

    return decode_dataclass
