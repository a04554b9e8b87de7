"""Traffic for the workshop's steps, as a reader and a load generator make it: Bookinfo's product
page through the ingress (signed in or not), what its reviews show, and bounded loads
(sandbox.load, what `sandbox load` runs)."""

from __future__ import annotations

import asyncio
import http.cookiejar
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from dataclasses import dataclass
from typing import Any

REVIEWS_ERROR = "Sorry, product reviews are currently unavailable for this book."
DETAILS_ERROR = "Sorry, product details are currently unavailable for this book."
RATINGS_ERROR = "Ratings service is currently unavailable"
STARS = re.compile(r'<font color="(\w+)">')


def reviews_shown(html: str) -> str:
    """What the page's reviews show: none (v1), black (v2), red (v3), ratings-error or reviews-error."""
    if REVIEWS_ERROR in html:
        return "reviews-error"
    if RATINGS_ERROR in html:
        return "ratings-error"
    colors = set(STARS.findall(html))
    return colors.pop() if len(colors) == 1 else ("none" if not colors else "mixed")


@dataclass(frozen=True)
class Page:
    status: int
    html: str
    elapsed: float

    @property
    def shown(self) -> str:
        return reviews_shown(self.html)


class Reader:
    """Someone reading the product page, with the session cookie productpage sets at sign-in."""

    def __init__(self, base: str, user: str | None = None, timeout: float = 20.0) -> None:
        self.base = base.rstrip("/")
        self.timeout = timeout
        jar = urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), jar, _NoRedirect())
        if user is not None:
            self.sign_in(user)

    def sign_in(self, user: str) -> None:
        form = urllib.parse.urlencode({"username": user, "passwd": "password"}).encode()
        try:
            self.opener.open(urllib.request.Request(f"{self.base}/login", data=form), timeout=self.timeout)
        except urllib.error.HTTPError as exc:  # the 302 back to the page carries the cookie
            if exc.code != 302:
                raise

    def page(self, path: str = "/productpage") -> Page:
        began = time.monotonic()
        try:
            with self.opener.open(self.base + path, timeout=self.timeout) as answer:
                status, body = answer.status, answer.read()
        except urllib.error.HTTPError as exc:
            status, body = exc.code, exc.read()
        return Page(status, body.decode("utf-8", "replace"), time.monotonic() - began)

    def pages(self, count: int) -> tuple[Counter[str], list[Page]]:
        loaded = [self.page() for _ in range(count)]
        return Counter(p.shown if p.status == 200 else f"HTTP {p.status}" for p in loaded), loaded


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def shares(seen: Counter[str]) -> str:
    """`none 78, black 22` in the order of the counts."""
    return ", ".join(f"{k} {v}" for k, v in seen.most_common()) or "nothing"


def load(url: str, calls: int, connections: int = 1) -> dict[str, int]:
    """`sandbox load URL -c N -n CALLS --qps 0`: status code -> count ("-1" for a failed call)."""
    from sandbox.load.plan import LoadPlan
    from sandbox.load.report import to_json
    from sandbox.load.runner import run

    plan = LoadPlan(url, connections=connections, qps=0.0, requests=calls)
    result = to_json(asyncio.run(run(plan)))
    return {str(code): int(n) for code, n in result["RetCodes"].items()}
