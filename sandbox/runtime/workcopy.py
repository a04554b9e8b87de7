"""A private working copy of a project: the same mesh, run from another directory, so its state
(`.sandbox/`), its Istio directory (which `apply` edits) and its ingress port are its own.

The pytest fixture runs each mesh from such a copy: a test session never edits the project's own
`istio/`, never meets a mesh the developer left running, and two sessions (or two meshes of one
session) never share a port or a Compose project name. The copy is an ordinary project: every
`sandbox` verb works on it with `-f COPY/compose.yaml`.

- local runtime: only the compose file is written, with each workload's `x-sandbox.local.command`
  paths and working directory made absolute (the apps run from the project, as they would);
- compose runtime: the compose file's directory is copied (containers mount it, and a bind mount
  cannot follow a symlink out of the directory), without state, caches and VCS data;
- both: the Istio directory is copied to `istio/`, and `x-sandbox.ingress.port` is set.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from sandbox.mesh.yamlsrc import dump_yaml, parse_documents
from sandbox.runtime.project import STATE_DIR, Project

COMPOSE_FILE = "compose.yaml"
NOT_COPIED = (STATE_DIR, ".git", ".hg", ".venv", "venv", "node_modules", "__pycache__", ".pytest_cache", ".mypy_cache")


class CopyFailed(Exception):
    """The project cannot be copied (the message says which file and why)."""


def work_copy(compose_file: Path, istio_dir: Path, into: Path, runtime: str, ingress_port: int) -> Project:
    """Write the copy into `into` (created; must be empty or missing) and return its project."""
    compose_file, istio_dir = compose_file.resolve(), istio_dir.resolve()
    source = compose_file.parent
    try:
        documents, problems = parse_documents(compose_file.read_bytes(), str(compose_file))
    except OSError as exc:
        raise CopyFailed(f"cannot read {compose_file}: {exc.strerror or exc}") from None
    if problems or not documents or not isinstance(documents[0].data, dict):
        raise CopyFailed(f"{compose_file} is not a compose file (run `sandbox up` on it to see why)")
    data: dict[str, Any] = documents[0].data
    if runtime == "compose":
        shutil.copytree(source, into, ignore=shutil.ignore_patterns(*NOT_COPIED), symlinks=True)
        (into / compose_file.name).unlink(missing_ok=True)
        if (into / "istio").exists():
            shutil.rmtree(into / "istio")
    else:
        into.mkdir(parents=True, exist_ok=True)
        data = absolute_local_paths(data, source)
    settings = _mapping(data.get("x-sandbox"))
    data["x-sandbox"] = {**settings, "ingress": {**_mapping(settings.get("ingress")), "port": ingress_port}}
    target = into / COMPOSE_FILE
    header = f"# A working copy of {compose_file} (sandbox.runtime.workcopy): edit that file, not this one.\n"
    target.write_text(header + dump_yaml(data))
    if istio_dir.is_dir():
        shutil.copytree(istio_dir, into / "istio", ignore=shutil.ignore_patterns(STATE_DIR, "__pycache__"))
    else:
        (into / "istio").mkdir()
    return Project(target.resolve(), (into / "istio").resolve())


def absolute_local_paths(data: dict[str, Any], directory: Path) -> dict[str, Any]:
    """The compose data with what the local runtime resolves against the compose file's directory
    made absolute: each `x-sandbox.local.command` word naming a file there, and the working
    directory (`local.cwd`, default the directory itself). Pure, but for checking which words exist."""
    services = data.get("services")
    if not isinstance(services, dict):
        return data
    out = dict(data)
    out["services"] = {name: _service(spec, directory) for name, spec in services.items()}
    return out


def _mapping(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, dict) else {}


def _service(spec: Any, directory: Path) -> Any:
    extension = _mapping(spec.get("x-sandbox") if isinstance(spec, dict) else None)
    if not isinstance(extension.get("local"), dict):
        return spec
    local = _mapping(extension["local"])
    cwd = local.get("cwd")
    local["cwd"] = str((directory / cwd).resolve()) if isinstance(cwd, str) and cwd else str(directory)
    command = local.get("command")
    if isinstance(command, list):
        local["command"] = [_absolute(word, directory) for word in command]
    return {**spec, "x-sandbox": {**extension, "local": local}}


def _absolute(word: Any, directory: Path) -> Any:
    """localplan.app_command's rule: a relative path that names a file there becomes absolute."""
    if not isinstance(word, str) or not word or word.startswith("-") or Path(word).is_absolute():
        return word
    return str((directory / word).resolve()) if (directory / word).exists() else word
