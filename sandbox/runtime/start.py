"""Starting a mesh: what `sandbox up` does before Runtime.up (choose the runtime, read and check
the inputs, the runtime's own preflight), as library functions. The CLI, the pytest fixture and
the workshop call these, so there is one way to start a mesh.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sandbox.runtime.base import Progress, Runtime, UpOptions
from sandbox.runtime.project import MeshRecord, Project, read_record

if TYPE_CHECKING:
    from sandbox.mesh.diagnostics import Diagnostic
    from sandbox.runtime.preflight import Inputs


def runtime_named(name: str) -> Runtime:
    if name == "compose":
        from sandbox.runtime.compose import ComposeRuntime

        return ComposeRuntime()
    from sandbox.runtime.local import LocalRuntime

    return LocalRuntime()


def engine_answers() -> bool:
    """Whether a Docker engine answers (`--runtime auto` picks compose then)."""
    try:
        from sandbox.runtime.docker_engine import engine_available
    except ImportError:  # the docker SDK is missing: no compose runtime either
        return False
    return engine_available(timeout=2.0)


def choose(runtime: str, answers: Callable[[], bool] = engine_answers) -> str:
    """`auto` is compose when a Docker engine answers, else local."""
    if runtime != "auto":
        return runtime
    return "compose" if answers() else "local"


def running(project: Project) -> tuple[MeshRecord, Runtime] | None:
    """The record of the project's mesh and its runtime, when that mesh runs."""
    record = read_record(project)
    if record is None:
        return None
    engine = runtime_named(record.runtime)
    return (record, engine) if engine.is_running(project, record) else None


@dataclass
class Launch:
    """A mesh checked and ready to start: `up` starts it unless `problems` has anything."""

    project: Project
    runtime: str  # the chosen one: local or compose
    engine: Runtime
    inputs: Inputs
    problems: list[Diagnostic]  # errors: nothing may start
    warnings: list[Diagnostic]  # printed, not blocking

    def up(self, options: UpOptions, progress: Progress) -> MeshRecord:
        return self.engine.up(self.project, self.inputs.topology, options, progress)

    def cancel(self) -> None:
        """Release what preparing started (the local runtime's warm supervisor), if `up` did not use it."""
        cancel = getattr(self.engine, "cancel_warm_up", None)
        if cancel is not None:
            cancel()


def prepare(project: Project, runtime: str = "auto", engine: Runtime | None = None) -> Launch:
    """Choose the runtime, read the compose file and the Istio directory, and run every check
    `up` runs before it starts anything. `engine` overrides the runtime object (e.g. a
    LocalRuntime with a supervisor server)."""
    from sandbox.runtime.preflight import check, read_inputs, warnings

    chosen = choose(runtime) if engine is None else engine.name
    engine = engine or runtime_named(chosen)
    warm_up = getattr(engine, "warm_up", None)
    if warm_up is not None:  # the local runtime's supervisor preloads while the checks run
        warm_up(project)
    inputs = read_inputs(project.compose_file, project.istio_dir)
    problems = check(inputs, chosen)
    if not problems:
        problems = engine.preflight(project, inputs)
    return Launch(project, chosen, engine, inputs, problems, warnings(inputs))
