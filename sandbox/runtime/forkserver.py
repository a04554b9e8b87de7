"""Start sandbox's own Python processes (control plane, sidecars, ingress gateway, console) by forking a
process that has already imported their code, as gunicorn's --preload does.

A sidecar spends most of its start-up importing (aiohttp, the data path, the snapshot model:
about a second of CPU each, times seven for Bookinfo on two cores), and each copy of those
modules costs ~20 MB. Forked from a parent that imported them once, a sidecar is serving within
milliseconds and shares those pages copy-on-write with its siblings (gc.freeze keeps the
collector from touching, and so copying, them). The child is otherwise what `python -m sandbox
...` would be: its own session, the spec's environment, cwd and log file, the same CLI entry
point, and the exit status the CLI returns.

Apps are never forked: they are the user's programs and run as written (launch.py).
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import io
import logging
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterable

from sandbox.runtime.base import ComponentKind
from sandbox.runtime.pgroup import signal_group
from sandbox.runtime.supervisor import ProcessSpec

FORKED_KINDS = (ComponentKind.CONTROL_PLANE, ComponentKind.SIDECAR, ComponentKind.GATEWAY, ComponentKind.CONSOLE)
PRELOAD = {
    ComponentKind.SIDECAR: (
        "sandbox.cli",
        "uvloop",
        "sandbox.proxy.process",
        "sandbox.proxy.agent",
        "sandbox.proxy.subscription",
    ),
    ComponentKind.CONSOLE: ("sandbox.cli", "sandbox.console.app", "sandbox.commands.console"),
    ComponentKind.CONTROL_PLANE: ("sandbox.cli", "sandbox.control.server", "sandbox.mesh.analysis"),
}
PRELOAD[ComponentKind.GATEWAY] = PRELOAD[ComponentKind.SIDECAR]
DISABLE_ENV = "SANDBOX_LOCAL_FORK"  # "0": exec every process instead (slower; for debugging)
Entry = Callable[[list[str]], object]  # runs a `sandbox` command line (the CLI's app)


def enabled() -> bool:
    return os.environ.get(DISABLE_ENV, "1") != "0" and hasattr(os, "fork")


def forkable(spec: ProcessSpec) -> bool:
    """A `python -m sandbox ...` process of a kind worth forking, with the same Python as ours."""
    return enabled() and spec.kind in FORKED_KINDS and tuple(spec.argv[:3]) == (sys.executable, "-m", "sandbox")


def preload(kinds: Iterable[ComponentKind], warm: Callable[[], object] | None = None) -> None:
    """Import what the forked kinds run and let the entry prepare itself (`warm`: the CLI builds its
    command once), then freeze the heap so children share it untouched."""
    began, cpu = time.monotonic(), time.process_time()
    for kind in set(kinds):
        for name in PRELOAD.get(kind, ()):
            with contextlib.suppress(ImportError):
                importlib.import_module(name)
    if warm is not None:
        warm()
    gc.collect()
    gc.freeze()
    took, used = time.monotonic() - began, time.process_time() - cpu
    sys.stderr.write(f"{time.strftime('%H:%M:%S')} preloaded in {took:.2f}s ({used:.2f}s CPU)\n")
    sys.stderr.flush()


class ForkedHandle:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.code: int | None = None

    def poll(self) -> int | None:
        if self.code is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                self.code = -1
                return self.code
            if pid == self.pid:
                self.code = os.waitstatus_to_exitcode(status)
        return self.code

    def signal_group(self, signum: int) -> None:
        signal_group(self.pid, signum)


def fork(spec: ProcessSpec, entry: Entry, note: str | None = None) -> ForkedHandle:
    """Run `sandbox <args>` (spec.argv after `python -m sandbox`) in a forked child, through `entry`."""
    log = os.open(spec.log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    if note:
        os.write(log, f"{note}\n".encode())
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        os.close(log)
        return ForkedHandle(pid)
    code = 1
    try:  # the child: never return into the parent's code, whatever happens
        _become(spec, log)
        entry(list(spec.argv[3:]))
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    except BaseException:  # reported in the child's log, then the child ends
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _become(spec: ProcessSpec, log: int) -> None:
    """Turn the forked child into the process `spec` describes."""
    os.setsid()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(signum, signal.SIG_DFL if signum != signal.SIGPIPE else signal.SIG_IGN)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.closerange(3, _max_fd())  # nothing of the supervisor's: its plan pipe, a server's connection
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), line_buffering=True, errors="backslashreplace")
    sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), line_buffering=True, errors="backslashreplace")
    os.chdir(spec.cwd)
    os.environ.clear()
    os.environ.update(spec.env)
    sys.argv = ["sandbox", *spec.argv[3:]]
    logging.root.handlers.clear()  # whatever the parent configured: the command sets up its own
    _name(spec.name)


def _max_fd() -> int:
    try:
        return min(os.sysconf("SC_OPEN_MAX"), 1 << 20)
    except (OSError, ValueError):
        return 1024


def _name(name: str) -> None:
    """Show the component in ps/top (the command line stays the supervisor's)."""
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL(None)
        libc.prctl(15, f"sbx:{name}"[:15].encode(), 0, 0, 0)  # PR_SET_NAME
