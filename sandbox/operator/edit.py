"""`sandbox apply` and `sandbox delete` as one library call each, and putting rules back.

What the commands do between reading their input and printing: read the Istio directory as the
control plane reads it, plan the change against it and the Compose workloads (apply.py), and the
caller writes the plan when it is not refused. The pytest fixture and the workshop edit rules
through the same calls, and put the rules they changed back with a checkpoint: the documents as
they were written, restored by the same planned, validated edit.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from sandbox.mesh.legacy.common import document as manifest
from sandbox.mesh.topology import load_compose
from sandbox.mesh.yamlsrc import dump_yaml
from sandbox.operator.apply import Input, Plan, plan_apply, plan_delete, plan_delete_keys, plan_edit
from sandbox.operator.documents import Key, YamlFile


def istio_files(istio_dir: Path) -> dict[str, str]:
    """Every YAML/JSON file of the directory, as the control plane's watcher reads it."""
    from sandbox.control.watcher import read_config_dir

    return {name: data.decode("utf-8", "replace") for name, data in read_config_dir(istio_dir).items()}


def plan_change(
    istio_dir: Path,
    compose_file: Path,
    inputs: Sequence[Input],
    *,
    deleting: bool = False,
    keys: Sequence[Key] | None = None,
) -> Plan:
    """The plan of `sandbox apply -f ...` (or `delete -f ...`, or `delete KIND NAME...` with keys)."""
    current = istio_files(istio_dir)
    topology = load_compose(compose_file)
    if keys:
        return plan_delete_keys(current, keys, topology)
    if deleting:
        return plan_delete(current, inputs, topology)
    return plan_apply(istio_dir, current, inputs, topology)


@dataclass(frozen=True)
class Checkpoint:
    """The Istio directory's resources at one moment: each one's file and document as written."""

    istio_dir: Path
    documents: Mapping[Key, tuple[str, str]]


def checkpoint(istio_dir: Path) -> Checkpoint:
    documents: dict[Key, tuple[str, str]] = {}
    for path, text in istio_files(istio_dir).items():
        parsed = YamlFile.parse(path, text)
        for chunk in parsed.chunks:
            for key in chunk.keys:
                resource = parsed.resource(key)
                if len(chunk.keys) == 1:
                    documents.setdefault(key, (path, chunk.text))
                elif resource is not None:  # one resource of a List: it comes back on its own
                    documents.setdefault(key, (path, dump_yaml(manifest(resource))))
    return Checkpoint(istio_dir, documents)


def plan_restore(saved: Checkpoint, compose_file: Path, keys: Collection[Key] | None = None) -> Plan:
    """Put `keys` (default: every resource that changed since the checkpoint) back as they were:
    each saved document written again (into its file, in place when the resource is there), each
    resource that did not exist removed; one change, validated like an apply."""
    now = checkpoint(saved.istio_dir)
    if keys is None:
        keys = {k for k in {*saved.documents, *now.documents} if saved.documents.get(k) != now.documents.get(k)}
    inputs = [
        Input(saved.documents[k][0], saved.documents[k][1], str(saved.istio_dir))
        for k in sorted(keys)
        if k in saved.documents and saved.documents[k] != now.documents.get(k)
    ]
    remove = [k for k in sorted(keys) if k not in saved.documents and k in now.documents]
    if not inputs and not remove:
        return Plan()
    return plan_edit(saved.istio_dir, istio_files(saved.istio_dir), inputs, remove, load_compose(compose_file))
