"""The keys behind each RequestAuthentication's `jwksUri`, fetched by the control plane.

As istiod does (its JWKS resolver), the control plane fetches every jwksUri the config names,
keeps the keys, pushes them inline in the snapshots of the proxies that need them, and fetches
them again periodically (Istio's PILOT_JWT_PUB_KEY_REFRESH_INTERVAL, 20 minutes): a changed key
set makes a new push. A fetch is bounded (the rule's timeout, 5 s by default; 1 MiB); one that
fails keeps the last good keys, is logged once per distinct error and shows in `status()`
(`/debug/jwksz`), and is retried with backoff. A URI no rule names any more is forgotten.
Until a URI's first fetch succeeds, its provider has no keys: its tokens fail (401) and requests
without a token pass, as with istiod.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import aiohttp

log = logging.getLogger(__name__)

REFRESH = 20 * 60.0  # seconds between fetches of a URI that answers
TIMEOUT = 5.0  # RequestAuthentication jwtRules[].timeout default
RETRY_FIRST, RETRY_MAX = 1.0, 60.0  # backoff after a failing fetch
MAX_BYTES = 1 << 20


@dataclass
class JwksStatus:
    uri: str
    fetched_at: float | None = None  # wall clock of the last good fetch
    error: str = ""  # why the last fetch failed ("" when it did not)
    keys: int = 0  # keys in the last good set
    failures: int = 0  # failures in a row

    def to_json(self) -> dict[str, object]:
        return {
            "uri": self.uri,
            "fetched_at": self.fetched_at,
            "keys": self.keys,
            "error": self.error or None,
            "failures": self.failures,
        }


class JwksCache:
    def __init__(
        self,
        on_change: Callable[[], None],
        refresh: float = REFRESH,
        timeouts: Callable[[str], float] | None = None,
    ) -> None:
        self.on_change = on_change
        self.refresh = refresh
        self.timeouts = timeouts or (lambda _uri: TIMEOUT)
        self.generation = 0  # bumped whenever a key set changes (the compile cache's key)
        self._keys: dict[str, str] = {}
        self._status: dict[str, JwksStatus] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._session: aiohttp.ClientSession | None = None

    def get(self, uri: str) -> str | None:
        """The key set last fetched from `uri` (canonical JSON), or None."""
        return self._keys.get(uri)

    def status(self) -> list[dict[str, object]]:
        return [self._status[uri].to_json() for uri in sorted(self._status)]

    def track(self, uris: Iterable[str]) -> None:
        """Fetch (and keep fetching) exactly these URIs. Needs a running event loop; without one
        (offline compiles) nothing is fetched."""
        wanted = set(uris)
        for uri in sorted(self._tasks.keys() - wanted):
            self._tasks.pop(uri).cancel()
            self._status.pop(uri, None)
            if self._keys.pop(uri, None) is not None:
                self.generation += 1
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        for uri in sorted(wanted - self._tasks.keys()):
            self._status[uri] = JwksStatus(uri)
            self._tasks[uri] = loop.create_task(self._watch(uri))

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _watch(self, uri: str) -> None:
        status = self._status[uri]
        retry = RETRY_FIRST
        while True:
            try:
                text = await self.fetch(uri)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure keeps the last good keys
                error = _describe(exc)
                if error != status.error:
                    kept = "keeping the last good keys" if uri in self._keys else "tokens for it fail until it answers"
                    log.warning("fetching jwksUri %s failed: %s; %s", uri, error, kept)
                status.error, status.failures = error, status.failures + 1
                await asyncio.sleep(min(retry, self.refresh))
                retry = min(retry * 2, RETRY_MAX)
                continue
            if status.error:
                log.info("jwksUri %s answers again", uri)
            status.error, status.failures, status.fetched_at = "", 0, time.time()
            status.keys = len(json.loads(text)["keys"])
            retry = RETRY_FIRST
            if self._keys.get(uri) != text:
                self._keys[uri] = text
                self.generation += 1
                self.on_change()
            await asyncio.sleep(self.refresh)

    async def fetch(self, uri: str) -> str:
        """One bounded GET of a JWKS; its canonical JSON, or an exception saying what is wrong."""
        if self._session is None:
            self._session = aiohttp.ClientSession(trust_env=False)
        timeout = aiohttp.ClientTimeout(total=self.timeouts(uri))
        async with self._session.get(uri, timeout=timeout, allow_redirects=True) as response:
            if response.status != 200:
                raise ValueError(f"HTTP {response.status}")
            body = await response.content.read(MAX_BYTES + 1)
        if len(body) > MAX_BYTES:
            raise ValueError(f"the answer is over {MAX_BYTES} bytes")
        try:
            data = json.loads(body)
        except ValueError:
            raise ValueError("the answer is not JSON") from None
        if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
            raise ValueError('the answer is not a JSON Web Key Set (no "keys" list)')
        return json.dumps(data, sort_keys=True, separators=(",", ":"))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__
