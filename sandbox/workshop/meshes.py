"""The meshes a workshop runs on, by sample, found or started the one way sandbox starts a mesh.

- A sample whose mesh already runs (the presenter ran `sandbox up`) is used as it is, and left
  running at the end.
- Bookinfo, when not running, starts in place, as `sandbox up --detach -f .../bookinfo/compose.yaml`
  would (runtime.start): every `sandbox` command works on it during the talk. The workshop stops
  it at the end.
- httpbin, when not running, starts from a private working copy on a free ingress port
  (sandbox.testing's launcher), since Bookinfo holds the default one; stopped at the end.
Whatever it started is owned by the workshop's process: killed, it leaves nothing running.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from sandbox.testing.errors import MeshError
from sandbox.testing.mesh import Mesh


class Meshes:
    def __init__(self, samples: dict[str, Path | None], runtime: str, say: Callable[[str], None]) -> None:
        self.samples = samples  # sample name -> its compose file (None: not found)
        self.runtime = runtime
        self.say = say
        self.meshes: dict[str, Mesh] = {}
        self.started: list[tuple[str, Mesh]] = []  # the ones the workshop started, to stop at the end
        self._launcher: object = None

    def __call__(self, sample: str) -> Mesh:
        if sample not in self.meshes:
            self.meshes[sample] = self._find_or_start(sample)
        return self.meshes[sample]

    def _find_or_start(self, sample: str) -> Mesh:
        from sandbox.runtime.project import find_project
        from sandbox.runtime.start import running

        compose = self.samples.get(sample)
        if compose is None:
            raise MeshError(f"the {sample} sample was not found (pass its compose file: --{sample} FILE)")
        project = find_project(compose)
        found = running(project)
        if found is not None:
            record, engine = found
            self.say(f"Using the running {sample} mesh ({record.runtime} runtime, ingress {record.urls['ingress']}).")
            return Mesh(project, record, engine, compose)
        began = time.monotonic()
        self.say(f"Starting the {sample} mesh ...")
        mesh = self._start_in_place(project) if sample == "bookinfo" else self._start_copy(compose)
        self.started.append((sample, mesh))
        self.say(
            f"The {sample} mesh is ready ({mesh.record.runtime} runtime, {time.monotonic() - began:.1f} s): "
            f"ingress {mesh.ingress}, console {mesh.urls.get('console') or 'off'}"
        )
        return mesh

    def _start_in_place(self, project: object) -> Mesh:
        from sandbox.runtime.base import RecordingProgress, RuntimeFailure, UpOptions
        from sandbox.runtime.project import Project
        from sandbox.runtime.start import prepare

        assert isinstance(project, Project)
        launch = prepare(project, self.runtime)
        if launch.problems:
            launch.cancel()
            raise MeshError("the mesh cannot start:\n" + "\n".join(d.format() for d in launch.problems))
        progress = RecordingProgress()
        try:
            record = launch.up(UpOptions(detach=True, owner=os.getpid()), progress)
        except RuntimeFailure as failure:
            raise MeshError(f"the mesh did not start: {failure}") from None
        finally:
            launch.cancel()
        for warning in progress.warnings:
            self.say(f"warning: {warning}")
        return Mesh(project, record, launch.engine, project.compose_file)

    def _start_copy(self, compose: Path) -> Mesh:
        from sandbox.runtime.start import choose
        from sandbox.testing.lifecycle import Launcher, MeshConfig

        if self._launcher is None:
            self._launcher = Launcher()
        assert isinstance(self._launcher, Launcher)
        return self._launcher.start(MeshConfig(compose, runtime=choose(self.runtime), console=True))

    def restore(self) -> None:
        """Every mesh's rules back to what they were when the workshop began."""
        for sample, mesh in self.meshes.items():
            try:
                changed = mesh.reset()
            except MeshError as exc:
                self.say(f"warning: the {sample} mesh's starting rules could not be put back: {exc}")
                continue
            if changed:
                self.say(f"The {sample} mesh's starting rules are back: {', '.join(changed)}")

    def close(self) -> None:
        """Stop what the workshop started (the presenter's own meshes keep running)."""
        for sample, mesh in self.started:
            self.say(f"Stopping the {sample} mesh the workshop started.")
            mesh.stop()
        self.started.clear()
        from sandbox.testing.lifecycle import Launcher

        if isinstance(self._launcher, Launcher):
            self._launcher.close()
