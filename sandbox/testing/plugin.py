"""The pytest plugin, registered through the `pytest11` entry point: installing sandbox is enough.

Fixtures:
    mesh          a running mesh of the configured compose file and Istio directory (scope:
                  session unless --sandbox-scope / sandbox_scope says otherwise)
    mesh_factory  starts meshes for other scopes or other projects: `with mesh_factory() as mesh:`
                  (or `mesh_factory(compose="other/compose.yaml", prometheus=True)`)

Options (command line) and ini keys, the command line winning:
    --sandbox-compose FILE     sandbox_compose     the compose file (default: compose.yaml from the rootdir up)
    --sandbox-istio DIR        sandbox_istio       the Istio directory (default: istio/ beside the compose file)
    --sandbox-runtime NAME     sandbox_runtime     local (default) or compose
    --sandbox-scope SCOPE      sandbox_scope       the `mesh` fixture's scope (default: session)
    --sandbox-prometheus       sandbox_prometheus  also run Prometheus (for mesh.metrics)
    --sandbox-console          sandbox_console     also run the console (for mesh.traces)
    --sandbox-timeout SECONDS  sandbox_timeout     for the mesh to become ready (default 60)
Paths in ini keys are relative to the ini file, on the command line to the current directory.

Start-up: on the local runtime a mesh of three workloads starts and stops in well under a second
after the session's first (which also starts the supervisor server, ~1.5 s more); the README's
Performance table has the measured figures (benchmarks/fixture_bench.py). A function-scoped mesh
is affordable; a session-scoped one with `mesh.reset()` (or the fault and route blocks, which put
the rules back themselves) is faster still.

When a test fails, its report gets a section with the access log lines each sidecar wrote during
the test and `proxy-status`. A session that never asks for these fixtures pays nothing: this module
imports only pytest, and every hook returns at once when no mesh was started.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from sandbox.testing.lifecycle import Launcher, MeshConfig
    from sandbox.testing.mesh import Mesh

SCOPES = ("session", "package", "module", "class", "function")
RUNTIMES = ("local", "compose")
_LAUNCHER = pytest.StashKey["Launcher"]()
_STARTED = pytest.StashKey[float]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("sandbox", "sandbox: a service mesh for the tests (the mesh fixture)")
    group.addoption("--sandbox-compose", metavar="FILE", help="compose file of the mesh fixture")
    group.addoption("--sandbox-istio", metavar="DIR", help="Istio directory (default: istio/ beside the file)")
    group.addoption("--sandbox-runtime", choices=RUNTIMES, help="local (default) or compose")
    group.addoption("--sandbox-scope", choices=SCOPES, help="scope of the mesh fixture (default: session)")
    group.addoption("--sandbox-prometheus", action="store_true", default=None, help="also run Prometheus")
    group.addoption("--sandbox-console", action="store_true", default=None, help="also run the console (traces)")
    group.addoption("--sandbox-timeout", type=float, metavar="SECONDS", help="for the mesh to become ready")
    parser.addini("sandbox_compose", "compose file of the mesh fixture (relative to the ini file)")
    parser.addini("sandbox_istio", "Istio directory of the mesh fixture (default: istio/ beside the compose file)")
    parser.addini("sandbox_runtime", "local (default) or compose", default="local")
    parser.addini("sandbox_scope", "scope of the mesh fixture (default: session)", default="session")
    parser.addini("sandbox_prometheus", "also run Prometheus", type="bool", default=False)
    parser.addini("sandbox_console", "also run the console (it collects traces)", type="bool", default=False)
    parser.addini("sandbox_timeout", "seconds for the mesh to become ready", default="60")


def _setting(config: pytest.Config, name: str) -> Any:
    value = config.getoption(f"sandbox_{name}")
    return value if value is not None else config.getini(f"sandbox_{name}")


def _path(config: pytest.Config, name: str) -> Path | None:
    option = config.getoption(f"sandbox_{name}")
    if option:
        return Path(config.invocation_params.dir, option)
    ini = config.getini(f"sandbox_{name}")
    if ini:
        base = config.inipath.parent if config.inipath is not None else config.rootpath
        return Path(base, str(ini))
    return None


def mesh_scope(fixture_name: str, config: pytest.Config) -> Any:
    scope = str(_setting(config, "scope"))
    if scope not in SCOPES:
        raise pytest.UsageError(f"sandbox_scope must be one of {', '.join(SCOPES)}, not {scope!r}")
    return scope


def configured(config: pytest.Config) -> MeshConfig:
    from sandbox.runtime.project import ProjectNotFound, find_project
    from sandbox.testing.lifecycle import MeshConfig

    compose = _path(config, "compose")
    if compose is None:
        try:
            compose = find_project(cwd=config.rootpath).compose_file
        except ProjectNotFound:
            compose = config.rootpath / "compose.yaml"  # the fixture says it is missing, with what to set
    runtime = str(_setting(config, "runtime"))
    if runtime not in RUNTIMES:
        raise pytest.UsageError(f"sandbox_runtime must be local or compose, not {runtime!r}")
    raw = _setting(config, "timeout")
    try:
        timeout = float(raw)
    except ValueError:
        raise pytest.UsageError(f"sandbox_timeout must be a number of seconds, not {raw!r}") from None
    return MeshConfig(
        compose,
        _path(config, "istio"),
        runtime,
        bool(_setting(config, "prometheus")),
        bool(_setting(config, "console")),
        timeout,
    )


class MeshFactory:
    """Starts meshes: `mesh_factory()` for the configured project, or with any MeshConfig field
    changed; each is a context manager that stops it. What is left is stopped at the session's end."""

    def __init__(self, defaults: MeshConfig, launcher: Launcher, rootdir: Path) -> None:
        self.defaults = defaults
        self.launcher = launcher
        self.rootdir = rootdir

    def __call__(self, compose: str | Path | None = None, istio: str | Path | None = None, **changes: Any) -> Mesh:
        """Paths relative to the rootdir; another compose file brings its own istio/ unless `istio` is given."""
        config = self.defaults.but(**changes)
        if compose is not None:
            config = replace(config, compose=self.rootdir / compose, istio=self.rootdir / istio if istio else None)
        elif istio is not None:
            config = replace(config, istio=self.rootdir / istio)
        return self.launcher.start(config)


@pytest.fixture(scope="session")
def mesh_factory(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshFactory]:
    from sandbox.testing.lifecycle import Launcher

    config = request.config
    launcher = Launcher(tmp_path_factory.mktemp("sandbox-meshes", numbered=True))
    config.stash[_LAUNCHER] = launcher
    try:
        yield MeshFactory(configured(config), launcher, config.rootpath)
    finally:
        del config.stash[_LAUNCHER]
        launcher.close()


@pytest.fixture(scope=mesh_scope)
def mesh(mesh_factory: MeshFactory) -> Iterator[Mesh]:
    from sandbox.testing.errors import MeshError

    try:
        started = mesh_factory()
    except MeshError as exc:
        pytest.fail(f"sandbox: {exc}", pytrace=False)
    with started:
        yield started


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> None:
    if _LAUNCHER in item.config.stash:
        item.stash[_STARTED] = time.time()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    launcher = item.config.stash.get(_LAUNCHER, None)
    if launcher is None or call.when != "call" or not report.failed or _STARTED not in item.stash:
        return report
    from sandbox.testing.report import failure_section

    for running in list(launcher.running):
        report.sections.append(("sandbox mesh", failure_section(running, item.stash[_STARTED], call.stop)))
    return report
