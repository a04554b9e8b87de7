"""The watcher on a real filesystem: each editor's way of saving, renames, deletes, ConfigMap swaps."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from sandbox.control.watcher import ConfigScanner, ConfigWatcher, WatchUpdate, is_config_file


class Model:
    """Applies updates like the store would: the files the control plane believes exist."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.compose: bytes | None = None
        self.updates: list[WatchUpdate] = []

    def __call__(self, update: WatchUpdate) -> None:
        self.updates.append(update)
        for name, data in update.istio.items():
            if data is None:
                self.files.pop(name, None)
            else:
                self.files[name] = data
        if update.compose is not None:
            self.compose = update.compose

    def named(self, root: Path) -> dict[str, bytes]:
        return {str(Path(k).relative_to(root)): v for k, v in self.files.items()}


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "the watcher did not converge in time"
        await asyncio.sleep(0.01)


def watching(
    tmp_path: Path, body: Callable[[Path, Model], Coroutine[Any, Any, None]], compose: Path | None = None
) -> Model:
    root = tmp_path / "istio"
    root.mkdir(exist_ok=True)
    model = Model()

    async def scenario() -> None:
        watcher = ConfigWatcher(root, compose, model)
        model(watcher.initial())
        watcher.start()
        try:
            await body(root, model)
        finally:
            watcher.stop()

    asyncio.run(asyncio.wait_for(scenario(), 60))
    return model


@pytest.mark.parametrize(
    ("name", "config"),
    [
        ("vs.yaml", True),
        ("dr.yml", True),
        ("gw.json", True),
        ("notes.txt", False),
        (".vs.yaml.swp", False),
        ("vs.yaml~", False),
        (".#vs.yaml", False),
        ("4913", False),
        (".hidden.yaml", False),
        ("..data", False),
    ],
)
def test_which_names_are_config(name: str, config: bool) -> None:
    assert is_config_file(name) is config


def test_initial_scan_and_in_place_edits(tmp_path: Path) -> None:
    (tmp_path / "istio").mkdir()
    (tmp_path / "istio" / "vs.yaml").write_text("a: 1\n")

    async def body(root: Path, model: Model) -> None:
        assert model.named(root) == {"vs.yaml": b"a: 1\n"}
        with open(root / "vs.yaml", "r+b") as f:  # in place: truncate and write, as many editors do
            f.truncate(0)
            f.write(b"a: 2\n")
        await until(lambda: model.named(root) == {"vs.yaml": b"a: 2\n"})

    watching(tmp_path, body)


def test_atomic_save_with_a_temp_file_and_rename(tmp_path: Path) -> None:
    async def body(root: Path, model: Model) -> None:
        (root / "vs.yaml").write_text("v: 1\n")
        await until(lambda: model.named(root) == {"vs.yaml": b"v: 1\n"})
        tmp = root / ".vs.yaml.tmp"
        tmp.write_text("v: 2\n")
        os.replace(tmp, root / "vs.yaml")
        await until(lambda: model.named(root) == {"vs.yaml": b"v: 2\n"})

    model = watching(tmp_path, body)
    assert all(".tmp" not in name for u in model.updates for name in u.istio)


def test_vim_style_save_with_probe_swap_and_backup_files(tmp_path: Path) -> None:
    async def body(root: Path, model: Model) -> None:
        (root / "vs.yaml").write_text("v: 1\n")
        await until(lambda: model.named(root) == {"vs.yaml": b"v: 1\n"})
        (root / ".vs.yaml.swp").write_bytes(b"\0swap")
        (root / "4913").write_text("")
        (root / "4913").unlink()
        os.rename(root / "vs.yaml", root / "vs.yaml~")
        (root / "vs.yaml").write_text("v: 2\n")
        (root / "vs.yaml~").unlink()
        (root / ".#vs.yaml").symlink_to("user@host.1234")  # emacs lock: a dangling symlink
        await until(lambda: model.named(root) == {"vs.yaml": b"v: 2\n"})

    model = watching(tmp_path, body)
    reported = {Path(n).name for u in model.updates for n in u.istio}
    assert reported == {"vs.yaml"}


@pytest.mark.filterwarnings("ignore:Callback with id:RuntimeWarning")  # watchdog, on a fast mkdir -p
def test_renames_deletes_and_new_subdirectories(tmp_path: Path) -> None:
    async def body(root: Path, model: Model) -> None:
        (root / "a.yaml").write_text("a\n")
        await until(lambda: model.named(root) == {"a.yaml": b"a\n"})
        os.rename(root / "a.yaml", root / "b.yaml")
        await until(lambda: model.named(root) == {"b.yaml": b"a\n"})
        (root / "team" / "deep").mkdir(parents=True)
        (root / "team" / "deep" / "c.yaml").write_text("c\n")
        await until(lambda: model.named(root) == {"b.yaml": b"a\n", "team/deep/c.yaml": b"c\n"})
        (root / "b.yaml").unlink()
        os.rename(root / "team", root / "moved")
        await until(lambda: model.named(root) == {"moved/deep/c.yaml": b"c\n"})

    watching(tmp_path, body)


@pytest.mark.filterwarnings("ignore:Callback with id:RuntimeWarning")
def test_the_directory_itself_replaced_or_swapped(tmp_path: Path) -> None:
    async def body(root: Path, model: Model) -> None:
        (root / "a.yaml").write_text("a\n")
        await until(lambda: model.named(root) == {"a.yaml": b"a\n"})
        shutil.rmtree(root)  # rm -rf + copy, as a deploy script might
        await until(lambda: model.files == {})
        root.mkdir()
        (root / "b.yaml").write_text("b\n")
        await until(lambda: model.named(root) == {"b.yaml": b"b\n"})
        (root / "later.yaml").write_text("l\n")  # the new directory is watched, not just scanned once
        await until(lambda: model.named(root) == {"b.yaml": b"b\n", "later.yaml": b"l\n"})
        staged = root.with_name("istio.new")  # a rename swap of the whole directory
        staged.mkdir()
        (staged / "c.yaml").write_text("c\n")
        os.rename(root, root.with_name("istio.old"))
        os.rename(staged, root)
        await until(lambda: model.named(root) == {"c.yaml": b"c\n"})
        (root / "d.yaml").write_text("d\n")
        await until(lambda: model.named(root) == {"c.yaml": b"c\n", "d.yaml": b"d\n"})

    watching(tmp_path, body)


def test_rewriting_identical_content_reports_nothing(tmp_path: Path) -> None:
    async def body(root: Path, model: Model) -> None:
        (root / "a.yaml").write_text("a\n")
        (root / "b.yaml").write_text("b\n")
        await until(lambda: len(model.files) == 2)
        before = len(model.updates)
        (root / "a.yaml").write_text("a\n")  # touched, same bytes
        (root / "b.yaml").write_text("b2\n")
        await until(lambda: model.named(root).get("b.yaml") == b"b2\n")
        assert all(Path(n).name == "b.yaml" for u in model.updates[before:] for n in u.istio)

    watching(tmp_path, body)


def _configmap_generation(root: Path, stamp: str, files: dict[str, str]) -> None:
    """The layout kubelet writes for a mounted ConfigMap, swapped with one atomic rename."""
    data_dir = root / f"..{stamp}"
    data_dir.mkdir()
    for name, text in files.items():
        (data_dir / name).write_text(text)
    tmp_link = root / "..data_tmp"
    tmp_link.symlink_to(data_dir.name)
    old = os.readlink(root / "..data") if (root / "..data").is_symlink() else None
    os.rename(tmp_link, root / "..data")
    for name in files:
        if not (root / name).is_symlink():
            (root / name).symlink_to(f"..data/{name}")
    for link in root.iterdir():
        if link.is_symlink() and not link.name.startswith("..") and link.name not in files:
            link.unlink()
    if old:
        for f in (root / old).iterdir():
            f.unlink()
        (root / old).rmdir()


def test_kubernetes_configmap_symlink_swap(tmp_path: Path) -> None:
    root = tmp_path / "istio"
    root.mkdir()
    _configmap_generation(root, "2024_01_01_00_00_00.1", {"vs.yaml": "v: 1\n", "dr.yaml": "d: 1\n"})

    async def body(root: Path, model: Model) -> None:
        assert model.named(root) == {"vs.yaml": b"v: 1\n", "dr.yaml": b"d: 1\n"}  # hidden dirs not scanned twice
        _configmap_generation(root, "2024_01_01_00_01_00.2", {"vs.yaml": "v: 2\n", "gw.yaml": "g: 1\n"})
        await until(lambda: model.named(root) == {"vs.yaml": b"v: 2\n", "gw.yaml": b"g: 1\n"})

    watching(tmp_path, body)


def test_the_compose_file_is_watched_beside_other_noise(tmp_path: Path) -> None:
    compose = tmp_path / "compose.yaml"
    compose.write_text("services: {}\n")

    async def body(root: Path, model: Model) -> None:
        assert model.compose == b"services: {}\n"
        (tmp_path / "README.md").write_text("noise")  # same directory, not watched
        tmp = tmp_path / ".compose.yaml.tmp"
        tmp.write_text("services: {a: {}}\n")
        os.replace(tmp, compose)
        await until(lambda: model.compose == b"services: {a: {}}\n")

    model = watching(tmp_path, body, compose)
    assert model.files == {}


def test_the_compose_file_inside_the_istio_directory_is_not_read_as_istio_yaml(tmp_path: Path) -> None:
    (tmp_path / "istio").mkdir()
    compose = tmp_path / "istio" / "compose.yaml"
    compose.write_text("services: {}\n")
    update = ConfigScanner(tmp_path / "istio", compose).scan()
    assert update.istio == {} and update.compose == b"services: {}\n"


@pytest.mark.parametrize(
    ("event", "dest", "expected"),
    [
        ("closed", "vs.yaml", True),  # written in place and closed
        ("moved", "vs.yaml", True),  # an atomic save renames a complete file into place
        ("moved", "vs.yaml~", False),  # vim moving the old file away: the new one is not there yet
        ("moved", "..data", False),  # a ConfigMap symlink swap: files follow
        ("modified", "vs.yaml", False),
        ("created", "vs.yaml", False),
        ("deleted", "vs.yaml", False),
    ],
)
def test_which_events_say_the_writer_is_done(event: str, dest: str, expected: bool) -> None:
    from sandbox.control.watcher import settles

    assert settles(event, dest) is expected


def test_dirty_names_files_that_changed_on_disk_since_the_last_scan(tmp_path: Path) -> None:
    (tmp_path / "istio").mkdir()
    (tmp_path / "istio" / "a.yaml").write_text("a")
    (tmp_path / "compose.yaml").write_text("services: {}\n")
    scanner = ConfigScanner(tmp_path / "istio", tmp_path / "compose.yaml")
    scanner.scan()
    assert scanner.dirty() == []
    (tmp_path / "istio" / "a.yaml").write_text("changed")
    (tmp_path / "istio" / "b.yaml").write_text("new")
    (tmp_path / "compose.yaml").write_text("services: {x: {image: y}}\n")
    assert scanner.dirty() == [
        str(tmp_path / "istio" / "a.yaml"),
        str(tmp_path / "istio" / "b.yaml"),
        str(tmp_path / "compose.yaml"),
    ]
    scanner.scan()
    (tmp_path / "istio" / "a.yaml").unlink()
    assert scanner.dirty() == [str(tmp_path / "istio" / "a.yaml")]
