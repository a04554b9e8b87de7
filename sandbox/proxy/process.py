"""The `sandbox proxy` process: one sidecar (or the ingress gateway), until SIGTERM/SIGINT.

It runs a ProxyAgent (agent.py) on uvloop through sandbox.service, from a snapshot file and/or
subscribed to the control plane, and prints one line when it is ready. Exit codes are the
service's: 0 after a clean stop, 2 for an unusable snapshot file or a port already taken.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import ssl
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sandbox.proxy import native
from sandbox.proxy.agent import ProxyAgent, push_url
from sandbox.proxy.sidecar import ProxyOptions, load_snapshot
from sandbox.proxy.tls import MeshContexts, read_certificate_dir
from sandbox.service import StartupError
from sandbox.service import run as run_service
from sandbox.xds.certificate import WorkloadCertificate
from sandbox.xds.identity import ProxyIdentity
from sandbox.xds.messages import Hello
from sandbox.xds.snapshot import ProxySnapshot


@dataclass(frozen=True)
class Subscribe:
    """Where the sidecar gets its config (`--control-plane`) and who it says it is."""

    control_plane: str
    node: str
    identity: ProxyIdentity
    token: str = dataclasses.field(repr=False)

    @property
    def hello(self) -> Hello:
        return Hello(self.node, self.identity, self.token)


async def start(
    options: ProxyOptions,
    snapshot: ProxySnapshot | None,
    subscribe: Subscribe | None,
    on_ready: Callable[[ProxyAgent], None] | None = None,
    certificate: WorkloadCertificate | None = None,
) -> ProxyAgent:
    """A started agent: its admin ports listen, its file's snapshot (if any) is applied."""
    if subscribe is None:
        agent = ProxyAgent(options, snapshot=snapshot, on_ready=on_ready, certificate=certificate)
    else:
        url = push_url(subscribe.control_plane)
        agent = ProxyAgent(
            options,
            snapshot=snapshot,
            control_plane=url,
            hello=subscribe.hello,
            on_ready=on_ready,
            certificate=certificate,
        )
    try:
        await agent.start()
    except OSError as exc:
        await agent.stop()
        raise StartupError(str(exc.strerror or exc)) from None
    return agent


def run(
    options: ProxyOptions,
    snapshot_path: Path | None = None,
    subscribe: Subscribe | None = None,
    certs: Path | None = None,
) -> int:
    """The `sandbox proxy` command."""
    snapshot = None
    certificate = None
    try:
        if snapshot_path is not None:
            snapshot = load_snapshot(snapshot_path)
        if certs is not None:
            certificate = read_certificate_dir(certs)
            MeshContexts.of(certificate)  # a key that does not match its certificate fails here, not later
    except (ValueError, ssl.SSLError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    def ready(agent: ProxyAgent) -> None:
        snapshot = agent.snapshot
        assert snapshot is not None
        ports = " ".join(f"{name}={port}" for name, port in agent.ports.items())
        loop_name = "uvloop" if "uvloop" in type(asyncio.get_running_loop()).__module__ else "asyncio"
        print(
            f"sandbox proxy {snapshot.identity.workload} ready: {ports} version {snapshot.version} "
            f"({loop_name}, data path {native.STATUS}, pid {os.getpid()})",
            file=sys.stderr,
            flush=True,
        )

    return run_service(lambda: start(options, snapshot, subscribe, ready, certificate))
