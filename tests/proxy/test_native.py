"""The compiled data path: used only when it matches the source on disk; pure Python otherwise."""

from __future__ import annotations

import importlib.machinery
import os
import shutil
import subprocess
import sys
from pathlib import Path

from sandbox.proxy import native
from tests.conftest import require

SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]


def fake_build(tmp_path: Path) -> Path:
    """A copy of the data path's sources with an (empty) extension beside each and a matching stamp."""
    package = tmp_path / "proxy"
    package.mkdir()
    for name in native.COMPILED:
        shutil.copy(native.HERE / f"{name}.py", package / f"{name}.py")
        (package / f"{name}{SUFFIX}").write_bytes(b"")
    (package / native.STAMP).write_text(native.source_digest(package) + "\n")
    return package


def test_a_build_whose_stamp_matches_its_source_is_used(tmp_path: Path) -> None:
    assert native.status(fake_build(tmp_path), env={}) == (True, "compiled (mypyc)")


def test_an_edited_source_falls_back_to_pure_python(tmp_path: Path) -> None:
    package = fake_build(tmp_path)
    with (package / "forwarder.py").open("a") as f:
        f.write("\n# an edit after the build\n")
    compiled, why = native.status(package, env={})
    assert not compiled
    assert "source changed" in why


def test_a_missing_extension_or_stamp_means_pure_python(tmp_path: Path) -> None:
    package = fake_build(tmp_path)
    (package / f"server{SUFFIX}").unlink()
    assert native.status(package, env={})[0] is False
    (tmp_path / "again").mkdir()
    package = fake_build(tmp_path / "again")
    (package / native.STAMP).unlink()
    assert native.status(package, env={})[0] is False


def test_the_environment_switch_forces_pure_python(tmp_path: Path) -> None:
    package = fake_build(tmp_path)
    assert native.status(package, env={native.PURE_ENV: "1"}) == (False, f"pure Python ({native.PURE_ENV} is set)")
    assert native.status(package, env={native.PURE_ENV: "0"})[0] is True


def _loaded_files(env: dict[str, str], cwd: Path | None = None) -> list[str]:
    code = (
        "import importlib, sandbox.proxy.native as n\n"
        "print(n.STATUS)\n"
        "for m in n.COMPILED: print(importlib.import_module('sandbox.proxy.' + m).__file__)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True, timeout=60, check=True
    ).stdout
    return out.splitlines()


def test_with_the_switch_every_data_path_module_loads_from_its_source() -> None:
    status, *files = _loaded_files({**os.environ, native.PURE_ENV: "1"})
    assert status.startswith("pure Python")
    assert files and all(f.endswith(".py") for f in files), files


def test_the_installed_data_path_is_compiled_and_loaded_whole() -> None:
    env = {k: v for k, v in os.environ.items() if k != native.PURE_ENV}
    status, *files = _loaded_files(env)
    require(status == "compiled (mypyc)", f"the data path is not compiled here: {status}")
    assert all(not f.endswith(".py") for f in files), files


def test_extensions_that_do_not_load_here_fall_back_to_pure_python(tmp_path: Path) -> None:
    """A build made elsewhere (another libc, say) whose stamp matches: the sidecar still starts."""
    root = tmp_path / "tree"
    shutil.copytree(native.HERE.parent, root / "sandbox", ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    proxy = root / "sandbox" / "proxy"
    for name in native.COMPILED:
        (proxy / f"{name}{SUFFIX}").write_bytes(b"\x7fELF, but not for this machine")
    (proxy / native.STAMP).write_text(native.source_digest(proxy) + "\n")
    env = {k: v for k, v in os.environ.items() if k != native.PURE_ENV}
    status, *files = _loaded_files({**env, "PYTHONPATH": str(root)}, cwd=root)
    assert status.startswith("pure Python (the compiled modules do not load here: "), status
    assert files and all(f.startswith(str(proxy)) and f.endswith(".py") for f in files), files
