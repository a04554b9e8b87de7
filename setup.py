"""Compile the sidecar's data path with mypyc; pure Python is the fallback, never a failed install.

The module list and the stamp live in sandbox/proxy/native.py, which decides at run time whether the
compiled modules match the source beside them. Set SANDBOX_PURE_PYTHON=1 to build without them.
"""

from __future__ import annotations

import os
import runpy
import sys
from pathlib import Path
from typing import Any

from setuptools import setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
native: dict[str, Any] = runpy.run_path(str(ROOT / "sandbox" / "proxy" / "native.py"))


def _warn(message: str) -> None:
    print(f"sandbox setup.py: {message}; the sidecar runs as pure Python", file=sys.stderr)


COMPILED_DIGEST = ""  # the digest of the sources mypyc compiles, taken before it reads them


def extensions() -> list[Any]:
    if native["pure_requested"](os.environ):
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        _warn("mypyc is not installed")
        return []
    paths = [f"sandbox/proxy/{name}.py" for name in native["COMPILED"]]
    global COMPILED_DIGEST
    COMPILED_DIGEST = native["source_digest"](ROOT / "sandbox" / "proxy")  # before mypyc reads them
    # The isolated build environment lacks the runtime dependencies: their types become Any, which
    # is sound (compiled code then checks nothing about them). Strict mode stays on otherwise: a
    # compiled class subclassing an unknown (Any) base crashes at run time, so it must stay an error.
    flags = ["--ignore-missing-imports", "--no-warn-unused-ignores", "--no-warn-return-any"]
    try:
        modules = mypycify([*flags, *paths], opt_level=os.environ.get("MYPYC_OPT_LEVEL", "3"))
    except (Exception, SystemExit) as exc:  # a type error mypyc refuses must not fail the install
        _warn(f"mypyc could not compile the data path ({exc})")
        return []
    for module in modules:
        module.optional = True  # no C compiler: skip the extension, keep the install
    return modules


class BuildExt(build_ext):
    """Stamp the compiled modules with the digest of the source they were compiled from, and the name
    of the shared library mypyc linked them into (the compose image carries that one file)."""

    def run(self) -> None:
        super().run()
        if not self.extensions or not COMPILED_DIGEST:
            return
        target = Path(self.get_ext_fullpath("sandbox.proxy.forwarder")).parent
        if target.is_dir():
            # The digest taken before compiling: a source edited during the build then reads as stale.
            library = next((e.name for e in self.extensions if e.name.endswith("__mypyc")), "")
            (target / native["STAMP"]).write_text(f"{COMPILED_DIGEST}\n{library}\n")


# pip runs this file for metadata too; type-check and generate C only for the commands that build.
BUILDS = {"build", "build_ext", "bdist_wheel", "editable_wheel", "develop", "install"}
setup(ext_modules=extensions() if BUILDS & set(sys.argv[1:]) else [], cmdclass={"build_ext": BuildExt})
