"""The console's access token: what lets a browser change the mesh through the console.

One per mesh, made by `sandbox up` beside the mesh secret (`.sandbox/state/console-token`, 0600)
and handed to the console process in its environment (SANDBOX_CONSOLE_TOKEN), never on a command
line or in a URL that a log keeps. The CLI puts it in the console URL it prints and opens
(`status -o json`'s `urls.console`, `sandbox dashboard`); the console trades it for a cookie and
asks for it (cookie or `Authorization: Bearer`) on every request that writes.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from urllib.parse import urlencode

from sandbox.control.ca import ensure_private_dir, write_private
from sandbox.runtime.project import Project

TOKEN_FILE = "console-token"
TOKEN_ENV = "SANDBOX_CONSOLE_TOKEN"
HOME = "/console/overview"


def token_path(project: Project) -> Path:
    return project.ca_dir / TOKEN_FILE


def ensure(project: Project) -> str:
    """The mesh's console token, made (owner-only) the first time a mesh of this project starts."""
    path = ensure_private_dir(project.ca_dir) / TOKEN_FILE
    token = read(project)
    if token is None:
        token = secrets.token_urlsafe(24)
        write_private(path, token.encode())
    return token


def read(project: Project) -> str | None:
    try:
        token = token_path(project).read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return token or None


def console_url(base: str | None, token: str | None, path: str = HOME) -> str | None:
    """The URL a person opens: a console page with the token (the console swaps it for a cookie
    and drops it from the address bar)."""
    if not base:
        return None
    url = base.rstrip("/") + path
    return f"{url}?{urlencode({'token': token})}" if token else url
