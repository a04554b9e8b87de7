"""Shared by tests/kube: export a sample as the CLI does, and read manifests back as plain data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from sandbox.kube.export import Exported, export_mesh
from sandbox.mesh.loader import collect_files

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "samples"
UPSTREAM_BOOKINFO = ROOT / "tests/fixtures/kube/bookinfo.yaml"


def export_dir(directory: Path, compose: str = "compose.yaml") -> Exported:
    istio = directory / "istio"
    sources = [(p.relative_to(istio).as_posix(), str(p), p.read_text()) for p in collect_files([istio])]
    return export_mesh((directory / compose).read_text(), str(directory / compose), sources, directory.name)


def objects(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def by_kind(exported: Exported) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for name, text in exported.files.items():
        if name != "kustomization.yaml":
            for obj in objects(text):
                out.setdefault(obj["kind"], []).append(obj)
    return out
