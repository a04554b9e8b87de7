"""`sandbox init`: copy a small working project (compose.yaml, istio/, apps/, README.md) into a directory.

The project is plain files under `project/`, shipped as package data, so what `init` writes is
exactly what the tests analyze and run.
"""

from __future__ import annotations

from collections.abc import Iterator
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

SKIP = {"__pycache__", ".mypy_cache", ".ruff_cache"}


class ScaffoldError(Exception):
    """The directory cannot take the project (not empty, or not a directory)."""


def template() -> Traversable:
    return files(__name__).joinpath("project")


def template_files() -> Iterator[tuple[str, Traversable]]:
    """(relative POSIX path, file) of every file of the project, in a stable order."""
    stack: list[tuple[str, Traversable]] = [("", template())]
    while stack:
        prefix, folder = stack.pop()
        for entry in sorted(folder.iterdir(), key=lambda e: e.name, reverse=True):
            if entry.name in SKIP or entry.name.endswith(".pyc"):
                continue
            rel = f"{prefix}{entry.name}"
            if entry.is_dir():
                stack.append((rel + "/", entry))
            else:
                yield rel, entry


def create(directory: Path, force: bool = False) -> list[Path]:
    """Write the project into `directory` (created if missing); returns the files written.

    A directory with anything in it is refused unless `force`, which overwrites the project's
    own files and leaves every other file alone."""
    if directory.exists() and not directory.is_dir():
        raise ScaffoldError(f"{directory} exists and is not a directory")
    if directory.is_dir() and any(directory.iterdir()) and not force:
        raise ScaffoldError(f"{directory} is not empty; use --force to write the project into it anyway")
    written = []
    for rel, source in sorted(template_files()):
        target = directory / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source.read_bytes())
        written.append(target)
    return written
