"""The console's writes to the Istio directory, through `sandbox apply`'s own path: the operator
plans each change against the whole directory and the Compose workloads (operator.edit,
operator.apply), refuses what brings an error, and writes what it accepts one file at a time
atomically; the control plane's watcher then pushes it. I/O only (the files), like reader.py for
reads: the console never writes a file any other way.

One change at a time (a lock), each planned and written on a worker thread: planning loads and
analyses the directory, which must not stall the event loop the pages are served from.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from sandbox.console.edits import Document
from sandbox.mesh.diagnostics import Diagnostic
from sandbox.mesh.legacy.common import document as manifest
from sandbox.mesh.state import MeshState
from sandbox.mesh.yamlsrc import dump_yaml
from sandbox.operator.apply import Input, Plan, plan_edit, write
from sandbox.operator.documents import Key, YamlFile
from sandbox.operator.edit import istio_files
from sandbox.runtime.project import Project

T = TypeVar("T")


@dataclass(frozen=True)
class Outcome:
    plan: Plan
    written: bool
    after: tuple[Diagnostic, ...] = ()  # the analyzer's findings on the directory as it would be


class WritesOff(Exception):
    """The console does not know the mesh's files (it was started without a compose file)."""


class ConfigWriter:
    def __init__(self, project: Project | None, istio_dir: Callable[[], Path | None]) -> None:
        self.project = project
        self._istio_dir = istio_dir
        self._lock = asyncio.Lock()

    @property
    def enabled(self) -> bool:
        return self.project is not None

    def istio_dir(self) -> Path:
        if self.project is None:
            raise WritesOff(
                "this console does not know the mesh's files: start it with --file compose.yaml "
                "(sandbox up does), or change the rules with sandbox apply"
            )
        return self._istio_dir() or self.project.istio_dir

    async def _run(self, fn: Callable[[], T]) -> T:
        async with self._lock:
            return await asyncio.get_running_loop().run_in_executor(None, fn)

    async def document(self, key: Key, file: str | None = None) -> Document | None:
        """The resource's document as written in the Istio directory (None when no file has it).
        `file`: where the control plane says it is (read alone, when it still holds the resource)."""
        if self.project is None:
            return None
        istio_dir = self.istio_dir()
        return await self._run(lambda: find_document(istio_dir, key, file))

    async def change(
        self,
        inputs: Sequence[Input],
        remove: Sequence[Key],
        dry_run: bool,
        guard: Callable[[Plan], object] | None = None,
    ) -> Outcome:
        """Plan `inputs` (applied) and `remove` (deleted) as one change; write it unless refused, a
        dry run, or `guard` objects to the plan (it returns something)."""
        istio_dir = self.istio_dir()
        assert self.project is not None
        compose = self.project.compose_file

        def run() -> Outcome:
            from sandbox.mesh.analysis import analyze
            from sandbox.mesh.topology import load_compose

            seen: list[Sequence[Diagnostic]] = []

            def analyzer(state: MeshState) -> Sequence[Diagnostic]:
                seen.append(analyze(state))  # before the change, then after it
                return seen[-1]

            plan = plan_edit(istio_dir, istio_files(istio_dir), inputs, remove, load_compose(compose), analyzer)
            after = tuple(seen[1]) if len(seen) == 2 else ()
            if not plan.ok or dry_run or not plan.writes or (guard is not None and guard(plan)):
                return Outcome(plan, False, after)
            write(plan)
            return Outcome(plan, True, after)

        return await self._run(run)


def find_document(istio_dir: Path, key: Key, hint: str | None = None) -> Document | None:
    """The document, from the file the control plane named when it is one of the directory's (one
    file parsed instead of all of them), else from whichever file defines it."""

    def sources() -> Iterator[tuple[str, str]]:
        if hint and Path(hint).resolve().is_relative_to(istio_dir.resolve()):
            text = None
            with contextlib.suppress(OSError, UnicodeDecodeError):
                text = Path(hint).read_text(encoding="utf-8")
            if text is not None:
                yield hint, text
        yield from sorted(istio_files(istio_dir).items())

    for path, text in sources():
        parsed = YamlFile.parse(path, text)
        resource = parsed.resource(key)
        if resource is None:
            continue
        chunk = next(c for c in parsed.chunks if key in c.keys)
        body = chunk.text if len(chunk.keys) == 1 else dump_yaml(manifest(resource))
        return Document(path, resource.origin.line, body)
    return None
