"""How the workshop shows things: YAML with syntax colour (Pygments, when the output is a
terminal and NO_COLOR is unset), text wrapped for a projector, and the console page of a step.

Console pages follow the console's URL convention (Kiali's routes under /console). A page the
console does not serve yet (404) falls back to the overview, and that to the console's root, so a
step never fails for a missing page. Pages open in the browser (webbrowser, which honours
BROWSER) only when asked to: never in `--auto` or with `--no-open`.
"""

from __future__ import annotations

import os
import sys
import textwrap
import urllib.error
import urllib.request
from typing import TextIO

OVERVIEW = "/console/overview"
WIDTH = 100


def colour_wanted(stream: TextIO = sys.stdout) -> bool:
    return "NO_COLOR" not in os.environ and hasattr(stream, "isatty") and stream.isatty()


def yaml_text(text: str, colour: bool) -> str:
    """The YAML as it will be applied, coloured for a terminal when `colour`."""
    if not colour:
        return text
    from pygments import highlight
    from pygments.formatters import TerminalFormatter
    from pygments.lexers import YamlLexer

    return str(highlight(text, YamlLexer(), TerminalFormatter()))


def bold(text: str, colour: bool) -> str:
    return f"\033[1m{text}\033[0m" if colour else text


def wrapped(text: str, indent: str = "  ") -> str:
    return textwrap.fill(text, WIDTH, initial_indent=indent, subsequent_indent=indent)


def page_url(console: str, page: str) -> tuple[str, bool]:
    """(the URL to open, whether it is the step's own page): the page, else the overview, else
    the console's root, whichever answers first with anything but 404."""
    base = console.rstrip("/")
    path, _, fragment = page.partition("#")
    for candidate in (path, OVERVIEW, "/"):
        status = _status(base + candidate)
        if status is not None and status != 404:
            own = candidate == path
            return base + candidate + (f"#{fragment}" if fragment and own else ""), own
    return base + "/", False


def _status(url: str) -> int | None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=5) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return None


def open_page(url: str) -> bool:
    import webbrowser

    try:
        return webbrowser.open(url)
    except webbrowser.Error:
        return False
