"""The meshes the end-to-end modules share: Bookinfo and httpbin, each up once per runtime for the
session (the traffic-management and the security tasks run on the same mesh), rules put back after
each test by the modules' `mesh` fixtures. Each mesh stops right after the last test that uses it,
not at the session's end: on two vCPUs an idle compose mesh (a dozen containers, their health
checks) slows every test after it, and its `down` would count against the session's last test."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Generator, Iterator

import pytest
from mesh_support import RUNTIMES, Mesh, engine_ready, running_mesh

from tests.conftest import require

SHARED = ("bookinfo", "httpbin")
_last_user: dict[tuple[str, str], str] = {}  # (fixture, runtime) -> node id of the last test using it
_stop: dict[tuple[str, str], Callable[[], None]] = {}


@pytest.hookimpl(trylast=True)  # after pytest has ordered the tests by their parameters
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        for name in SHARED:
            if name in params:
                _last_user[(name, params[name])] = item.nodeid


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, None, None]:
    yield
    for key, nodeid in _last_user.items():
        if nodeid == item.nodeid and key in _stop:
            _stop.pop(key)()


def _mesh(sample: str, request: pytest.FixtureRequest, factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    if request.param == "compose":
        require(engine_ready(), "no Docker engine with Compose (run ../shared/docker/ensure-engine)")
    with contextlib.ExitStack() as stack:  # closed by the last test using it, or here at the end
        mesh = stack.enter_context(running_mesh(sample, factory.mktemp("e2e"), request.param))
        _stop[(sample, request.param)] = stack.close
        yield mesh
        _stop.pop((sample, request.param), None)


@pytest.fixture(scope="session", params=RUNTIMES)
def bookinfo(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    yield from _mesh("bookinfo", request, tmp_path_factory)


@pytest.fixture(scope="session", params=RUNTIMES)
def httpbin(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    yield from _mesh("httpbin", request, tmp_path_factory)
