"""Where a running mesh lives on disk, and the record every operator verb reads.

Like Compose, a mesh is found from the compose file (given with `-f`, or searched for from the
current directory upwards). Its state lives in `.sandbox/` beside that file:

    .sandbox/
      mesh.json     the MeshRecord: runtime, URLs, control plane, every proxy's admin URL
      state/        the mesh CA and bootstrap-token secret (owner-only; see control/ca.py)
      logs/         one log file per process (local runtime)

The runtime writes the record once the mesh is ready and removes it on `down`; `status`, `logs`,
`apply`, `wait` and `proxy-status` read it. Pure data plus atomic file I/O, nothing else.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

COMPOSE_NAMES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")
STATE_DIR = ".sandbox"
RECORD_FILE = "mesh.json"
URL_KEYS = ("ingress", "https", "console", "prometheus", "tracing")  # https: the ingress gateway's port 443


class ProjectNotFound(Exception):
    """No compose file here or above (the message says where it looked)."""


@dataclass(frozen=True)
class Project:
    compose_file: Path  # absolute
    istio_dir: Path  # absolute; `istio/` beside the compose file unless given

    @property
    def directory(self) -> Path:
        return self.compose_file.parent

    @property
    def state_dir(self) -> Path:
        return self.directory / STATE_DIR

    @property
    def ca_dir(self) -> Path:
        """The CA and token secret (what `sandbox controlplane --state-dir` takes)."""
        return self.state_dir / "state"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def record_file(self) -> Path:
        return self.state_dir / RECORD_FILE

    @property
    def name(self) -> str:
        """The Compose project name: the directory's name, normalised as Compose does."""
        return project_name(self.directory.name)


def project_name(text: str) -> str:
    """Compose's rule: lower case, only [a-z0-9_-], starting with a letter or digit."""
    name = re.sub(r"[^a-z0-9_-]", "", text.lower()).lstrip("_-")
    return name or "sandbox"


def find_project(compose_file: Path | None = None, istio_dir: Path | None = None, cwd: Path | None = None) -> Project:
    """The project of `-f FILE`, or of the first compose file found from `cwd` upwards."""
    if compose_file is None:
        start = (cwd or Path.cwd()).resolve()
        for directory in (start, *start.parents):
            found = next((directory / n for n in COMPOSE_NAMES if (directory / n).is_file()), None)
            if found is not None:
                compose_file = found
                break
        else:
            raise ProjectNotFound(f"no {' or '.join(COMPOSE_NAMES[:2])} in {start} or any parent directory (pass -f)")
    elif not compose_file.is_file():
        raise ProjectNotFound(f"no such compose file: {compose_file}")
    compose_file = compose_file.resolve()
    return Project(compose_file, (istio_dir or compose_file.parent / "istio").resolve())


@dataclass(frozen=True)
class ProxyRecord:
    node: str  # see node_name()
    workload: str
    namespace: str
    replica: int  # 0-based
    admin: str  # base URL of its admin listener as seen from the host, e.g. http://127.0.0.1:15000
    outbound: str = ""  # its outbound listener as seen from the host (local runtime; compose: "", not published)


@dataclass(frozen=True)
class MeshRecord:
    runtime: str  # "local" or "compose"
    project: str
    compose_file: str
    istio_dir: str
    control_plane: str  # base URL of the control plane as seen from the host
    urls: dict[str, str | None]  # URL_KEYS -> base URL or None
    proxies: tuple[ProxyRecord, ...] = ()
    started_at: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)  # runtime-specific (pids, container ids, ...)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> MeshRecord:
        proxies = tuple(ProxyRecord(**p) for p in data.get("proxies", ()))
        return cls(**{**data, "proxies": proxies})


def read_record(project: Project) -> MeshRecord | None:
    """The running mesh's record, or None when nothing is up (or the record is unreadable)."""
    try:
        return MeshRecord.from_data(json.loads(project.record_file.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def write_record(project: Project, record: MeshRecord) -> None:
    write_atomic(project.record_file, record.to_json())


def remove_record(project: Project) -> None:
    project.record_file.unlink(missing_ok=True)


def write_atomic(path: Path, text: str) -> None:
    """Write beside the target and rename over it, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
