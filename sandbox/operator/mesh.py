"""Find the running mesh the way Compose finds a project: `-f compose.yaml`, or from the current directory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sandbox.runtime.project import MeshRecord, Project, ProjectNotFound, find_project, read_record


class NoMesh(Exception):
    """Nothing is running for this project (the message says which and what to do)."""


@dataclass(frozen=True)
class Located:
    project: Project
    record: MeshRecord | None

    @property
    def istio_dir(self) -> Path:
        """The running mesh's Istio directory (what `up --istio` chose), else the project's."""
        return (
            Path(self.record.istio_dir) if self.record is not None and self.record.istio_dir else self.project.istio_dir
        )

    def running(self) -> MeshRecord:
        if self.record is None:
            raise NoMesh(f"no mesh is running for {self.project.compose_file} (run sandbox up)")
        return self.record


def locate(compose_file: Path | None = None, istio_dir: Path | None = None, cwd: Path | None = None) -> Located:
    """The project and, when a mesh runs, its record. ProjectNotFound when there is no compose file."""
    project = find_project(compose_file, istio_dir, cwd)
    return Located(project, read_record(project))


__all__ = ["Located", "NoMesh", "ProjectNotFound", "locate"]
