"""The data path compiled with mypyc, and when to use it.

`pip install` compiles the modules in `COMPILED` with mypyc (setup.py): same source, same
semantics, about a third of the interpreter's Python work per request (0.5-0.6x the sidecar's
CPU per request in place, where the kernel's share stays). Pure Python stays the fallback and
is chosen, all modules together (mypyc links a group's modules to each other directly, so a mix of
compiled and source modules would hold two copies of each class), when:

- `SANDBOX_PURE_PYTHON=1` is set (to debug the data path, or to compare the two);
- nothing was compiled (no C compiler, or mypyc failed: setup.py then builds pure Python);
- the sources changed since the build, as in an editable install after an edit: the build
  stamped a digest of the sources it compiled, and a stale extension must never run instead of
  the code on disk;
- the extensions do not load here: built by another machine for another C library (the compose
  image carries the host's build, which loads where the image's Python and libc match the host's).
  Extensions built for another Python version are not even seen: their file names say the version.

This module uses the standard library only: setup.py runs it before the package's dependencies
are installed. `install()` is called by `sandbox/proxy/__init__.py`, before any data-path import.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType

PACKAGE = "sandbox.proxy"
HERE = Path(__file__).resolve().parent
STAMP = "_native.stamp"  # written next to the extensions by setup.py's build_ext
PURE_ENV = "SANDBOX_PURE_PYTHON"

# Every module a request runs through, and nothing that imports the control plane's I/O side.
COMPILED = (
    "accesslog",
    "authz",
    "balancing",
    "circuitbreaker",
    "cluster",
    "context",
    "decision",
    "downstream",
    "extauthz",
    "filters",
    "flags",
    "forwarder",
    "http1",
    "jwt_authn",
    "matching",
    "metrics",
    "mirror",
    "outlier",
    "record",
    "relay",
    "retry",
    "routing",
    "server",
    "tcproute",
    "telemetry",
    "timers",
    "tlsstream",
    "tracecontext",
    "tracing",
    "tunnel",
    "upstream",
    "writes",
)


# Loaded first to check that the extensions load at all (it imports nothing else, and every compiled
# module needs the one shared library mypyc built for them all).
PROBE = "flags"


def source_digest(directory: Path = HERE) -> str:
    """What the stamp records: the compiled modules' sources, as the build saw them."""
    digest = hashlib.sha256()
    for name in COMPILED:
        digest.update(name.encode() + b"\0" + (directory / f"{name}.py").read_bytes() + b"\0")
    return digest.hexdigest()


def pure_requested(env: dict[str, str] | os._Environ[str]) -> bool:
    """`SANDBOX_PURE_PYTHON` set to anything but "" or "0" (read by the build and at run time)."""
    return env.get(PURE_ENV, "") not in ("", "0")


def _stamp(directory: Path) -> list[str] | None:
    """The stamp's lines: the digest of the compiled sources, then the name of the library mypyc linked
    them into (it sits at the top level, beside the `sandbox` package). None: no stamp."""
    try:
        return [line.strip() for line in (directory / STAMP).read_text().splitlines()]
    except OSError:
        return None


def shared_library(directory: Path = HERE) -> str:
    """The compiled modules' shared library (a module name), or "" when the stamp does not say."""
    lines = _stamp(directory)
    return lines[1] if lines is not None and len(lines) > 1 else ""


def _has_extension(directory: Path, name: str) -> bool:
    return any((directory / f"{name}{suffix}").is_file() for suffix in importlib.machinery.EXTENSION_SUFFIXES)


def status(directory: Path = HERE, env: dict[str, str] | None = None) -> tuple[bool, str]:
    """(compiled?, why) for the package in `directory`."""
    if pure_requested(os.environ if env is None else env):
        return False, f"pure Python ({PURE_ENV} is set)"
    if not all(_has_extension(directory, name) for name in COMPILED):
        return False, "pure Python (not compiled: reinstall with a C compiler to build it with mypyc)"
    lines = _stamp(directory)
    if not lines:
        return False, f"pure Python (no {STAMP}: the compiled modules cannot be matched to their source)"
    if lines[0] != source_digest(directory):
        return False, "pure Python (the source changed since it was compiled: pip install -e . rebuilds it)"
    return True, "compiled (mypyc)"


class _SourceFinder:
    """Loads the data-path modules from their .py files, ahead of the extension modules beside them."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        package, _, name = fullname.rpartition(".")
        if package != PACKAGE or name not in COMPILED:
            return None
        source = self.directory / f"{name}.py"
        loader = importlib.machinery.SourceFileLoader(fullname, str(source))
        return importlib.util.spec_from_file_location(fullname, source, loader=loader)


COMPILED_ACTIVE = False
STATUS = "pure Python (not yet decided)"


def _load_problem() -> str:
    """Why the extensions do not load in this process ("" when they do): built for another C library
    than this one, say, as when a build made on one machine runs on another."""
    try:
        importlib.import_module(f"{PACKAGE}.{PROBE}")
    except ImportError as exc:
        return str(exc) or type(exc).__name__
    return ""


def install() -> None:
    """Decide once per process; when the answer is pure Python, route the imports to the sources."""
    global COMPILED_ACTIVE, STATUS
    COMPILED_ACTIVE, STATUS = status()
    if COMPILED_ACTIVE:
        problem = _load_problem()
        if problem:
            COMPILED_ACTIVE, STATUS = False, f"pure Python (the compiled modules do not load here: {problem})"
    if not COMPILED_ACTIVE and any(_has_extension(HERE, name) for name in COMPILED):
        sys.meta_path.insert(0, _SourceFinder(HERE))
