"""Precompiled matchers for snapshot routes: built once per snapshot, called for every request.

Envoy semantics as Istio configures them (docs/reference/istio-semantics.md §1.1): string
matches are case-sensitive (ignoreUriCase only for uri exact/prefix), regexes must match the
whole value (RE2 in Envoy, Python `re` here: the common syntax is the same), the path is matched
without its query string, `withoutHeaders` treats a missing header as empty (route.go sets
treat_missing_header_as_empty) except for the presence form.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping
from typing import Any, cast

from sandbox.proxy.decision import RequestHead
from sandbox.xds.snapshot import KeyMatcher, RouteMatch, StringMatcher

try:
    import re2
except ImportError:  # pragma: no cover - a dependency; without it every pattern runs on `re`
    re2 = None

_sre_parser: Any = importlib.import_module("re._parser")  # the stdlib's own regex parser (3.11+)

StringTest = Callable[[str], object]  # truthy when the value matches
MapTest = Callable[[Mapping[str, str]], bool]


def _never(_: str) -> bool:
    return False


def _always(_: str) -> bool:
    return True


def string_test(m: StringMatcher) -> StringTest:
    value = m.value
    if m.kind == "exact":
        if m.ignore_case:
            lowered = value.lower()
            return lambda s: s.lower() == lowered
        return value.__eq__
    if m.kind == "prefix":
        if m.ignore_case:
            lowered = value.lower()
            return lambda s: s.lower().startswith(lowered)
        return lambda s: s.startswith(value)
    if m.kind == "regex":
        return regex_fullmatch(value) or _never  # an invalid regex (Envoy would reject it) never matches
    return _always  # present


def key_test(k: KeyMatcher, *, invert: bool = False) -> MapTest:
    name, m = k.name, k.match
    if m.kind == "present":
        if invert:
            return lambda values: name not in values
        return lambda values: name in values
    test = string_test(m)
    if invert:
        return lambda values: not test(values.get(name, ""))

    def present_and_matches(values: Mapping[str, str]) -> bool:
        v = values.get(name)
        return v is not None and bool(test(v))

    return present_and_matches


ClaimTest = Callable[[dict[str, Any] | None], bool]


def claim_test(k: KeyMatcher, *, invert: bool = False) -> ClaimTest:
    """A route match on a JWT claim (`name` dot-separated for nested claims), as Istio writes it for
    Envoy: a string claim that matches, or a list claim with a string element that matches; a
    request without the claim (or without a verified token) does not match, and with `invert`
    (withoutHeaders) does."""
    path = k.name.split(".")
    present = k.match.kind == "present"
    test = string_test(k.match)

    def holds(claims: dict[str, Any] | None) -> bool:
        value: Any = claims
        for part in path:
            if not isinstance(value, dict):
                return False
            value = value.get(part)
        if value is None:
            return False
        if present:
            return True
        if isinstance(value, str):
            return bool(test(value))
        if isinstance(value, list):
            return any(isinstance(v, str) and bool(test(v)) for v in value)
        return False

    if invert:
        return lambda claims: not holds(claims)
    return holds


def compile_regex(pattern: str) -> Any:
    """A compiled pattern with RE2's semantics, or None when RE2 (Envoy's engine) rejects it.

    Python's `re` (ASCII classes, like RE2) is ~25x faster per call than the RE2 binding, so it
    runs every pattern that cannot backtrack catastrophically; a pattern with a repetition inside
    a repetition or alternation (`(a+)+`, `(a|ab)*`) runs on RE2, which is linear in the input."""
    if re2 is not None:
        try:
            checked = re2.compile(pattern)
        except re2.error:
            return None
    try:
        compiled = re.compile(pattern, re.ASCII)
    except re.error:
        return None
    if re2 is not None and _may_backtrack(pattern):
        return checked
    return compiled


def regex_fullmatch(pattern: str) -> StringTest | None:
    compiled = compile_regex(pattern)
    return None if compiled is None else cast(StringTest, compiled.fullmatch)


_REPEATS = frozenset({"MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"})


def _may_backtrack(pattern: str) -> bool:
    try:
        parsed = _sre_parser.parse(pattern, re.ASCII)
    except Exception:  # an unexpected parser shape: take the safe engine
        return True
    return _walk(parsed, inside_repeat=False)


def _walk(items: Any, *, inside_repeat: bool) -> bool:
    for op, av in items:
        name = str(op)
        if name in _REPEATS:
            _low, high, body = av
            unbounded = high > 1
            if inside_repeat and unbounded:
                return True
            if _walk(body, inside_repeat=inside_repeat or unbounded):
                return True
        elif name == "BRANCH":
            if inside_repeat:
                return True
            if any(_walk(alt, inside_repeat=False) for alt in av[1]):
                return True
        elif name == "SUBPATTERN":
            if _walk(av[-1], inside_repeat=inside_repeat):
                return True
        elif name in ("ASSERT", "ASSERT_NOT"):
            if _walk(av[1], inside_repeat=inside_repeat):
                return True
        elif name == "GROUPREF_EXISTS":
            return True
    return False


def parse_query(query: str) -> dict[str, str]:
    """Query parameters, first value wins; `?key` has the value "" (so `exact: ""` matches it)."""
    out: dict[str, str] = {}
    if not query:
        return out
    from urllib.parse import unquote_plus

    for part in query.split("&"):
        if not part:
            continue
        key, _, value = part.partition("=")
        out.setdefault(unquote_plus(key), unquote_plus(value))
    return out


class CompiledMatch:
    """One RouteMatch, compiled. `uri` tests the path without the query string."""

    __slots__ = ("authority", "claims", "headers", "method", "query", "scheme", "uri", "uri_kind", "uri_value")

    def __init__(self, m: RouteMatch) -> None:
        self.uri: StringTest | None = string_test(m.uri) if m.uri is not None else None
        self.uri_kind = m.uri.kind if m.uri is not None else "prefix"
        self.uri_value = m.uri.value if m.uri is not None else "/"
        self.method = string_test(m.method) if m.method is not None else None
        self.scheme = string_test(m.scheme) if m.scheme is not None else None
        self.authority = string_test(m.authority) if m.authority is not None else None
        self.headers: tuple[MapTest, ...] = tuple(
            [key_test(h) for h in m.headers] + [key_test(h, invert=True) for h in m.without_headers]
        )
        self.query: tuple[MapTest, ...] = tuple(key_test(q) for q in m.query_params)
        # `@request.auth.claims.<path>`: the verified JWT's claims (jwt_authn puts them on the head)
        self.claims: tuple[ClaimTest, ...] = tuple(
            [claim_test(c) for c in m.claims] + [claim_test(c, invert=True) for c in m.without_claims]
        )

    def matches(self, path: str, head: RequestHead, query: str) -> bool:
        """`path` without the query string; `query` the raw query string (parsed only if needed)."""
        if self.claims:
            claims = head.claims
            for claim in self.claims:
                if not claim(claims):
                    return False
        if self.uri is not None and not self.uri(path):
            return False
        if self.method is not None and not self.method(head.method):
            return False
        if self.authority is not None and not self.authority(head.authority):
            return False
        if self.scheme is not None and not self.scheme(head.scheme):
            return False
        if self.headers:
            headers = head.headers
            for test in self.headers:
                if not test(headers):
                    return False
        if self.query:
            params = parse_query(query)
            for test in self.query:
                if not test(params):
                    return False
        return True


def regex_substitution(pattern: str, template: str) -> Callable[[str], str]:
    """Envoy regex_rewrite: every match of `pattern` in the path is replaced by `template`, where
    `\\1`..`\\9` are capture groups (RE2 syntax)."""
    compiled = compile_regex(pattern)
    if compiled is None:
        return lambda path: path
    parts: list[str | int] = []
    pos = 0
    for m in re.finditer(r"\\(\d)", template):
        parts.append(template[pos : m.start()])
        parts.append(int(m.group(1)))
        pos = m.end()
    parts.append(template[pos:])

    def expand(m: Any) -> str:
        return "".join(p if isinstance(p, str) else (m.group(p) or "") for p in parts)

    return lambda path: compiled.sub(expand, path)
