from __future__ import annotations

import datetime as dt
import logging
import os
import random
import socket
import ssl
import stat
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtensionOID

from sandbox.control.ca import DEFAULT_WORKLOAD_TTL, MeshCA, WorkloadCertificate, parsed, rotation_time

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> MeshCA:
    return MeshCA.load_or_create(tmp_path_factory.mktemp("state") / "ca")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_root_is_created_owner_only_and_reused_on_restart(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = MeshCA.load_or_create(state)
    assert mode(state) == 0o700
    assert mode(state / "root-key.pem") == 0o600
    assert sorted(p.name for p in state.iterdir()) == ["root-cert.pem", "root-key.pem"]
    again = MeshCA.load_or_create(state)
    assert again.root_pem == first.root_pem
    # a cert issued after the restart chains to the root issued before it
    parsed(again.issue("default", "reviews")).verify_directly_issued_by(first.root_cert)


def test_workload_certificate_carries_the_spiffe_id_and_a_24h_default_ttl(ca: MeshCA) -> None:
    issued = ca.issue("foo", "sleep", now=T0)
    cert = parsed(issued)
    san = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["spiffe://cluster.local/ns/foo/sa/sleep"]
    assert issued.spiffe_id == "spiffe://cluster.local/ns/foo/sa/sleep"
    assert cert.not_valid_after_utc == T0 + DEFAULT_WORKLOAD_TTL == issued.not_after
    assert cert.serial_number == issued.serial
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    cert.verify_directly_issued_by(ca.root_cert)


def test_ttl_and_trust_domain_are_settings(tmp_path: Path) -> None:
    ca = MeshCA.load_or_create(tmp_path, trust_domain="example.org")
    issued = ca.issue("ns1", "sa1", ttl=dt.timedelta(seconds=30), now=T0)
    assert issued.spiffe_id == "spiffe://example.org/ns/ns1/sa/sa1"
    assert issued.not_after - T0 == dt.timedelta(seconds=30)


def _context(cert: WorkloadCertificate, server: bool) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False  # SPIFFE: the identity is the URI SAN, checked by the caller
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=cert.root_cert)
    # The key stays off disk: an anonymous memory file is the only path ssl can load it from.
    fd = os.memfd_create("workload")
    try:
        os.write(fd, (cert.cert_chain + cert.private_key).encode())
        ctx.load_cert_chain(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)
    return ctx


@pytest.mark.skipif(not hasattr(os, "memfd_create"), reason="memfd_create is Linux-only")
def test_two_workload_certificates_complete_a_mutual_tls_handshake(ca: MeshCA) -> None:
    server_cert, client_cert = ca.issue("default", "reviews"), ca.issue("default", "productpage")
    server_ctx, client_ctx = _context(server_cert, True), _context(client_cert, False)
    a, b = socket.socketpair()
    seen: dict[str, object] = {}

    def serve() -> None:
        with server_ctx.wrap_socket(a, server_side=True) as tls:
            seen["client"] = tls.getpeercert()

    thread = threading.Thread(target=serve)
    thread.start()
    with client_ctx.wrap_socket(b) as tls:
        peer = tls.getpeercert()
    thread.join(timeout=10)
    assert peer is not None and ("URI", server_cert.spiffe_id) in peer["subjectAltName"]
    client = seen["client"]
    assert isinstance(client, dict) and ("URI", client_cert.spiffe_id) in client["subjectAltName"]


def test_rotation_is_due_at_about_half_the_lifetime_with_jitter() -> None:
    start, end = T0, T0 + dt.timedelta(hours=24)
    times = [rotation_time(start, end, random.Random(seed)) for seed in range(200)]
    assert all(T0 + dt.timedelta(hours=11.75) <= t <= T0 + dt.timedelta(hours=12.25) for t in times)
    assert len(set(times)) > 150  # jittered, so a fleet does not rotate at one instant
    assert min(times) < T0 + dt.timedelta(hours=11.9) and max(times) > T0 + dt.timedelta(hours=12.1)


def test_workload_keys_never_reach_the_disk_or_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    ca = MeshCA.load_or_create(tmp_path / "state")
    issued = [ca.issue("default", f"sa{i}") for i in range(3)]
    logging.getLogger("sandbox").info("issued %r", issued)  # what a careless log line would print
    secrets = [c.private_key.splitlines()[1] for c in issued]  # a line of each key's base64 body
    on_disk = b"".join(p.read_bytes() for p in (tmp_path / "state").rglob("*") if p.is_file())
    out = capsys.readouterr()
    for secret in secrets:
        assert secret.encode() not in on_disk
        assert secret not in caplog.text and secret not in out.out + out.err
    assert "PRIVATE KEY" not in caplog.text and "PRIVATE KEY" not in repr(ca)
