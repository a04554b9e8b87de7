"""What the console's browser tests share: headless Chromium (Debian's, driven by Playwright for
Python), screenshots under tests/artifacts/console/, reading the graph and the editor as a person
sees them, and traffic Prometheus has scraped. The fixtures (`browser`, `page`, `signed_in`) are
in conftest.py."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tests.console.conftest import Bookinfo

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "console"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip


def shot(page: Any, name: str) -> None:
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    print(f"screenshot: {path}")


def graph_state(page: Any) -> dict[str, Any]:
    """What the graph shows: node labels, and edge labels by 'source label -> target label'."""
    return dict(
        page.evaluate(
            """() => {
                const cy = window.sandboxGraph.cy;
                const name = (n) => n.data('label').split('\\n').filter((l) => !l.startsWith('[')).join(' ');
                return {
                    nodes: cy.nodes().map(name),
                    edges: Object.fromEntries(
                        cy.edges().map((e) => [name(e.source()) + ' -> ' + name(e.target()), e.data()])),
                    refreshes: window.sandboxGraph.refreshes,
                };
            }"""
        )
    )


def warm(bookinfo: Bookinfo, requests: int = 30) -> None:
    """Traffic Prometheus has scraped twice, so rate() sees it: a sidecar makes a series at its first
    request, so the first calls (until every version of reviews had some) only make the series exist."""
    bookinfo.ensure_series()
    before = bookinfo.scraped_total()
    bookinfo.load(requests)
    bookinfo.wait_scraped(before + requests)
    time.sleep(6)  # each sidecar is scraped on its own schedule: every one of them once more
