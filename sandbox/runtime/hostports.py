"""Is a host port free, and if not, who holds it (Linux: /proc/net/tcp* and /proc/<pid>/fd).

`sandbox up` asks before it starts anything, so "port 8080 is taken by pid 4242 (nginx: master
process)" replaces a sidecar dying later with EADDRINUSE in a log. The lookup is best effort: on
another OS, or for another user's processes, the answer is just "in use".
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Iterable
from pathlib import Path

LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp's `st` column


def listening_inodes(table: str, port: int) -> set[int]:
    """Socket inodes listening on `port` in the text of /proc/net/tcp or /proc/net/tcp6."""
    inodes = set()
    for line in table.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10 or fields[3] != LISTEN:
            continue
        _, _, port_hex = fields[1].rpartition(":")
        try:
            if int(port_hex, 16) == port:
                inodes.add(int(fields[9]))
        except ValueError:
            continue
    return inodes


def socket_owners(inodes: Iterable[int], proc: Path = Path("/proc")) -> list[tuple[int, str]]:
    """(pid, command line) of each process with one of these socket inodes open, by pid."""
    wanted = {f"socket:[{inode}]" for inode in inodes}
    if not wanted:
        return []
    owners = []
    for entry in proc.iterdir() if proc.is_dir() else ():
        if not entry.name.isdigit():
            continue
        if _fd_links(entry / "fd") & wanted:
            owners.append((int(entry.name), _command(entry)))
    return sorted(owners)


def _fd_links(fd_dir: Path) -> set[str]:
    links: set[str] = set()
    try:
        fds = list(fd_dir.iterdir())
    except OSError:  # gone, or not ours to read
        return links
    for fd in fds:
        try:
            links.add(os.readlink(fd))
        except OSError:  # closed meanwhile (the listing's own descriptor, for one)
            continue
    return links


def _command(entry: Path) -> str:
    try:
        raw = (entry / "cmdline").read_bytes()
    except OSError:
        return "?"
    words = raw.rstrip(b"\0").split(b"\0")
    text = " ".join(w.decode("utf-8", "replace") for w in words if w)
    text = (text[:80] + "...") if len(text) > 80 else text or "?"
    try:  # a component the local runtime forked shows its supervisor's command line; its name says more
        name = (entry / "comm").read_text().strip()
    except OSError:
        return text
    return f"sandbox component {name[4:]}: {text}" if name.startswith("sbx:") else text


def holders(port: int, proc: Path = Path("/proc")) -> list[tuple[int, str]]:
    inodes: set[int] = set()
    for name in ("tcp", "tcp6"):
        try:
            inodes |= listening_inodes((proc / "net" / name).read_text(), port)
        except OSError:
            continue
    return socket_owners(inodes, proc)


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could bind host:port now (with SO_REUSEADDR, as servers do, so a port
    in TIME_WAIT counts as free)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def who_holds(port: int, host: str = "127.0.0.1") -> str | None:
    """None when `port` is free; else what holds it, e.g. "pid 4242 (nginx: master process)"."""
    if port_free(port, host):
        return None
    found = holders(port)
    if not found:
        return "in use by a process this user cannot see" if os.name == "posix" else "in use"
    return ", ".join(f"pid {pid} ({command})" for pid, command in found)
