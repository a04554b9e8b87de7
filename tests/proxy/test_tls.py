"""Workload TLS contexts: mutual TLS between two certificates of one mesh, keys never on disk."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from pathlib import Path
from typing import Any

import pytest

from sandbox.control.ca import MeshCA
from sandbox.proxy.tls import mesh_context


def test_a_delivered_certificate_makes_mutual_tls_contexts_without_touching_disk(tmp_path: Path) -> None:
    ca = MeshCA.load_or_create(tmp_path / "state")
    server, client = ca.issue("default", "reviews"), ca.issue("default", "productpage")
    before = set((tmp_path).rglob("*"))
    a, b = socket.socketpair()
    seen: dict[str, Any] = {}

    def serve() -> None:
        with mesh_context(server, server_side=True).wrap_socket(a, server_side=True) as tls:
            seen["peer"] = tls.getpeercert()

    thread = threading.Thread(target=serve)
    thread.start()
    with mesh_context(client, server_side=False).wrap_socket(b) as tls:
        peer = tls.getpeercert()
    thread.join(timeout=10)
    assert peer is not None and ("URI", server.spiffe_id) in peer["subjectAltName"]
    assert ("URI", client.spiffe_id) in seen["peer"]["subjectAltName"]
    assert set(tmp_path.rglob("*")) == before  # nothing new on disk


def test_a_peer_from_another_mesh_is_refused(tmp_path: Path) -> None:
    ours = MeshCA.load_or_create(tmp_path / "ours").issue("default", "reviews")
    theirs = MeshCA.load_or_create(tmp_path / "theirs").issue("default", "reviews")
    a, b = socket.socketpair()

    def serve() -> None:
        with contextlib.suppress(ssl.SSLError, OSError):  # it sees the client's "unknown CA" alert
            mesh_context(ours, server_side=True).wrap_socket(a, server_side=True).close()

    thread = threading.Thread(target=serve)
    thread.start()
    with pytest.raises((ssl.SSLError, OSError)):
        mesh_context(theirs, server_side=False).wrap_socket(b).close()
    thread.join(timeout=10)
    a.close()
    b.close()
