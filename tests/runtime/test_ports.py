"""Port allocation for a local mesh: distinct, free, never a port the mesh claims itself."""

from __future__ import annotations

import socket

from sandbox.runtime.ports import PortAllocator


def test_ports_are_distinct_free_and_avoid_the_claimed_ones() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        claimed = probe.getsockname()[1]
    with PortAllocator(avoid={claimed}) as allocate:
        ports = [allocate() for _ in range(60)]
    assert len(set(ports)) == 60 and claimed not in ports
    for port in ports[:5]:  # released: a listener can bind them now
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", port))
