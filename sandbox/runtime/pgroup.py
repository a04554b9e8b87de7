"""Signalling a process group: each component runs in its own session, so one signal reaches the
whole group (a shell command's children included)."""

from __future__ import annotations

import os


def signal_group(pgid: int, signum: int) -> bool:
    """Signal a process group; False when it no longer exists."""
    if pgid <= 1:  # 0 and -1 would mean our own group or every process
        return False
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        return False
    return True
