"""The compose project's files and names: which Compose CLI, the rendered files and where they go,
the upstream images, and the component each Compose service is (shared by `up`, `status`,
`logs`, `render` and `inject`)."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from sandbox.mesh.topology import Topology
from sandbox.runtime.base import PROXY_SUFFIX, ComponentKind, RuntimeFailure
from sandbox.runtime.compose_render import Images, Rendered, RenderError, RenderOptions, render
from sandbox.runtime.project import Project, write_atomic

COMPOSE_DIR = "compose"
COMPOSE_FILE = "docker-compose.yaml"
ROLE_KINDS = {
    "controlplane": ComponentKind.CONTROL_PLANE,
    "gateway": ComponentKind.GATEWAY,
    "sidecar": ComponentKind.SIDECAR,
    "app": ComponentKind.APP,
    "plain": ComponentKind.APP,
    "prometheus": ComponentKind.PROMETHEUS,
    "tracing": ComponentKind.TRACING,
    "console": ComponentKind.CONSOLE,
}


def compose_command() -> list[str]:
    """`docker compose` (v2) when the plugin is there, else `docker-compose` (v1)."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True, check=False).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    if legacy:
        return [legacy]
    raise RuntimeFailure("neither `docker compose` (v2) nor `docker-compose` (v1) is installed")


def upstream_images(env: dict[str, str] | None = None) -> Images:
    """Pinned upstream images, each overridable: SANDBOX_PROMETHEUS_IMAGE, SANDBOX_JAEGER_IMAGE."""
    env = dict(os.environ) if env is None else env
    default = Images()
    return Images(
        sandbox=default.sandbox,
        prometheus=env.get("SANDBOX_PROMETHEUS_IMAGE") or default.prometheus,
        jaeger=env.get("SANDBOX_JAEGER_IMAGE") or default.jaeger,
    )


def compose_dir(project: Project) -> Path:
    return project.state_dir / COMPOSE_DIR


def render_project(
    project: Project,
    topology: Topology,
    output_dir: Path | None = None,
    images: Images | None = None,
    tracing: str | None = "jaeger",
    console: bool = False,
    console_host_port: int | None = None,
    console_token: str | None = None,
) -> Rendered:
    """Render the project with real bootstrap tokens (minted from the mesh secret, made if missing)."""
    from sandbox.control.tokens import TokenAuthority
    from sandbox.xds.identity import ProxyIdentity

    authority = TokenAuthority.load_or_create(project.ca_dir)
    options = RenderOptions(
        project.directory,
        project.compose_file,
        project.istio_dir,
        project.ca_dir,
        output_dir or compose_dir(project),
        images or upstream_images(),
        tracing,
        console,
        console_host_port=console_host_port,
        console_token=console_token,
        host_user=f"{os.getuid()}:{os.getgid()}" if hasattr(os, "getuid") else None,
    )
    try:
        source = project.compose_file.read_bytes()
        return render(
            source, topology, options, lambda w: authority.issue(ProxyIdentity(w.name, w.namespace, w.service_account))
        )
    except (OSError, RenderError) as exc:
        raise RuntimeFailure(str(exc)) from None


def write_rendered(rendered: Rendered, directory: Path) -> None:
    """The files, owner-only (the compose file carries bootstrap tokens)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in rendered.files.items():
        write_atomic(directory / name, text)
        (directory / name).chmod(0o600 if name == COMPOSE_FILE else 0o644)


def console_available() -> bool:
    """Whether this version has `sandbox console` (the image carries the same package)."""
    import importlib.util

    return importlib.util.find_spec("sandbox.commands.console") is not None


@dataclass(frozen=True)
class Component:
    name: str  # as base.py names components: <node>, <node>.proxy, controlplane, ...
    kind: ComponentKind
    service: str  # the Compose service


def components(services: dict[str, str]) -> list[Component]:
    """Compose service -> component, for every service that runs until `down` (inits do not)."""
    out = []
    for service, role in services.items():
        if role == "init":
            continue
        name = service.removesuffix("-proxy") + PROXY_SUFFIX if role == "sidecar" else service
        out.append(Component(name, ROLE_KINDS[role], service))
    return out


def compose_env() -> dict[str, str]:
    """Compose v1 gives up on an engine call after 60 s; creating a container under the vfs
    storage driver (a full copy of the image) can take longer on a busy machine."""
    env = dict(os.environ)
    env.setdefault("COMPOSE_HTTP_TIMEOUT", "900")
    env.setdefault("DOCKER_CLIENT_TIMEOUT", "900")
    return env
