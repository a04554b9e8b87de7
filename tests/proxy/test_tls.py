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


def test_records_go_through_openssls_own_methods_with_the_transports_call_forms(tmp_path: Path) -> None:
    """The mesh contexts' TLS objects (DirectSSLObject) answer read(len), read(len, buffer), write
    and pending as ssl.SSLObject does: the forms uvloop's and asyncio's TLS transports call."""
    ca = MeshCA.load_or_create(tmp_path / "state")
    server_ctx = mesh_context(ca.issue("default", "reviews"), server_side=True)
    client_ctx = mesh_context(ca.issue("default", "productpage"), server_side=False)
    s_in, s_out, c_in, c_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    client = client_ctx.wrap_bio(c_in, c_out)
    assert type(server.read).__name__ == "builtin_function_or_method"  # no ssl.py frame per record
    for _ in range(5):  # the handshake, both ways through the memory BIOs
        for side in (client, server):
            with contextlib.suppress(ssl.SSLWantReadError):
                side.do_handshake()
        s_in.write(c_out.read())
        c_in.write(s_out.read())
    assert server.getpeercert() and client.getpeercert()
    assert client.write(b"GET / HTTP/1.1\r\n\r\n") == 18
    s_in.write(c_out.read())
    buffer = bytearray(64)
    assert server.read(64, buffer) == 18 and bytes(buffer[:18]) == b"GET / HTTP/1.1\r\n\r\n"
    server.write(b"HTTP/1.1 200 OK\r\n\r\n")
    c_in.write(s_out.read())
    assert client.pending() == 0 and client.read(1024) == b"HTTP/1.1 200 OK\r\n\r\n"


def test_origination_reads_a_changed_ca_file_again_and_keeps_the_last_good_one(tmp_path: Path) -> None:
    from pki import authority

    from sandbox.proxy.tls import Credentials
    from sandbox.xds.snapshot import Cluster, TLSSettings, TrafficPolicy

    ca_file = authority("partner CA").write(tmp_path / "ca.pem")
    tls = TLSSettings(mode="SIMPLE", auto=False, ca_certificates=str(ca_file))
    cluster = Cluster(
        name="outbound|443||partner.example.com",
        service="partner.example.com",
        port=443,
        traffic_policy=TrafficPolicy(tls=tls),
    )
    credentials = Credentials()

    def trusted() -> list[str]:
        origination = credentials.origination(cluster, None)
        assert origination is not None
        return [c["subject"][0][0][1] for c in origination.context.get_ca_certs()]

    assert trusted() == ["partner CA"]
    authority("renewed partner CA").write(ca_file)
    credentials.reread_changed_files()
    assert trusted() == ["renewed partner CA"] and credentials.problems() == []
    ca_file.write_bytes(b"-----BEGIN CERTIFICATE-----\nMIIB")  # half copied in
    credentials.reread_changed_files()
    assert trusted() == ["renewed partner CA"]
    assert [p for p in credentials.problems() if "keeps the files it had" in p]
