"""A small blocking JSON client for the control plane's API and the sidecars' admin endpoints.

The CLI makes a handful of requests, so the standard library is enough (and keeps `sandbox`
quick to start); every failure becomes `Unreachable` with a message a person can act on.
"""

from __future__ import annotations

import contextlib
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

TIMEOUT = 5.0


class Unreachable(Exception):
    """The endpoint did not answer, or answered with an error (the message says which)."""


def get_json(base: str, path: str, params: dict[str, str] | None = None, timeout: float = TIMEOUT) -> Any:
    query = {k: v for k, v in (params or {}).items() if v}
    url = base.rstrip("/") + path + (f"?{urllib.parse.urlencode(query)}" if query else "")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        detail = ""
        with contextlib.suppress(ValueError, AttributeError, OSError):
            detail = json.loads(exc.read()).get("error", "")
        raise Unreachable(f"{url}: HTTP {exc.code}{': ' + detail if detail else ''}") from None
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise Unreachable(f"cannot reach {base}: {reason}") from None
    except ValueError as exc:
        raise Unreachable(f"{url}: not JSON ({exc})") from None
