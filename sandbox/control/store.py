"""The config store: per-file ownership of resources and the last good MeshState.

Each file owns the resources it defines. A new text for a file is accepted only when it loads
without an error diagnostic and introduces no new analyzer error; otherwise the file is rejected
with its diagnostics and what it last defined successfully stays in force, while every other file
still applies (istiod keeps the last good config the same way; a sidecar never loses traffic to a
typo). A resource two files define belongs to the file that defined it first; the other gets SBX009.

Rejected files are retried after every change, because the change that blocked them (a duplicate
owner, a missing subset) may have gone away. Pure: no I/O, the caller passes texts and times.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sandbox.mesh.diagnostics import Diagnostic, Severity
from sandbox.mesh.loader import load_text
from sandbox.mesh.resources import Resource
from sandbox.mesh.state import MeshState
from sandbox.mesh.topology import Topology, empty_topology

log = logging.getLogger(__name__)

Analyzer = Callable[[MeshState], Sequence[Diagnostic]]
ResourceKey = tuple[str, str, str]

# Warnings that still blackhole traffic: Kiali rates "Subset not found" a warning, but the route
# answers 503 NR, so a file that introduces one is rejected like an error.
BLOCKING_WARNINGS = frozenset({"KIA1107"})


def blocks(d: Diagnostic) -> bool:
    return d.severity is Severity.ERROR or d.code in BLOCKING_WARNINGS


class FileState(StrEnum):
    OK = "ok"
    REJECTED = "rejected"


@dataclass(frozen=True)
class FileStatus:
    file: str
    state: FileState
    diagnostics: tuple[Diagnostic, ...] = ()  # of the latest text (warnings too when accepted)
    last_good: float | None = None  # when a text of this file was last accepted
    changed: float | None = None  # when the latest text arrived
    resources: tuple[str, ...] = ()  # `Kind/ns/name` of what the file defines in force

    @property
    def errors(self) -> tuple[Diagnostic, ...]:
        return tuple(d for d in self.diagnostics if d.severity is Severity.ERROR)


@dataclass
class _File:
    """One file: its latest text's load result, and what it defined when last accepted."""

    latest: tuple[Resource[Any], ...] = ()
    latest_diagnostics: tuple[Diagnostic, ...] = ()
    good: tuple[Resource[Any], ...] = ()
    tried_generation: int = -1  # the generation a rejection was decided at: retrying sooner is pointless
    status: FileStatus = field(default_factory=lambda: FileStatus("", FileState.OK))


def _default_analyzer(state: MeshState) -> Sequence[Diagnostic]:
    from sandbox.mesh.analysis import analyze

    return analyze(state)


def _error_key(d: Diagnostic) -> tuple[str, str, str, str, str]:
    # Line numbers shift when a file is edited; an error is "the same" if it says the same thing.
    return (d.code, d.file, d.resource, d.path, d.message)


class ConfigStore:
    """Feed it file texts (`apply`) and the Compose topology (`set_topology`); read `state`."""

    def __init__(self, topology: Topology | None = None, analyzer: Analyzer | None = _default_analyzer) -> None:
        self._files: dict[str, _File] = {}
        self._analyzer = analyzer
        self.topology = topology or empty_topology()
        self.topology_status = FileStatus(self.topology.file, FileState.OK)
        self.generation = 0
        self.state = MeshState((), self.topology)
        self._before: tuple[MeshState, set[tuple[str, str, str, str, str]]] | None = None
        self._candidate: tuple[MeshState, set[tuple[str, str, str, str, str]]] | None = None

    # -- reading -------------------------------------------------------------------------------
    @property
    def statuses(self) -> dict[str, FileStatus]:
        return {name: f.status for name, f in sorted(self._files.items())}

    def status(self, file: str) -> FileStatus | None:
        f = self._files.get(file)
        return f.status if f else None

    @property
    def files(self) -> tuple[str, ...]:
        return tuple(sorted(self._files))

    # -- writing -------------------------------------------------------------------------------
    def apply(self, changes: Mapping[str, str | bytes | None], now: float) -> bool:
        """New texts (None: the file was deleted). True when the MeshState changed."""
        changed = False
        loaded: list[str] = []
        for name in sorted(changes):
            text = changes[name]
            if text is None:
                changed |= self._delete(name)
                continue
            result = load_text(text, name)
            entry = self._files.setdefault(name, _File())
            entry.latest, entry.latest_diagnostics = result.resources, result.diagnostics
            entry.status = FileStatus(name, entry.status.state, (), entry.status.last_good, now, entry.status.resources)
            entry.tried_generation = -1
            loaded.append(name)
        accepted = self._accept_together(loaded, now) if len(loaded) > 1 else set()
        changed |= bool(accepted)
        for name in loaded:
            if name not in accepted:
                changed |= self._evaluate(name, now)
        changed |= self._retry_rejected(now)
        return changed

    def set_topology(self, topology: Topology, now: float) -> bool:
        """Replace the Compose topology; one with errors is rejected and the last good one stays."""
        errors = tuple(d for d in topology.diagnostics if d.severity is Severity.ERROR)
        if errors:
            self.topology_status = FileStatus(
                topology.file, FileState.REJECTED, topology.diagnostics, self.topology_status.last_good, now
            )
            return False
        self.topology_status = FileStatus(topology.file, FileState.OK, topology.diagnostics, now, now)
        if topology == self.topology:
            return False
        self.topology = topology
        self._publish()
        self._retry_rejected(now)  # a new workload may make a rejected file's hosts valid
        return True

    # -- internals -----------------------------------------------------------------------------
    def _delete(self, name: str) -> bool:
        entry = self._files.pop(name, None)
        if entry is None or not entry.good:
            return False
        self._publish()
        return True

    def _owners(self, name: str) -> dict[ResourceKey, Resource[Any]]:
        """Resources in force from files other than `name` (each key has one owner, see `_evaluate`)."""
        return {r.key: r for other, f in self._files.items() if other != name for r in f.good}

    def _accept_together(self, names: list[str], now: float) -> set[str]:
        """Accept a batch with one analysis when it is clean (a start, a `git checkout`): judging
        each file against the others one by one costs an analysis per file. Files the analysis
        blames are left out and judged alone; anything murkier falls back to file by file."""
        owners = {r.key for other, f in self._files.items() if other not in names for r in f.good}
        batch: list[str] = []
        for name in names:
            entry = self._files[name]
            keys = [r.key for r in entry.latest]
            if any(d.severity is Severity.ERROR for d in entry.latest_diagnostics) or owners.intersection(keys):
                continue  # judged alone, which says why
            batch.append(name)
            owners.update(keys)
        for _ in range(3):
            if not batch:
                return set()
            candidate = self._compose({name: self._files[name].latest for name in batch})
            new = self._introduced_errors(candidate) if self._analyzer is not None else []
            if not new:
                for name in batch:
                    entry = self._files[name]
                    entry.good = entry.latest
                    refs = tuple(r.ref for r in entry.good)
                    entry.status = FileStatus(
                        name, FileState.OK, entry.latest_diagnostics, now, entry.status.changed, refs
                    )
                self._publish(candidate)
                return set(batch)
            blamed = {d.file for d in new}.intersection(batch)
            if not blamed:
                return set()
            batch = [name for name in batch if name not in blamed]
        return set()

    def _evaluate(self, name: str, now: float) -> bool:
        """Accept or reject the latest text of `name`; True when the MeshState changed."""
        entry = self._files[name]
        problems = [d for d in entry.latest_diagnostics if d.severity is Severity.ERROR]
        owners = self._owners(name)
        for r in entry.latest:
            first = owners.get(r.key)
            if first is not None:  # the file that has it in force keeps it
                line, col = r.origin.position("metadata/name")
                message = (
                    f"{r.kind} {r.namespace}/{r.name} is already defined at "
                    f"{first.origin.file}:{first.origin.line}; this definition is ignored"
                )
                problems.append(Diagnostic("SBX009", Severity.ERROR, message, name, line, col, "metadata/name", r.ref))
        candidate = self._compose({name: entry.latest}) if not problems else self.state
        if not problems and self._analyzer is not None:
            problems.extend(self._introduced_errors(candidate))
        diagnostics = entry.latest_diagnostics + tuple(d for d in problems if d not in entry.latest_diagnostics)
        changed_at = entry.status.changed
        if problems:
            entry.tried_generation = self.generation
            in_force = tuple(r.ref for r in entry.good)
            entry.status = FileStatus(
                name, FileState.REJECTED, diagnostics, entry.status.last_good, changed_at, in_force
            )
            return False
        before = entry.good
        entry.good = entry.latest
        entry.status = FileStatus(name, FileState.OK, diagnostics, now, changed_at, tuple(r.ref for r in entry.good))
        if _same(before, entry.good):
            return False
        self._publish(candidate)
        return True

    def _introduced_errors(self, candidate: MeshState) -> list[Diagnostic]:
        if self._before is None or self._before[0] is not self.state:  # one analysis per published state
            self._before = (self.state, {_error_key(d) for d in self._analyze(self.state) if blocks(d)})
        before = self._before[1]
        found = [d for d in self._analyze(candidate) if blocks(d)]
        self._candidate = (candidate, {_error_key(d) for d in found})  # "before" of the next change, if accepted
        return [d for d in found if _error_key(d) not in before]

    def _analyze(self, state: MeshState) -> Sequence[Diagnostic]:
        assert self._analyzer is not None
        try:
            return self._analyzer(state)
        except Exception:  # a checker bug must not freeze the config: schema validation still applies
            log.exception("the analyzer failed; accepting on schema validation alone")
            return ()

    def _retry_rejected(self, now: float) -> bool:
        changed = False
        progress = True
        while progress:  # a fixpoint: accepting one file can unblock another
            progress = False
            for name in sorted(self._files):
                entry = self._files[name]
                if entry.status.state is not FileState.REJECTED or entry.tried_generation == self.generation:
                    continue
                if self._evaluate(name, now):
                    progress = changed = True
        return changed

    def _compose(self, overrides: Mapping[str, tuple[Resource[Any], ...]] | None = None) -> MeshState:
        resources: list[Resource[Any]] = []
        for name in sorted(self._files):
            resources.extend(overrides[name] if overrides and name in overrides else self._files[name].good)
        return MeshState(tuple(resources), self.topology)

    def _publish(self, state: MeshState | None = None) -> None:
        self.state = state if state is not None else self._compose()
        if self._candidate is not None and self._candidate[0] is self.state:
            self._before = self._candidate
        self.generation += 1


def _same(a: Iterable[Resource[Any]], b: Iterable[Resource[Any]]) -> bool:
    a, b = tuple(a), tuple(b)
    return a == b and [r.origin for r in a] == [r.origin for r in b]
