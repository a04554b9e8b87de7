"""Reading the local runtime's per-process log files: the tail, and following as they grow."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

TAIL_BYTES = 256 * 1024
MAX_LOG_BYTES = 32 * 1024 * 1024  # per process; beyond it the log is rotated (one old copy kept)


def tail(path: str | Path, lines: int) -> list[str]:
    """The last `lines` lines of a file (none when it does not exist)."""
    if lines <= 0:
        return []
    try:
        with open(path, "rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(0, size - TAIL_BYTES))
            data = handle.read()
    except OSError:
        return []
    text = data.decode("utf-8", "replace").splitlines()
    if size > TAIL_BYTES and text:
        text = text[1:]  # the first line is probably cut
    return text[-lines:]


def read_all(path: str | Path) -> list[str]:
    try:
        return Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return []


def follow(
    sources: Sequence[tuple[str, Path]],
    keep_going: Callable[[], bool],
    sleep: Callable[[float], None] = time.sleep,
    interval: float = 0.2,
) -> Iterator[tuple[str, str]]:
    """(source name, line) for lines appended to any of the files from now on, until
    keep_going() says stop (checked about once a second)."""
    offsets = {name: _size(path) for name, path in sources}
    pending = dict.fromkeys(offsets, b"")
    checked = time.monotonic()
    while True:
        for name, path in sources:
            size = _size(path)
            if size < offsets[name]:  # truncated or replaced: start over
                offsets[name], pending[name] = 0, b""
            if size == offsets[name]:
                continue
            with open(path, "rb") as handle:
                handle.seek(offsets[name])
                data = pending[name] + handle.read()
                offsets[name] = handle.tell()
            *complete, pending[name] = data.split(b"\n")
            for raw in complete:
                yield name, raw.decode("utf-8", "replace")
        if time.monotonic() - checked >= 1.0:
            checked = time.monotonic()
            if not keep_going():
                return
        sleep(interval)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def rotate(path: str | Path, max_bytes: int = MAX_LOG_BYTES) -> bool:
    """Copy a log that grew past `max_bytes` to `<name>.1` and truncate it in place (logrotate's
    copytruncate: the process keeps writing to the same file with O_APPEND). True if rotated."""
    path = Path(path)
    try:
        if path.stat().st_size <= max_bytes:
            return False
        with open(path, "rb") as source, open(path.with_name(path.name + ".1"), "wb") as copy:
            while chunk := source.read(1 << 20):
                copy.write(chunk)
        os.truncate(path, 0)
    except OSError:
        return False
    return True
