"""Watch the Istio directory and the Compose file; hand changed texts to the store (the only watchdog user).

Events are only a hint. Editors save in many ways (in place; a temp file renamed over the
original; vim's `4913` probe and `file~` backup; Emacs's `.#file` locks), and a Kubernetes
ConfigMap mount swaps a `..data` symlink to a new timestamped directory that the visible files
point into. Rather than interpreting each event sequence, every (debounced) burst triggers a
rescan that reads each YAML file through its symlinks and compares content hashes with the last
scan, so whatever the sequence was, the result is the set of files whose content changed.
Hidden entries (`..data`, `..2024_...`, `.git`) are not scanned, but events under them still
trigger a rescan, which is how a ConfigMap swap is seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver, ObservedWatch

from sandbox.control.debounce import DEFAULT_MAX_DELAY, DEFAULT_QUIET, DEFAULT_SETTLE, Batch, DebounceDriver, Debouncer

log = logging.getLogger(__name__)

YAML_SUFFIXES = (".yaml", ".yml", ".json")
TEMP_SUFFIXES = (".swp", ".swx", ".swo", "~", ".tmp", ".part")
QUIET_EVENTS = frozenset({"opened", "closed_no_write"})  # our own reads cause these
ENTRY_EVENTS = frozenset({"created", "deleted", "moved", "modified", "closed"})  # a name (re)appearing or rewritten
REPLACED = "\0replaced"  # the batch key saying the Istio directory itself was created, deleted or renamed


def is_temporary(name: str) -> bool:
    """Editor droppings: vim swap files and its `4913` write probe, backups, Emacs lock files."""
    return name == "4913" or name.startswith(".#") or name.endswith(TEMP_SUFFIXES)


def is_config_file(name: str) -> bool:
    return not name.startswith(".") and not is_temporary(name) and name.endswith(YAML_SUFFIXES)


@dataclass(frozen=True)
class WatchUpdate:
    """What changed since the last update: Istio files by path (None: deleted), the compose text
    and the endpoints file's text."""

    istio: dict[str, bytes | None] = field(default_factory=dict)
    compose: bytes | None = None  # None: unchanged (or missing: the last good topology stays)
    first_seen: float = 0.0  # monotonic time of the first event of the burst
    endpoints: bytes | None = None  # None: unchanged (or missing: the last good addresses stay)

    def __bool__(self) -> bool:
        return bool(self.istio) or self.compose is not None or self.endpoints is not None


def read_config_dir(root: Path, exclude: frozenset[Path] = frozenset()) -> dict[str, bytes]:
    """Every visible YAML/JSON file under `root` (symlinks followed, loops skipped) -> its bytes."""
    found: dict[str, bytes] = {}
    seen_dirs: set[tuple[int, int]] = set()
    for directory, dirnames, filenames in os.walk(root, followlinks=True):
        try:
            st = os.stat(directory)
        except OSError:
            dirnames[:] = []
            continue
        if (st.st_dev, st.st_ino) in seen_dirs:  # a symlink loop
            dirnames[:] = []
            continue
        seen_dirs.add((st.st_dev, st.st_ino))
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            path = Path(directory, name)
            if not is_config_file(name) or path in exclude:
                continue
            try:
                found[str(path)] = path.read_bytes()
            except OSError:  # vanished between listing and reading, or a dangling symlink mid-swap
                continue
    return found


class ConfigScanner:
    """The pure-ish half: rescans and diffs by content hash (no watchdog, no event loop)."""

    def __init__(
        self, istio_dir: str | Path, compose_file: str | Path | None = None, endpoints_file: str | Path | None = None
    ) -> None:
        self.istio_dir = Path(istio_dir)
        self.compose_file = Path(compose_file) if compose_file else None
        self.endpoints_file = Path(endpoints_file) if endpoints_file else None
        self._hashes: dict[str, str] = {}
        self._single: dict[Path, str] = {}  # the compose and endpoints files' hashes

    def _read_if_changed(self, path: Path | None) -> bytes | None:
        if path is None:
            return None
        try:
            data = path.read_bytes()
        except OSError:
            return None
        digest = hashlib.sha256(data).hexdigest()
        if self._single.get(path) == digest:
            return None
        self._single[path] = digest
        return data

    def dirty(self) -> list[str]:
        """Files whose content on disk differs from the last scan (changed, new or gone), without
        taking them in: what `sandbox wait` asks about, since an event may still be on its way."""
        exclude = frozenset(p for p in (self.compose_file, self.endpoints_file) if p is not None)
        current = {
            name: hashlib.sha256(data).hexdigest() for name, data in read_config_dir(self.istio_dir, exclude).items()
        }
        found = sorted(
            name for name in current.keys() | self._hashes.keys() if current.get(name) != self._hashes.get(name)
        )
        for single in (self.compose_file, self.endpoints_file):
            if single is None:
                continue
            try:
                digest = hashlib.sha256(single.read_bytes()).hexdigest()
            except OSError:
                continue  # a missing compose/endpoints file keeps the last good one: nothing pending
            if self._single.get(single) != digest:
                found.append(str(single))
        return found

    def scan(self, first_seen: float = 0.0) -> WatchUpdate:
        exclude = frozenset(p for p in (self.compose_file, self.endpoints_file) if p is not None)
        current = read_config_dir(self.istio_dir, exclude)
        changes: dict[str, bytes | None] = {}
        hashes = {name: hashlib.sha256(data).hexdigest() for name, data in current.items()}
        for name, digest in hashes.items():
            if self._hashes.get(name) != digest:
                changes[name] = current[name]
        for name in self._hashes.keys() - hashes.keys():
            changes[name] = None
        self._hashes = hashes
        compose = self._read_if_changed(self.compose_file)
        return WatchUpdate(changes, compose, first_seen, self._read_if_changed(self.endpoints_file))


def settles(event_type: str, dest_name: str) -> bool:
    """The writer is done: a file closed after writing, or a config file renamed into place."""
    return event_type == "closed" or (event_type == "moved" and is_config_file(dest_name))


class _Handler(FileSystemEventHandler):
    def __init__(self, notify: Callable[[str, bool], None], only: str | None = None, key: str | None = None) -> None:
        self._notify = notify
        self._only = only  # in a parent directory: events about that one name
        self._key = key or only or ""

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in QUIET_EVENTS or (event.is_directory and event.event_type == "modified"):
            return  # a directory "modified" only echoes the entry event that comes with it
        paths = [p for p in (event.src_path, getattr(event, "dest_path", "")) if p]
        names = [os.path.basename(os.fsdecode(p)) for p in paths]
        settled = settles(event.event_type, names[-1])
        if self._only is not None:
            if self._only in names and event.event_type in ENTRY_EVENTS:
                self._notify(self._key, settled and names[-1] == self._only)
        elif not all(is_temporary(n) for n in names):
            self._notify(os.fsdecode(paths[0]), settled)


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


class ConfigWatcher:
    """watchdog -> debouncer -> rescan -> `on_update(WatchUpdate)`, on the running event loop."""

    def __init__(
        self,
        istio_dir: str | Path,
        compose_file: str | Path | None,
        on_update: Callable[[WatchUpdate], None],
        *,
        quiet: float = DEFAULT_QUIET,
        max_delay: float = DEFAULT_MAX_DELAY,
        settle: float = DEFAULT_SETTLE,
        endpoints_file: str | Path | None = None,
    ) -> None:
        self.scanner = ConfigScanner(istio_dir, compose_file, endpoints_file)
        self._on_update = on_update
        self._debouncer: Debouncer[str] = Debouncer(quiet, max_delay, settle)
        self._driver: DebounceDriver[str] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._observer: BaseObserver | None = None
        self._istio_watch: ObservedWatch | None = None
        self._istio_id: tuple[int, int] | None = None

    @property
    def pending(self) -> list[str]:
        """Changes not applied yet: a debounce batch waiting, or files that differ from the last scan."""
        waiting = ["<events being debounced>"] if self._debouncer.pending else []
        return waiting + self.scanner.dirty()

    def initial(self) -> WatchUpdate:
        """Everything as it is now; call before `start` so the store begins complete."""
        return self.scanner.scan(time.monotonic())

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._driver = DebounceDriver(self._on_batch, self._debouncer, loop=self._loop)
        observer = Observer()
        istio = self.scanner.istio_dir
        self._istio_watch = observer.schedule(_Handler(self._from_thread), str(istio), recursive=True)
        self._istio_id = _identity(istio)
        # The directory itself may be replaced (rm -rf + copy, or a rename swap): watch its name too.
        parent = _Handler(self._from_thread, istio.name, REPLACED)
        observer.schedule(parent, str(istio.resolve().parent), recursive=False)
        for single in (self.scanner.compose_file, self.scanner.endpoints_file):
            if single is not None:
                only = _Handler(self._from_thread, single.name)
                observer.schedule(only, str(single.parent.resolve()), recursive=False)
        observer.daemon = True
        observer.start()
        self._observer = observer

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None
        if self._driver is not None:
            self._driver.close()

    def _from_thread(self, key: str, settled: bool = False) -> None:
        loop, driver = self._loop, self._driver
        if loop is None or driver is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop is closing
            loop.call_soon_threadsafe(driver.add, key, settled)

    def _rewatch_if_replaced(self, hinted: bool) -> None:
        """inotify watches an inode: a new directory under the same name needs a new watch. The
        inode number alone cannot tell (rm -rf + mkdir often reuses it), hence the parent's hint."""
        current = _identity(self.scanner.istio_dir)
        if self._observer is None or current is None or (current == self._istio_id and not hinted):
            return
        if self._istio_watch is not None:
            with contextlib.suppress(KeyError, OSError):
                self._observer.unschedule(self._istio_watch)
        handler = _Handler(self._from_thread)
        self._istio_watch = self._observer.schedule(handler, str(self.scanner.istio_dir), recursive=True)
        self._istio_id = current
        log.info("%s was replaced; watching the new directory", self.scanner.istio_dir)

    def _on_batch(self, batch: Batch[str]) -> None:
        self._rewatch_if_replaced(REPLACED in batch.keys)  # before the scan: nothing written in between is missed
        update = self.scanner.scan(batch.first_seen)
        if update:
            log.debug("config change: %s", sorted(update.istio) + (["<compose>"] if update.compose else []))
            self._on_update(update)
