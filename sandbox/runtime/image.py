"""The `sandbox` image: decide how to build it, tell whether the one on the engine is stale, build it.

One image (compose/Dockerfile) plays every role. It is tagged `sandbox:latest` and
`sandbox:<content hash>`, the hash covering everything that goes into it (the Dockerfile and its
scripts, the package source, samples/, the dependency list, the base image's id and the build
mode), so `up` rebuilds exactly when something changed and otherwise starts at once.

Two ways to build, chosen by SANDBOX_IMAGE_BUILD (auto, online, offline):
- online (a laptop): FROM python:3.12-slim, pip reads PyPI inside the build;
- offline (no registry reachable, as on CI machines): FROM the `sandbox-base:offline` image that
  ../shared/docker/ensure-engine makes from Debian packages, with a wheelhouse built on the host
  (`pip wheel`, into compose/build/wheels, kept between builds) copied into the context.
`auto` builds offline when the offline base image exists on the engine, online otherwise.
The context is staged under compose/build/context, never the repo root (vfs copies all of it).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sandbox.proxy import native
from sandbox.runtime.base import RuntimeFailure
from sandbox.runtime.docker_engine import Engine

DEFAULT_BASE_IMAGE = "python:3.12-slim"
DEFAULT_OFFLINE_BASE = "sandbox-base:offline"
DEFAULT_REPOSITORY = "sandbox"
BUILD_MODES = ("auto", "online", "offline")
SCRIPTS = ("Dockerfile", "install.sh", "probe")
BUILD_TIMEOUT = 1800.0
PRUNE_AFTER = dt.timedelta(hours=1)


@dataclass(frozen=True)
class ImageSettings:
    base_image: str = DEFAULT_BASE_IMAGE  # SANDBOX_BASE_IMAGE
    offline_base: str = DEFAULT_OFFLINE_BASE  # SANDBOX_OFFLINE_BASE (the name ensure-engine uses too)
    build_mode: str = "auto"  # SANDBOX_IMAGE_BUILD
    repository: str = DEFAULT_REPOSITORY  # SANDBOX_IMAGE

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> ImageSettings:
        mode = env.get("SANDBOX_IMAGE_BUILD", "auto") or "auto"
        if mode not in BUILD_MODES:
            raise RuntimeFailure(f"SANDBOX_IMAGE_BUILD must be one of {', '.join(BUILD_MODES)}, not {mode!r}")
        return cls(
            env.get("SANDBOX_BASE_IMAGE") or DEFAULT_BASE_IMAGE,
            env.get("SANDBOX_OFFLINE_BASE") or DEFAULT_OFFLINE_BASE,
            mode,
            env.get("SANDBOX_IMAGE") or DEFAULT_REPOSITORY,
        )


@dataclass(frozen=True)
class ImagePlan:
    root: Path  # the source checkout (holds compose/ and sandbox/)
    offline: bool
    base: str
    content_hash: str
    repository: str = DEFAULT_REPOSITORY

    @property
    def tag(self) -> str:
        return f"{self.repository}:{self.content_hash[:12]}"

    @property
    def latest(self) -> str:
        return f"{self.repository}:latest"

    @property
    def mode(self) -> str:
        return "offline" if self.offline else "online"


def source_root() -> Path:
    """The checkout this package runs from; the image can only be built from one."""
    root = Path(__file__).resolve().parents[2]
    if not (root / "compose" / "Dockerfile").is_file():
        raise RuntimeFailure(
            f"compose/Dockerfile not found beside the sandbox package ({root}): "
            "the image builds from a source checkout of sandbox"
        )
    return root


def requirements(root: Path) -> list[str]:
    """The package's runtime dependencies, as pyproject.toml lists them."""
    data = tomllib.loads((root / "pyproject.toml").read_text())
    return [str(d) for d in data["project"]["dependencies"]]


# Build products, not source: bytecode, and the host's mypyc extensions (carried on their own, by
# compiled_data_path, only when they match the source).
_NOT_SOURCE = (".pyc", ".pyo", ".so", ".stamp")
_IGNORE = shutil.ignore_patterns("__pycache__", *(f"*{suffix}" for suffix in _NOT_SOURCE))


def compiled_data_path(root: Path) -> list[tuple[str, Path]]:
    """The host's compiled data path as (path in the context, file), or [] when the checkout has none
    that matches its source (sandbox/proxy/native.py). The image's Python uses it where its version,
    platform and C library match the host's (as with the offline base on a Debian 12 host); elsewhere
    it never sees the files (another version's suffix) or falls back to the source when they fail to load.
    The modules sit in sandbox/proxy; the library mypyc links them into sits at the top level."""
    proxy = root / "sandbox" / "proxy"
    library = native.shared_library(proxy)
    if not library or not native.status(proxy, env={})[0]:
        return []
    libraries = sorted(p for p in root.glob(f"{library}.*.so") if p.is_file())
    if not libraries:
        return []  # an install into site-packages: the checkout holds the modules but not their library
    files = sorted(p for p in proxy.iterdir() if p.suffix == ".so" or p.name == native.STAMP)
    return [(f"sandbox/proxy/{p.name}", p) for p in files] + [(f"native/{p.name}", p) for p in libraries]


def _tree_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(
        p for p in directory.rglob("*") if p.is_file() and "__pycache__" not in p.parts and p.suffix not in _NOT_SOURCE
    )


def content_hash(root: Path, offline: bool, base: str, base_id: str) -> str:
    """sha256 over what goes into the image (names and bytes, in a fixed order)."""
    digest = hashlib.sha256()

    def add(name: str, data: bytes) -> None:
        digest.update(len(name).to_bytes(4, "big") + name.encode())
        digest.update(len(data).to_bytes(8, "big") + data)

    add("mode", b"offline" if offline else b"online")
    add("base", f"{base}@{base_id}".encode())
    add("requirements", "\n".join(requirements(root)).encode())
    for script in SCRIPTS:
        add(f"compose/{script}", (root / "compose" / script).read_bytes())
    for top in ("sandbox", "samples"):
        for path in _tree_files(root / top):
            add(path.relative_to(root).as_posix(), path.read_bytes())
    for name, path in compiled_data_path(root):
        add(name, path.read_bytes())
    return digest.hexdigest()


def plan_image(engine: Engine, settings: ImageSettings | None = None, root: Path | None = None) -> ImagePlan:
    settings = settings or ImageSettings.from_env()
    root = root or source_root()
    offline_id = engine.image_id(settings.offline_base)
    if settings.build_mode == "offline" and offline_id is None:
        raise RuntimeFailure(
            f"SANDBOX_IMAGE_BUILD=offline but the image {settings.offline_base} is not on the engine "
            "(make it with ../shared/docker/ensure-engine)"
        )
    offline = settings.build_mode == "offline" or (settings.build_mode == "auto" and offline_id is not None)
    base = settings.offline_base if offline else settings.base_image
    base_id = (offline_id if offline else engine.image_id(base)) or "unpulled"
    return ImagePlan(root, offline, base, content_hash(root, offline, base, base_id), settings.repository)


def ensure_image(engine: Engine, plan: ImagePlan, log_file: Path, say: Callable[[str], None] = lambda _: None) -> str:
    """The image tag to run: the existing one when current, else built now (output in log_file).
    One build at a time per checkout (a file lock): meshes started at once share the build."""
    build = plan.root / "compose" / "build"
    if engine.image_id(plan.tag) is None:
        with _locked(build / ".lock"):
            if engine.image_id(plan.tag) is None:  # not built meanwhile by another `up`
                _build(engine, plan, build, log_file, say)
    if engine.image_id(plan.latest) != engine.image_id(plan.tag):
        engine.tag(plan.tag, plan.latest)
    return plan.tag


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build(engine: Engine, plan: ImagePlan, build: Path, log_file: Path, say: Callable[[str], None]) -> None:
    context = stage_context(plan.root, build / f"context-{plan.content_hash[:12]}")
    if plan.offline:
        say("building the wheelhouse on the host (pip wheel)")
        wheels = build_wheelhouse(requirements(plan.root), build / "wheels", log_file)
        _link_tree(wheels, context / "wheels")
    say(f"building {plan.tag} ({plan.mode}, from {plan.base}); log: {log_file}")
    command = [
        *_nice(),
        "docker",
        "build",
        "--build-arg",
        f"BASE_IMAGE={plan.base}",
        "-t",
        plan.tag,
        "-t",
        plan.latest,
        str(context),
    ]
    try:
        _run_logged(command, log_file, f"building the image {plan.tag}")
    finally:
        shutil.rmtree(context, ignore_errors=True)
    prune_stale(engine, plan)


def prune_stale(engine: Engine, plan: ImagePlan, keep: dt.timedelta = PRUNE_AFTER) -> list[str]:
    """Drop content-hash tags of the image older than `keep` (each is a full copy under vfs). The
    engine keeps any a container uses; the age spares one another `up` has just built."""
    removed = []
    now = dt.datetime.now(dt.UTC)
    for tag in engine.image_tags(plan.repository):
        suffix = tag.rpartition(":")[2]
        hashed = len(suffix) == 12 and all(c in "0123456789abcdef" for c in suffix)
        if not hashed or tag in (plan.tag, plan.latest):
            continue
        created = engine.image_created(tag)
        if created is not None and now - created > keep and engine.remove_image(tag):
            removed.append(tag)
    return removed


def stage_context(root: Path, context: Path) -> Path:
    """A fresh build context: the scripts, requirements.txt, the package source, samples/ and the
    host's compiled data path when it has one (native/ holds mypyc's shared library)."""
    shutil.rmtree(context, ignore_errors=True)
    context.mkdir(parents=True)
    for script in SCRIPTS:
        shutil.copy2(root / "compose" / script, context / script)
    (context / "requirements.txt").write_text("\n".join(requirements(root)) + "\n")
    shutil.copytree(root / "sandbox", context / "sandbox", ignore=_IGNORE)
    if (root / "samples").is_dir():
        shutil.copytree(root / "samples", context / "samples", ignore=_IGNORE)
    else:
        (context / "samples").mkdir()
    (context / "native").mkdir()
    for name, path in compiled_data_path(root):
        shutil.copy2(path, context / name)
    return context


def build_wheelhouse(reqs: Iterable[str], wheels: Path, log_file: Path) -> Path:
    """`pip wheel` the dependencies on the host (containers here cannot reach PyPI); reused while the
    requirement list is unchanged. The host's Python must match the offline base's (3.11, bookworm)."""
    text = "\n".join(reqs) + "\n"
    stamp = wheels / "requirements.txt"
    if stamp.is_file() and stamp.read_text() == text and any(wheels.glob("*.whl")):
        return wheels
    shutil.rmtree(wheels, ignore_errors=True)
    wheels.mkdir(parents=True)
    (wheels.parent / "requirements.in").write_text(text)
    command = [*_nice(), sys.executable, "-m", "pip", "wheel", "-q", "-w", str(wheels), "-r"]
    _run_logged([*command, str(wheels.parent / "requirements.in")], log_file, "building the wheelhouse")
    stamp.write_text(text)
    return wheels


def _link_tree(source: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for path in source.glob("*.whl"):
        try:
            os.link(path, target / path.name)
        except OSError:
            shutil.copy2(path, target / path.name)


def _nice() -> list[str]:
    return ["nice", "-n", "10"] if shutil.which("nice") else []


def _run_logged(command: list[str], log_file: Path, what: str) -> None:
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        log.write(f"$ {' '.join(command)}\n".encode())
        log.flush()
        try:
            done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, timeout=BUILD_TIMEOUT, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise RuntimeFailure(f"{what} failed: {exc}") from None
    if done.returncode != 0:
        tail = log_file.read_text(errors="replace").splitlines()[-15:]
        raise RuntimeFailure(f"{what} failed (exit {done.returncode}); last lines of {log_file}:\n" + "\n".join(tail))
