"""The Docker engine as the compose runtime sees it: the only module that imports `docker` (the SDK).

Compose itself is driven through its CLI (runtime/compose.py); the SDK answers the questions the
CLI answers badly or differently between Compose v1 and v2: is an engine there (`--runtime
auto`), does an image exist, which containers and networks carry a project's label, their health,
the host port an ephemeral publish got, and log streams.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import suppress as _suppress
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sandbox.runtime.base import RuntimeFailure

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
OPERATION_TIMEOUT = 900
EPOCH = datetime.fromisoformat("1970-01-01T00:00:00+00:00")


class EngineUnavailable(RuntimeFailure):
    """No Docker engine answers (the message says what was tried)."""


@dataclass(frozen=True)
class ContainerInfo:
    id: str
    name: str
    service: str  # the Compose service (label), "" for containers Compose did not create
    state: str  # created, running, restarting, exited, ...
    health: str | None  # healthy, unhealthy, starting, or None without a healthcheck
    exit_code: int
    restart_count: int
    started_at: str
    network_mode: str = ""  # "container:<id>" for a container joined to another's network namespace
    ports: dict[str, int] = field(default_factory=dict)  # "15000/tcp" -> host port (127.0.0.1 publishes)
    labels: dict[str, str] = field(default_factory=dict)
    ips: dict[str, str] = field(default_factory=dict)  # network name -> the container's IPv4 address on it

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def ready(self) -> bool:
        """Running, and healthy when it has a healthcheck."""
        return self.running and self.health in (None, "healthy")


def engine_available(timeout: float = 2.0) -> bool:
    """Whether an engine answers a ping (what `--runtime auto` asks)."""
    try:
        Engine.connect(timeout)
    except EngineUnavailable:
        return False
    return True


class Engine:
    def __init__(self, client: Any) -> None:
        self._client = client

    @classmethod
    def connect(cls, timeout: float = 5.0) -> Engine:
        try:
            import docker
            import docker.errors

            probe = docker.from_env(timeout=max(1, round(timeout)))
            try:
                probe.ping()
            finally:
                probe.close()
            # Removing a container copies nothing but deletes a whole image copy under vfs: slow.
            client = docker.from_env(timeout=OPERATION_TIMEOUT)
        except ImportError:
            raise EngineUnavailable("the docker Python package is not installed") from None
        except Exception as exc:  # the SDK raises DockerException, requests' and socket errors
            raise EngineUnavailable(f"no Docker engine answers ({_short(exc)})") from None
        return cls(client)

    def close(self) -> None:
        self._client.close()

    def image_id(self, reference: str) -> str | None:
        import docker.errors

        try:
            return str(self._client.images.get(reference).id)
        except docker.errors.ImageNotFound:
            return None
        except docker.errors.APIError as exc:
            raise RuntimeFailure(f"cannot inspect image {reference}: {_short(exc)}") from None

    def image_labels(self, reference: str) -> dict[str, str]:
        import docker.errors

        try:
            return dict(self._client.images.get(reference).labels or {})
        except docker.errors.ImageNotFound:
            return {}

    def image_created(self, reference: str) -> datetime | None:
        import docker.errors

        try:
            return parse_time(str(self._client.images.get(reference).attrs.get("Created", "")))
        except docker.errors.ImageNotFound:
            return None

    def image_tags(self, repository: str) -> list[str]:
        return sorted(t for image in self._client.images.list(name=repository) for t in image.tags)

    def remove_image(self, reference: str) -> bool:
        """Untag/remove an image; False when the engine refuses (a container still uses it)."""
        import docker.errors

        try:
            self._client.images.remove(reference, noprune=False)
        except docker.errors.APIError:
            return False
        return True

    def tag(self, source: str, target: str) -> None:
        repository, _, tag = target.rpartition(":")
        self._client.images.get(source).tag(repository, tag)

    def containers(self, project: str) -> list[ContainerInfo]:
        """Every container of a Compose project (stopped ones too), by service name then name."""
        found = self._client.containers.list(all=True, filters={"label": f"{PROJECT_LABEL}={project}"})
        return sorted((_info(c.attrs) for c in found), key=lambda c: (c.service, c.name))

    def container(self, ident: str) -> ContainerInfo | None:
        import docker.errors

        try:
            return _info(self._client.containers.get(ident).attrs)
        except docker.errors.NotFound:
            return None

    def accepts(self, ident: str, port: int) -> bool:
        """Whether something listens on 127.0.0.1:`port` in the container's network namespace,
        asked from inside that container (bash's /dev/tcp: the sandbox image has bash)."""
        import docker.errors

        try:
            result = self._client.containers.get(ident).exec_run(
                ["bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{int(port)}"], stdout=False, stderr=False
            )
        except docker.errors.APIError:
            return False
        return bool(result.exit_code == 0)

    def remove_container(self, ident: str) -> None:
        import docker.errors

        with _suppress(docker.errors.NotFound):
            self._client.containers.get(ident).remove(force=True, v=True)

    def remove_network(self, name: str) -> None:
        import docker.errors

        with _suppress(docker.errors.NotFound):
            self._client.networks.get(name).remove()

    def networks(self, project: str) -> list[str]:
        return sorted(n.name for n in self._client.networks.list(filters={"label": f"{PROJECT_LABEL}={project}"}))

    def logs(self, ident: str, follow: bool = False, tail: int | None = None) -> Iterator[str]:
        """A container's stdout+stderr as text lines (no newline); follows until it stops."""
        import docker.errors

        try:
            container = self._client.containers.get(ident)
            stream = container.logs(stream=True, follow=follow, tail="all" if tail is None else tail)
        except docker.errors.NotFound:
            return
        pending = b""
        for chunk in stream:
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                yield line.decode("utf-8", "replace").rstrip("\r")
        if pending:
            yield pending.decode("utf-8", "replace")


def _info(attrs: dict[str, Any]) -> ContainerInfo:
    state = attrs.get("State") or {}
    labels = (attrs.get("Config") or {}).get("Labels") or {}
    health = (state.get("Health") or {}).get("Status")
    ports: dict[str, int] = {}
    networks = (attrs.get("NetworkSettings") or {}).get("Networks") or {}
    ips = {str(name): str(n.get("IPAddress")) for name, n in networks.items() if (n or {}).get("IPAddress")}
    for key, bindings in ((attrs.get("NetworkSettings") or {}).get("Ports") or {}).items():
        for binding in bindings or ():
            if binding.get("HostPort", "").isdigit():
                ports.setdefault(key, int(binding["HostPort"]))
    return ContainerInfo(
        id=str(attrs.get("Id", "")),
        name=str(attrs.get("Name", "")).lstrip("/"),
        service=str(labels.get(SERVICE_LABEL, "")),
        state=str(state.get("Status", "unknown")),
        health=str(health) if health else None,
        exit_code=int(state.get("ExitCode") or 0),
        restart_count=int(attrs.get("RestartCount") or 0),
        started_at=str(state.get("StartedAt", "")),
        network_mode=str((attrs.get("HostConfig") or {}).get("NetworkMode") or ""),
        ports=ports,
        labels={str(k): str(v) for k, v in labels.items()},
        ips=ips,
    )


def parse_time(text: str) -> datetime:
    """Docker's RFC 3339 timestamps with nanoseconds (Python reads microseconds); epoch if unreadable."""
    head, _, rest = text.partition(".")
    fraction = "".join(ch for ch in rest if ch.isdigit())[:6].ljust(6, "0")
    try:
        return datetime.fromisoformat(f"{head.removesuffix('Z')}.{fraction}+00:00")
    except ValueError:
        return EPOCH


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
