"""The real Launcher: a subprocess in its own session (so its process group can be signalled as
one, and a terminal's Ctrl-C reaches only `sandbox`), output appended to its log file."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

from sandbox.runtime import forkserver
from sandbox.runtime.forkserver import Entry, ForkedHandle
from sandbox.runtime.pgroup import signal_group
from sandbox.runtime.supervisor import ProcessSpec


class ProcessHandle:
    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self.popen = popen
        self.pid = popen.pid

    def poll(self) -> int | None:
        return self.popen.poll()

    def signal_group(self, signum: int) -> None:
        signal_group(self.pid, signum)


class NotStarted:
    """A command that could not even be executed (not found, not executable): it "exited" 127,
    as a shell says, and the reason is in its log."""

    pid = -1

    def poll(self) -> int | None:
        return 127

    def signal_group(self, signum: int) -> None:
        return None


class SubprocessLauncher:
    def start(self, spec: ProcessSpec, note: str | None = None) -> ProcessHandle | NotStarted:
        log = Path(spec.log_file)
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            if note:
                out.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {note}\n".encode())
                out.flush()
            try:
                popen = subprocess.Popen(
                    list(spec.argv),
                    env=spec.env,
                    cwd=spec.cwd,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    close_fds=True,
                )
            except OSError as exc:
                out.write(f"[sandbox] cannot run {spec.argv[0]!r} (in {spec.cwd}): {exc.strerror}\n".encode())
                return NotStarted()
        return ProcessHandle(popen)


class MeshLauncher:
    """Forks sandbox's own processes from preloaded code (forkserver.py), runs everything else
    as a subprocess. The first fork pays for the preload. `entry` runs a forked child's command
    line (the CLI, handed down from it: the runtime does not import the CLI); an entry with a
    `warm()` method prepares itself during the preload (the CLI builds its command once)."""

    def __init__(self, entry: Entry) -> None:
        self.entry = entry
        self.subprocesses = SubprocessLauncher()
        self.preloaded = False
        self._preloading: threading.Thread | None = None

    def preload_in_background(self) -> None:
        """Import in a thread while the caller waits for its plan and starts the subprocesses;
        the first fork joins it (so no other thread runs when the process forks)."""
        if forkserver.enabled() and self._preloading is None:
            self._preloading = threading.Thread(
                target=forkserver.preload, args=(forkserver.FORKED_KINDS, getattr(self.entry, "warm", None))
            )
            self._preloading.daemon = True
            self._preloading.start()

    def start(self, spec: ProcessSpec, note: str | None = None) -> ProcessHandle | NotStarted | ForkedHandle:
        if not forkserver.forkable(spec):
            return self.subprocesses.start(spec, note)
        self.preload()
        Path(spec.log_file).parent.mkdir(parents=True, exist_ok=True)
        return forkserver.fork(spec, self.entry, note)

    def preload(self) -> None:
        if self.preloaded or not forkserver.enabled():
            return
        if self._preloading is not None:
            self._preloading.join()
        else:
            forkserver.preload(forkserver.FORKED_KINDS, getattr(self.entry, "warm", None))
        self.preloaded = True
