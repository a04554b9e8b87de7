"""The TLS inspector's reading of first bytes (clienthello.py): real ClientHellos, truncations, noise."""

from __future__ import annotations

import random
import ssl

import pytest

from sandbox.proxy.clienthello import Verdict, inspect


def client_hello(server_name: str | None = "reviews.default.svc.cluster.local", alpn: list[str] | None = None) -> bytes:
    """The first flight of a real TLS client (OpenSSL through Python's ssl), as it goes on the wire."""
    ctx = ssl.create_default_context()
    if alpn:
        ctx.set_alpn_protocols(alpn)
    if server_name is None:
        ctx.check_hostname = False
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def test_a_client_hello_is_tls_and_names_its_server() -> None:
    hello = client_hello(alpn=["istio-peer-exchange", "istio", "http/1.1"])
    assert inspect(hello) == (Verdict.TLS, "reviews.default.svc.cluster.local")


def test_a_client_hello_without_sni_is_tls_with_no_name() -> None:
    assert inspect(client_hello(server_name=None)) == (Verdict.TLS, "")


def test_http_and_other_protocols_are_plaintext() -> None:
    for first in (b"GET / HTTP/1.1\r\n", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", b"\x00\x00", b"\x16\x02\x00"):
        assert inspect(first)[0] is Verdict.PLAINTEXT, first


def test_every_truncation_of_a_client_hello_waits_for_more_and_never_fails() -> None:
    hello = client_hello()
    for cut in range(len(hello)):
        verdict, _ = inspect(hello[:cut])
        assert verdict is Verdict.NEED_MORE, cut
    assert inspect(hello)[0] is Verdict.TLS


def test_corrupted_client_hellos_never_raise() -> None:
    # A record header that promises a ClientHello, followed by noise or by a mangled real one: the
    # inspector must answer without an exception, whatever the lengths inside claim.
    rng = random.Random(1)
    hello = bytearray(client_hello())
    for _ in range(3000):
        mangled = bytearray(hello)
        for _ in range(rng.randint(1, 8)):
            mangled[rng.randrange(6, len(mangled))] = rng.randrange(256)
        verdict, name = inspect(bytes(mangled))
        assert verdict in (Verdict.TLS, Verdict.NEED_MORE)
        assert isinstance(name, str)
        noise = bytes([0x16, 0x03, 0x01]) + rng.randbytes(rng.randint(0, 600))
        inspect(noise)
