"""Running a long-lived component (control plane, proxy, console) as a process: one way for all.

`run(start)` sets up logging and uvloop, starts the component and serves it until SIGINT or
SIGTERM (Ctrl-C, `sandbox down`, `docker stop`) or until the component says it is done, then
stops it. One exit-code rule for every component:

    0  stopped cleanly
    1  failed while running (the component set `failure` to another error)
    2  could not start: StartupError (a port already taken, a file or directory it cannot use)
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

log = logging.getLogger(__name__)

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class StartupError(Exception):
    """The component cannot start here; the message says why, for the user (exit 2)."""


def bind_error(exc: OSError, where: str) -> StartupError:
    """`cannot listen on <where>: <reason>` for a socket that could not be bound."""
    return StartupError(f"cannot listen on {where}: {exc.strerror or exc}")


class Component(Protocol):
    @property
    def done(self) -> asyncio.Event:
        """Set when the component must end without being asked (a fatal error: see `failure`)."""
        ...

    @property
    def failure(self) -> Exception | None: ...

    async def stop(self) -> None: ...


C = TypeVar("C", bound=Component)


def install_uvloop() -> bool:
    """uvloop's event loop where it is installed (about twice as quick for sockets)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - a dependency, but optional on some platforms
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


async def until_stopped(done: asyncio.Event | None = None) -> None:
    """Return on the first SIGINT or SIGTERM, or when `done` is set."""
    stop = done or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def serve(start: Callable[[], Awaitable[C]], started: Callable[[C], None] | None = None) -> int:
    """Start a component, serve it until stopped, stop it; the exit code by the rule above."""
    try:
        component = await start()
    except StartupError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    if started is not None:
        started(component)
    try:
        await until_stopped(component.done)
    finally:
        await component.stop()
    failure = component.failure
    if failure is None:
        return 0
    print(f"error: {failure}", file=sys.stderr, flush=True)
    return 2 if isinstance(failure, StartupError) else 1


def run(start: Callable[[], Awaitable[C]], started: Callable[[C], None] | None = None) -> int:
    """`serve` as a process: logging, uvloop, then the event loop until the component ends."""
    configure_logging()
    install_uvloop()
    return asyncio.run(serve(start, started))
