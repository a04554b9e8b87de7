"""The compose runtime's logic that needs no engine: component names, the owner-recreated rule,
image staleness, and what preflight says without an engine."""

from __future__ import annotations

import importlib.machinery
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from sandbox.mesh.topology import parse_compose
from sandbox.proxy import native
from sandbox.runtime import compose as compose_module
from sandbox.runtime import compose_project
from sandbox.runtime.base import ComponentKind, RuntimeFailure
from sandbox.runtime.compose import ComposeRuntime
from sandbox.runtime.compose_project import components, upstream_images
from sandbox.runtime.compose_render import Rendered
from sandbox.runtime.docker_engine import ContainerInfo, EngineUnavailable
from sandbox.runtime.image import ImageSettings, content_hash, requirements, stage_context
from sandbox.runtime.preflight import Inputs
from sandbox.runtime.project import find_project

SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]


def container(service: str, ident: str, started: str, network_mode: str = "") -> ContainerInfo:
    return ContainerInfo(ident, f"p_{service}_1", service, "running", None, 0, 0, started, network_mode)


@dataclass
class FakeEngine:
    """The part of Engine the runtime reads: the project's containers, and which ports listen in
    which container's network namespace."""

    found: list[ContainerInfo] = field(default_factory=list)
    listening: set[tuple[str, int]] = field(default_factory=set)
    asked: list[tuple[str, int]] = field(default_factory=list)

    def containers(self, project: str) -> list[ContainerInfo]:
        return list(self.found)

    def accepts(self, ident: str, port: int) -> bool:
        self.asked.append((ident, port))
        return (ident, port) in self.listening


def test_an_app_is_ready_only_once_its_port_accepts_in_its_sidecars_namespace() -> None:
    rendered = Rendered(
        {}, {"web-proxy": "sidecar", "web": "app"}, {"web": "web-proxy"}, {"web": "web-proxy"}, {"web": 8000}
    )
    engine = FakeEngine(found=[container("web-proxy", "s1", "t0"), container("web", "a1", "t0")])
    listening: set[str] = set()

    def app_ready() -> bool:
        containers = {c.service: c for c in engine.containers("p")}
        ComposeRuntime._await_apps(engine, rendered, containers, listening)  # type: ignore[arg-type]
        return containers["web"].ready

    assert not app_ready()  # running, but still importing its code: the ingress would answer 503
    engine.listening.add(("s1", 8000))
    assert app_ready()
    asked = len(engine.asked)
    assert app_ready() and len(engine.asked) == asked  # once listening, the engine is not asked again


def test_components_are_named_as_both_runtimes_name_them() -> None:
    services = {"controlplane": "controlplane", "web-proxy": "sidecar", "web-init": "init", "web": "app"}
    found = {c.name: (c.kind, c.service) for c in components(services)}
    assert found == {
        "controlplane": (ComponentKind.CONTROL_PLANE, "controlplane"),
        "web.proxy": (ComponentKind.SIDECAR, "web-proxy"),
        "web": (ComponentKind.APP, "web"),
    }


@pytest.mark.parametrize(
    ("app_mode", "app_started", "recreated"),
    [
        ("container:side2", "2026-01-01T10:00:02.5Z", False),  # joined to the current sidecar, started after it
        ("container:side1", "2026-01-01T10:00:02.5Z", True),  # joined to a sidecar container that is gone
        ("container:side2", "2026-01-01T10:00:00.123456789Z", True),  # the sidecar restarted under it
    ],
)
def test_an_app_whose_sidecar_changed_under_it_is_recreated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, app_mode: str, app_started: str, recreated: bool
) -> None:
    (tmp_path / "compose.yaml").write_text("services: {}\n")
    project = find_project(tmp_path / "compose.yaml")
    engine = FakeEngine(
        [container("web-proxy", "side2", "2026-01-01T10:00:01.25Z"), container("web", "app1", app_started, app_mode)]
    )
    runtime = ComposeRuntime(command=["docker-compose"])
    ran: list[list[str]] = []
    monkeypatch.setattr(runtime, "_run", lambda _project, args, timeout=0: ran.append(args))
    rendered = Rendered({}, {"web-proxy": "sidecar", "web": "app"}, {"web": "web-proxy"}, {"web": "web-proxy"})
    stale = runtime._rejoin(project, engine, rendered)  # type: ignore[arg-type]
    assert stale == (["web"] if recreated else [])
    assert ran == ([["up", "-d", "--no-deps", "--force-recreate", "web"]] if recreated else [])


def test_preflight_without_an_engine_names_the_way_out(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text("services: {}\n")
    project = find_project(tmp_path / "compose.yaml")

    def no_engine() -> Any:
        raise EngineUnavailable("no Docker engine answers (connection refused)")

    topology = parse_compose("services: {}\n", "compose.yaml")
    inputs = Inputs(topology, None, None, ())  # type: ignore[arg-type]
    found = ComposeRuntime(connect=no_engine).preflight(project, inputs)
    assert [d.code for d in found] == ["SBX506"]
    assert "--runtime local" in found[0].message


def test_compose_v1_is_the_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compose_project.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(
        compose_project.subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 1, b"", b"unknown command")
    )
    assert compose_project.compose_command() == ["/usr/bin/docker-compose"]
    monkeypatch.setattr(compose_project.subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 0, b"", b""))
    assert compose_project.compose_command() == ["/usr/bin/docker", "compose"]


def test_upstream_images_are_pinned_and_overridable() -> None:
    default = upstream_images({})
    assert default.prometheus and ":" in default.prometheus and not default.prometheus.endswith(":latest")
    assert upstream_images({"SANDBOX_JAEGER_IMAGE": "jaeger:mine"}).jaeger == "jaeger:mine"


def checkout(root: Path) -> Path:
    (root / "compose").mkdir(parents=True)
    for script in ("Dockerfile", "install.sh", "probe"):
        (root / "compose" / script).write_text(f"# {script}\n")
    (root / "sandbox" / "__pycache__").mkdir(parents=True)
    (root / "sandbox" / "cli.py").write_text("print('hi')\n")
    (root / "sandbox" / "__pycache__" / "cli.cpython-311.pyc").write_bytes(b"\0")
    (root / "pyproject.toml").write_text('[project]\nname = "sandbox"\ndependencies = ["aiohttp>=3.9", "typer"]\n')
    return root


def test_the_image_is_stale_exactly_when_what_goes_into_it_changes(tmp_path: Path) -> None:
    root = checkout(tmp_path)
    first = content_hash(root, True, "sandbox-base:offline", "sha256:1")
    (root / "sandbox" / "__pycache__" / "cli.cpython-311.pyc").write_bytes(b"\1")
    assert content_hash(root, True, "sandbox-base:offline", "sha256:1") == first  # bytecode is not source
    assert content_hash(root, True, "sandbox-base:offline", "sha256:2") != first  # a rebuilt base image
    assert content_hash(root, False, "sandbox-base:offline", "sha256:1") != first
    (root / "sandbox" / "cli.py").write_text("print('bye')\n")
    assert content_hash(root, True, "sandbox-base:offline", "sha256:1") != first


def test_the_build_context_holds_only_what_the_dockerfile_copies(tmp_path: Path) -> None:
    root = checkout(tmp_path / "repo")
    context = stage_context(root, tmp_path / "context")
    names = sorted(p.relative_to(context).as_posix() for p in context.rglob("*"))
    assert names == [
        "Dockerfile", "install.sh", "native", "probe", "requirements.txt", "samples", "sandbox", "sandbox/cli.py"
    ]  # fmt: skip
    assert (context / "requirements.txt").read_text().splitlines() == requirements(root) == ["aiohttp>=3.9", "typer"]


def compile_data_path(root: Path) -> Path:
    """What `pip install -e .` leaves in a checkout: an extension beside each data-path module, the
    stamp, and mypyc's shared library at the top level."""
    proxy = root / "sandbox" / "proxy"
    proxy.mkdir(parents=True, exist_ok=True)
    for name in native.COMPILED:
        shutil.copy(native.HERE / f"{name}.py", proxy / f"{name}.py")
        (proxy / f"{name}{SUFFIX}").write_bytes(name.encode())
    (proxy / native.STAMP).write_text(f"{native.source_digest(proxy)}\n0123abcd__mypyc\n")
    (root / f"fedc9876__mypyc{SUFFIX}").write_bytes(b"an earlier build's library, no longer used")
    library = root / f"0123abcd__mypyc{SUFFIX}"
    library.write_bytes(b"the group")
    return library


def test_the_hosts_compiled_data_path_goes_into_the_image_while_it_matches_the_source(tmp_path: Path) -> None:
    root = checkout(tmp_path / "repo")
    plain = content_hash(root, True, "sandbox-base:offline", "sha256:1")
    library = compile_data_path(root)
    compiled = content_hash(root, True, "sandbox-base:offline", "sha256:1")
    assert compiled != plain
    context = stage_context(root, tmp_path / "context")
    assert [p.name for p in (context / "native").iterdir()] == [library.name]
    assert (context / "native" / library.name).read_bytes() == b"the group"
    assert (context / "sandbox" / "proxy" / native.STAMP).is_file()
    assert {p.name for p in (context / "sandbox" / "proxy").glob(f"*{SUFFIX}")} == {
        f"{name}{SUFFIX}" for name in native.COMPILED
    }
    library.write_bytes(b"rebuilt")
    assert content_hash(root, True, "sandbox-base:offline", "sha256:1") != compiled
    with (root / "sandbox" / "proxy" / "forwarder.py").open("a") as f:
        f.write("# edited since the build: the extensions no longer match, and stay out\n")
    context = stage_context(root, tmp_path / "context")
    assert not any(context.rglob(f"*{SUFFIX}")) and not (context / "sandbox" / "proxy" / native.STAMP).exists()


def test_an_unknown_build_mode_is_refused() -> None:
    with pytest.raises(RuntimeFailure, match="SANDBOX_IMAGE_BUILD"):
        ImageSettings.from_env({"SANDBOX_IMAGE_BUILD": "sometimes"})
    assert ImageSettings.from_env({"SANDBOX_IMAGE_BUILD": "offline"}).build_mode == "offline"


@dataclass
class ImagesOnEngine:
    """The part of Engine `_plan_services` reads: which images the engine has."""

    present: set[str]

    def image_id(self, reference: str) -> str | None:
        return f"sha256:{reference}" if reference in self.present else None


@pytest.mark.parametrize(
    ("offline_base", "present", "console", "prometheus", "tracing"),
    [
        (None, set(), True, "prom/prometheus:v2.53.0", "jaeger"),  # online: Compose pulls the pinned images
        ("base:offline", set(), True, "base:offline", "console"),  # offline: the base's Prometheus, console spans
        ("base:offline", set(), False, "base:offline", None),  # ... and no tracing without a console
        ("base:offline", {"prom/prometheus:v2.53.0", "jaegertracing/all-in-one:1.57"}, True, None, "jaeger"),
    ],
)
def test_offline_the_upstream_images_fall_back_to_what_the_engine_has(
    monkeypatch: pytest.MonkeyPatch,
    offline_base: str | None,
    present: set[str],
    console: bool,
    prometheus: str | None,
    tracing: str | None,
) -> None:
    from sandbox.runtime.base import RecordingProgress

    monkeypatch.setattr(compose_module, "console_available", lambda: console)
    progress = RecordingProgress()
    images, chosen = ComposeRuntime()._plan_services(
        ImagesOnEngine(present),  # type: ignore[arg-type]
        upstream_images({}),
        offline_base,
        progress,
    )
    assert chosen == tracing
    assert images.prometheus == (prometheus or "prom/prometheus:v2.53.0")
    assert images.debian_prometheus == (prometheus == "base:offline")
    assert bool(progress.warnings) == (tracing is None)  # tracing off is said, never silent
