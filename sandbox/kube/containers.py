"""A Compose service's container as a Kubernetes container (the export direction).

Compose's `entrypoint` replaces the image's ENTRYPOINT as a container's `command` does, and Compose's
`command` replaces CMD as `args` does. Compose substitutes `$VAR` from the host's environment and
reads `$$` as a literal `$`; Kubernetes reads both literally, so `$$` becomes `$` and a lone `$` is
reported. Keys with no counterpart in a Deployment are reported one by one, never dropped silently.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sandbox.kube.objects import ADAPTED, LEFT_OUT
from sandbox.mesh.diagnostics import Severity, join_path
from sandbox.mesh.topology import Workload

Report = Callable[[str, Severity, str, str], None]

TRANSLATED = {"image", "build", "command", "entrypoint", "environment", "working_dir", "labels", "expose", "ports"}
TRANSLATED |= {"pull_policy", "x-sandbox"}
PULL_POLICIES = {"always": "Always", "missing": "IfNotPresent", "if_not_present": "IfNotPresent", "never": "Never"}
# What to do instead, for the Compose keys people use most.
INSTEAD = {
    "volumes": "mount a ConfigMap or a PersistentVolumeClaim in the cluster",
    "healthcheck": "write a readinessProbe",
    "depends_on": "Kubernetes starts pods independently",
    "env_file": "use a ConfigMap or Secret",
    "deploy": "set x-sandbox.replicas for replicas",
    "networks": "every pod shares the cluster network",
    "restart": "a Deployment always restarts its pods",
}
SANDBOX_ONLY = {"local": "the local runtime's host command", "interception": "a cluster's sidecar always uses iptables"}


@dataclass(frozen=True)
class Container:
    data: dict[str, Any]
    image: str
    built_from: str | None  # the build context when Compose builds the image


def container(w: Workload, spec: dict[str, Any], project: str, path: str, report: Report) -> Container:
    data: dict[str, Any] = {"name": w.app}
    build = spec.get("build")
    built_from = None
    image = spec.get("image") if isinstance(spec.get("image"), str) else None
    if build is not None:
        context = build.get("context", ".") if isinstance(build, dict) else build
        built_from = f"{context} (Dockerfile)"
        image = image or f"{project}-{w.name}"  # the name Compose gives a built image
    data["image"] = image or ""
    policy = spec.get("pull_policy")
    if isinstance(policy, str) and policy in PULL_POLICIES:
        data["imagePullPolicy"] = PULL_POLICIES[policy]
    elif policy is not None:
        report(LEFT_OUT, Severity.WARNING, f"pull_policy '{policy}' has no Kubernetes equivalent; left out", path)
    for key, field in (("entrypoint", "command"), ("command", "args")):
        words = _words(spec.get(key), join_path(path, key), report)
        if words is not None:
            data[field] = words
    if isinstance(spec.get("working_dir"), str):
        data["workingDir"] = spec["working_dir"]
    env = _environment(spec.get("environment"), join_path(path, "environment"), report)
    if env:
        data["env"] = env
    ports = _container_ports(w, spec, path, report)
    if ports:
        data["ports"] = [{"containerPort": p} for p in ports]
    _report_left_out(w, spec, path, report)
    return Container(data, data["image"], built_from)


def _literal(value: str, path: str, report: Report) -> str:
    if "$" in value.replace("$$", ""):
        report(
            ADAPTED,
            Severity.WARNING,
            f"'{value}' uses Compose's variable substitution, which Kubernetes does not do: exported as written",
            path,
        )
    return value.replace("$$", "$")


def _words(raw: Any, path: str, report: Report) -> list[str] | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        try:
            raw = shlex.split(raw)  # as Compose splits a string command
        except ValueError as exc:
            report(LEFT_OUT, Severity.ERROR, f"cannot split the command into words: {exc}", path)
            return None
    if not isinstance(raw, list):
        return None
    return [_literal(_text(word), join_path(path, i), report) for i, word in enumerate(raw)]


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _environment(raw: Any, path: str, report: Report) -> list[dict[str, str]]:
    pairs: list[tuple[str, Any, str]] = []
    if isinstance(raw, dict):
        pairs = [(str(k), v, join_path(path, str(k))) for k, v in raw.items()]
    elif isinstance(raw, list):
        for i, item in enumerate(raw):
            key, eq, value = str(item).partition("=")
            pairs.append((key, value if eq else None, join_path(path, i)))
    env = []
    for key, value, where in pairs:
        if value is None:
            report(
                LEFT_OUT,
                Severity.WARNING,
                f"environment variable {key} takes its value from the host when Compose runs: left out",
                where,
            )
            continue
        env.append({"name": key, "value": _literal(_text(value), where, report)})
    return env


def _container_ports(w: Workload, spec: dict[str, Any], path: str, report: Report) -> list[int]:
    """The mesh port's target, the other x-sandbox.ports' targets, and what Compose exposes."""
    ports: list[int] = []
    by_port = {p.port: p.target_port or p.port for p in w.ports}
    if w.port is not None:
        ports.append(by_port.get(w.port, w.port))
    ports.extend(by_port.values())
    for key in ("expose", "ports"):
        entries = spec.get(key)
        for i, entry in enumerate(entries if isinstance(entries, list) else []):
            target, published = _compose_port(entry)
            if target is not None:
                ports.append(target)
            if published:
                report(
                    LEFT_OUT,
                    Severity.INFO,
                    f"host port {published} of workload '{w.name}' is left out: in a cluster, reach it through "
                    "the ingress gateway or `kubectl port-forward`",
                    join_path(join_path(path, key), i),
                )
    return list(dict.fromkeys(ports))


def _compose_port(entry: Any) -> tuple[int | None, str]:
    """(container port, published host part) of one `expose`/`ports` entry."""
    if isinstance(entry, dict):
        target = entry.get("target")
        return (target if isinstance(target, int) else None), str(entry.get("published") or "")
    text = str(entry).split("/")[0]
    head, _, target = text.rpartition(":")
    if "-" in target or not target.isdigit():  # a range: Kubernetes has none
        return None, head
    return int(target), head


def _report_left_out(w: Workload, spec: dict[str, Any], path: str, report: Report) -> None:
    for key in spec:
        if key in TRANSLATED or str(key).startswith("x-"):
            continue
        instead = INSTEAD.get(str(key), "a Deployment has no counterpart")
        report(
            LEFT_OUT,
            Severity.WARNING,
            f"'{key}' of workload '{w.name}' is left out of its Deployment ({instead})",
            join_path(path, str(key)),
        )
    settings = spec.get("x-sandbox")
    for key, what in SANDBOX_ONLY.items():
        if isinstance(settings, dict) and key in settings:
            report(
                LEFT_OUT,
                Severity.INFO,
                f"x-sandbox.{key} of workload '{w.name}' is left out ({what})",
                join_path(path, f"x-sandbox/{key}"),
            )
