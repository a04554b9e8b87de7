"""The walk through a workshop's steps (steps.py), interactive or unattended.

Per step: what it does and why; from the rules the mesh had at the start, its footing and then
its own rules, each shown (YAML, in colour on a terminal) and applied through `mesh.apply`,
which validates and returns once every sidecar has ACKed; its traffic and what came of it; what
to look at and the console page that shows it (opened in the browser when wanted); then Enter.
`--auto` plays every step without waiting or opening anything and fails on an outcome that is
not what the task describes. Leaving, at the end or on Ctrl-C, puts the starting rules back and
stops the meshes the walk started.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sandbox.testing.errors import MeshError
from sandbox.testing.mesh import Mesh
from sandbox.workshop import show
from sandbox.workshop.checks import Outcome, Stage
from sandbox.workshop.meshes import Meshes
from sandbox.workshop.steps import Rule, Step


@dataclass(frozen=True)
class Options:
    auto: bool = False
    first: int = 1  # the step to start at (1-based)
    open_pages: bool = True
    colour: bool = False
    runtime: str = "auto"


@dataclass
class Result:
    passed: list[int] = field(default_factory=list)
    failed: list[tuple[int, str]] = field(default_factory=list)
    skipped: list[tuple[int, str]] = field(default_factory=list)
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        return not self.failed and not self.interrupted


def listing(steps: Sequence[Step]) -> str:
    """`--list`: number, title, and what each step applies (or why it is not available)."""
    width = max(len(s.title) for s in steps)
    rows = []
    for number, step in enumerate(steps, 1):
        if not step.available:
            what = f"not available in this version: {step.unavailable_because}"
        else:
            what = ", ".join(r.name for r in step.rules) or "(no rule: traffic and a look)"
            what += "" if step.sample == "bookinfo" else f"  [{step.sample}]"
        rows.append(f"{number:>2}  {step.title:<{width}}  {what}")
    return "\n".join(rows)


class Walk:
    def __init__(
        self,
        steps: Sequence[Step],
        samples: dict[str, Path | None],
        options: Options,
        say: Callable[[str], None] = print,
        ask: Callable[[str], str] = input,
    ) -> None:
        self.steps = steps
        self.samples = samples
        self.options = options
        self.say = say
        self.ask = ask
        self.meshes = Meshes(samples, options.runtime, say)
        self.stage = Stage(self.meshes)

    def run(self) -> Result:
        result = Result()
        number = self.options.first
        try:
            for number, step in enumerate(self.steps, 1):
                if number < self.options.first:
                    continue
                self.play(number, step, result)
                if not self.options.auto and number < len(self.steps):
                    self.ask("\nPress Enter for the next step (Ctrl-C to leave) ")
        except (KeyboardInterrupt, EOFError):
            result.interrupted = True
            self.say("\nLeaving the workshop.")
        except MeshError as exc:  # a mesh that cannot start: no step can be played
            result.failed.append((number, str(exc)))
            self.say(f"error: {exc}")
        finally:
            self.leave()
        return result

    def play(self, number: int, step: Step, result: Result) -> None:
        colour = self.options.colour
        self.say("\n" + show.bold(f"Step {number}/{len(self.steps)}: {step.title}", colour))
        if not step.available:
            self.say(f"  Not available in this version: {step.unavailable_because}. Skipped.")
            result.skipped.append((number, step.unavailable_because))
            return
        if self.samples.get(step.sample) is None:
            why = f"the {step.sample} sample was not found (pass --{step.sample} FILE)"
            self.say(f"  Skipped: {why}.")
            result.skipped.append((number, why))
            return
        self.say(show.wrapped(step.why))
        mesh = self.meshes(step.sample)  # MeshError here ends the walk
        began = time.monotonic()
        try:
            self.footing(mesh, step)
            self.stage.before = mesh.get("vs") + "\n" + mesh.get("dr")
            self.stage.refusals.clear()
            for rule in step.rules:
                self.apply(mesh, step, rule)
            outcome = step.check(self.stage)
        except Exception as exc:  # a rule refused, a request that got no answer: the step failed, the walk goes on
            outcome = Outcome(False, f"{type(exc).__name__}: {exc}" if not isinstance(exc, MeshError) else str(exc))
        mark = "ok" if outcome.ok else "NOT AS EXPECTED"
        self.say(f"\n  Traffic: {outcome.summary}  [{mark}, {time.monotonic() - began:.1f} s]")
        (result.passed.append(number) if outcome.ok else result.failed.append((number, outcome.summary)))
        self.say(f"  Look at: {step.look}")
        self.console(step)

    def footing(self, mesh: Mesh, step: Step) -> None:
        """The starting rules, then the files the step builds on (listed, not shown)."""
        mesh.reset()
        if step.needs:
            directory = self._directory(step.sample)
            for name in step.needs:
                lines = mesh.apply(directory / name)
                self.say(f"  first: sandbox apply -f {name}  ({'; '.join(lines)})")

    def apply(self, mesh: Mesh, step: Step, rule: Rule) -> None:
        path = self._directory(step.sample) / rule.name
        if rule.text is None:
            text, command = path.read_text(), f"sandbox apply -f {rule.name}"
        else:
            text, command = rule.text, f"sandbox apply -f -   # {rule.name}"
        self.say(f"\n  $ {command}")
        self.say(show.yaml_text(text, self.options.colour).rstrip("\n"))
        try:
            lines = mesh.apply(path if rule.text is None else text)
        except MeshError as exc:
            if not rule.refused:
                raise
            self.stage.refusals.append(str(exc))
            self.say("  refused, as it should be: " + "\n    ".join(str(exc).splitlines()))
            return
        for line in lines:
            self.say(f"  {line}")
        self.say("  (every sidecar has it: sandbox wait --synced)")

    def console(self, step: Step) -> None:
        mesh = self.meshes(step.sample)
        base = mesh.urls.get("console")
        if not base:
            self.say("  Console: not running for this mesh")
            return
        url, own = show.page_url(base, step.page)
        note = "" if own else f" (the console has no {step.page.partition('#')[0]} page yet: its overview)"
        self.say(f"  Console: {url}{note}")
        if self.options.open_pages and not self.options.auto:
            show.open_page(url)

    def _directory(self, sample: str) -> Path:
        compose = self.samples.get(sample)
        if compose is None:
            raise MeshError(f"the {sample} sample was not found")
        return compose.parent

    def leave(self) -> None:
        try:
            self.meshes.restore()
        finally:
            self.meshes.close()
