"""Serving until the user or a supervisor says stop: shared by every long-running command."""

from __future__ import annotations

import asyncio
import signal


async def until_stopped() -> None:
    """Return on the first SIGINT or SIGTERM (Ctrl-C, `sandbox down`, `docker stop`)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
