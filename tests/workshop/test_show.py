"""How the workshop shows YAML and finds a step's console page (falling back, never failing)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sandbox.workshop.show import colour_wanted, page_url, yaml_text

YAML = "apiVersion: networking.istio.io/v1\nkind: VirtualService\n"


def serving(pages: set[str]) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # the name http.server dispatches GET to
            path = self.path.split("?")[0]
            self.send_response(200 if path in pages else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def full_console() -> Iterator[str]:
    yield from serving(
        {"/console/overview", "/console/graph/namespaces", "/console/namespaces/default/services/x", "/"}
    )


@pytest.fixture
def overview_only() -> Iterator[str]:
    yield from serving({"/console/overview", "/"})


@pytest.fixture
def root_only() -> Iterator[str]:
    yield from serving({"/"})


def test_the_steps_own_page_with_its_query_and_tab(full_console: str) -> None:
    page = "/console/graph/namespaces?namespaces=default&graphType=versionedApp"
    assert page_url(full_console, page) == (full_console + page, True)
    tab = "/console/namespaces/default/services/x#traces"
    assert page_url(full_console, tab) == (full_console + tab, True)


def test_a_page_the_console_lacks_falls_back_to_the_overview_then_the_root(overview_only: str, root_only: str) -> None:
    page = "/console/namespaces/default/services/x#traces"
    assert page_url(overview_only, page) == (overview_only + "/console/overview", False)
    assert page_url(root_only, page) == (root_only + "/", False)


def test_yaml_in_colour_only_when_asked() -> None:
    assert yaml_text(YAML, colour=False) == YAML
    coloured = yaml_text(YAML, colour=True)
    assert "\x1b[" in coloured and "VirtualService" in coloured


def test_no_colour_in_a_pipe_or_with_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal:
        def isatty(self) -> bool:
            return True

    assert colour_wanted(Terminal())  # type: ignore[arg-type]
    monkeypatch.setenv("NO_COLOR", "1")
    assert not colour_wanted(Terminal())  # type: ignore[arg-type]
