"""A whole mesh for end-to-end tests: a sample copied to a temporary directory and brought up with
`sandbox up --runtime local|compose --detach` on a free ingress port, driven as a user drives it
(HTTP through the ingress, `sandbox apply -f` / `sandbox delete` + `sandbox wait --synced`,
`sandbox logs`), and `sandbox down`.
"""

from __future__ import annotations

import contextlib
import http.cookiejar
import json
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from sandbox.mesh.loader import load_paths

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "samples"
UP_TIMEOUT = 120.0  # seconds for `sandbox up` on a busy two-core machine
COMPOSE_UP_TIMEOUT = 1500.0  # the compose runtime may build its image first (minutes on two busy cores)
SYNC_TIMEOUT = 20.0
T = TypeVar("T")

REVIEWS_ERROR = "Sorry, product reviews are currently unavailable for this book."
RATINGS_ERROR = "Ratings service is currently unavailable"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def poll(check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.1) -> T:
    """check() until it returns something other than None (or False), or fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def http_request(
    url: str, method: str = "GET", headers: dict[str, str] | None = None, timeout: float = 10.0
) -> tuple[int, dict[str, str], bytes]:
    """One request with no HTTP proxy: (status, response headers lowercased, body)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(url, method=method, headers=headers or {}, data=b"" if method == "POST" else None)
    try:
        with opener.open(request, timeout=timeout) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@dataclass
class Mesh:
    directory: Path
    record: dict[str, Any] = field(default_factory=dict)
    applied: set[tuple[str, str, str]] = field(default_factory=set)  # (kind, namespace, name)

    @property
    def compose(self) -> Path:
        return self.directory / "compose.yaml"

    @property
    def istio(self) -> Path:
        return self.directory / "istio"

    @property
    def ingress(self) -> str:
        return str(self.record["urls"]["ingress"])

    @property
    def control_plane(self) -> str:
        return str(self.record["control_plane"])

    def sandbox(self, *args: str, timeout: float = 60.0, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "sandbox", *args],
            cwd=self.directory,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"sandbox {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
        return done

    def admin(self, workload: str) -> str:
        return str(next(p["admin"] for p in self.record["proxies"] if p["workload"] == workload))

    # -- rules -----------------------------------------------------------------------------------
    def apply(self, *files: str) -> None:
        """`sandbox apply -f` each networking/ file (or `dir/file` of the sample) in turn (as the
        task's `kubectl apply -f` steps; a later file replaces a resource an earlier one made), then
        `sandbox wait --synced`."""
        for name in files:
            path = self.directory / (name if "/" in name else f"networking/{name}")
            self.sandbox("apply", "-f", str(path))
            for resource in load_paths([str(path)]).resources:
                if not resource.origin.translated_from:  # deleted with the legacy resource it came from
                    self.applied.add((resource.kind, resource.namespace, resource.name))
        self.wait()

    def apply_yaml(self, name: str, text: str) -> None:
        """A rule the test writes (as the task's `kubectl apply -f - <<EOF`), applied like a networking/ file."""
        (self.directory / "networking" / name).write_text(text)
        self.apply(name)

    def reset(self) -> None:
        """`sandbox delete` what the test applied, routes before the subsets they use, and wait."""
        kinds = sorted({kind for kind, _, _ in self.applied}, key=lambda k: (k != "VirtualService", k))
        for kind in kinds:
            for namespace in sorted({ns for k, ns, _ in self.applied if k == kind}):
                names = sorted(n for k, ns, n in self.applied if (k, ns) == (kind, namespace))
                self.sandbox("delete", kind.lower(), *names, "-n", namespace)
        if self.applied:
            self.applied.clear()
            self.wait()

    def wait(self) -> None:
        self.sandbox("wait", "--synced", "--timeout", f"{SYNC_TIMEOUT:g}s", "-f", str(self.compose))

    # -- observing ---------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """`sandbox status -o json`."""
        done = self.sandbox("status", "-f", str(self.compose), "-o", "json", check=False)
        data: dict[str, Any] = json.loads(done.stdout)
        return data

    def logs(self, workload: str, *, proxy: bool = False) -> str:
        args = ["logs", workload, "-f", str(self.compose)] + (["--proxy"] if proxy else [])
        return self.sandbox(*args).stdout


RUNTIMES = ("local", "compose")


def engine_ready() -> bool:
    """A Docker engine with Compose answers (what the compose runtime needs)."""
    try:
        from sandbox.runtime.compose import compose_command
        from sandbox.runtime.docker_engine import engine_available

        compose_command()
    except Exception:
        return False
    return engine_available()


@contextlib.contextmanager
def running_mesh(
    sample: str,
    workdir: Path,
    runtime: str = "local",
    *,
    name: str | None = None,
    settings: dict[str, Any] | None = None,
    prepare: Callable[[Path], None] | None = None,
) -> Iterator[Mesh]:
    """samples/<sample> copied to `workdir` (as `name`: the Compose project's name, which must not
    collide on a shared Docker engine), up on `runtime` with a free ingress port; `settings` go into
    the top-level x-sandbox, and `prepare(directory)` edits the copy before `up`."""
    directory = workdir / (name or sample)
    shutil.copytree(SAMPLES / sample, directory, ignore=shutil.ignore_patterns(".sandbox", "__pycache__"))
    if prepare is not None:
        prepare(directory)
    compose = directory / "compose.yaml"
    top = {"ingress": {"port": free_port()}, **(settings or {})}
    text = compose.read_text()
    if re.search(r"^x-sandbox:\s*$", text, re.M):  # the sample's own mesh settings: add these to them
        lines = "".join(f"\n  {key}: {json.dumps(value)}" for key, value in top.items())
        compose.write_text(re.sub(r"^x-sandbox:\s*$", lambda _: f"x-sandbox:{lines}", text, count=1, flags=re.M))
    else:
        compose.write_text(f"x-sandbox: {json.dumps(top)}\n" + text)
    mesh = Mesh(directory)
    started = time.monotonic()
    timeout = UP_TIMEOUT if runtime == "local" else COMPOSE_UP_TIMEOUT
    up = mesh.sandbox("up", "-f", str(compose), "--runtime", runtime, "--detach", timeout=timeout, check=False)
    try:
        assert up.returncode == 0, f"sandbox up failed:\n{up.stdout}\n{up.stderr}"
        mesh.record = json.loads((directory / ".sandbox" / "mesh.json").read_text())
        mesh.record["up_seconds"] = time.monotonic() - started
        yield mesh
    finally:
        mesh.sandbox("down", "-f", str(compose), check=False, timeout=300)


# --------------------------------------------------------------------------- a browser for Bookinfo


class Browser:
    """A user with a cookie jar (productpage's session), going through the ingress, no HTTP proxy."""

    def __init__(self, base: str) -> None:
        self.base = base
        cookies = urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), cookies)
        self.no_redirects = urllib.request.build_opener(urllib.request.ProxyHandler({}), cookies, _NoRedirect())

    def get(self, path: str = "/productpage", timeout: float = 20.0) -> tuple[int, str, float]:
        started = time.monotonic()
        try:
            with self.opener.open(self.base + path, timeout=timeout) as response:
                status, text = response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            status, text = exc.code, exc.read().decode()
        return status, text, time.monotonic() - started

    def login(self, user: str) -> None:
        form = urllib.parse.urlencode({"username": user, "passwd": "password"}).encode()
        request = urllib.request.Request(self.base + "/login", data=form, method="POST")
        try:
            self.no_redirects.open(request, timeout=20)
        except urllib.error.HTTPError as exc:  # the 302 back to the page, with the session cookie
            assert exc.code == 302, exc.code
        else:
            raise AssertionError("POST /login did not redirect")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def reviews_shown(html: str) -> str:
    """What the reviews part of a product page shows: none, black, red, ratings-error or reviews-error."""
    if REVIEWS_ERROR in html:
        return "reviews-error"
    if RATINGS_ERROR in html:
        return "ratings-error"
    colors = set(re.findall(r'<font color="(\w+)">', html))
    assert len(colors) <= 1, colors
    return colors.pop() if colors else "none"
