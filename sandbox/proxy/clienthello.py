"""Reading the first bytes of a connection as Envoy's TLS inspector does: is it a TLS ClientHello,
and which server name (SNI) does it ask for. Pure; every length is checked, so any bytes (random,
truncated, hostile) give an answer and never an exception.
"""

from __future__ import annotations

from enum import Enum

HANDSHAKE = 0x16  # TLS record type
CLIENT_HELLO = 0x01  # handshake message type
SERVER_NAME = 0x0000  # extension type
MAX_PEEK = 16 * 1024 + 5  # one TLS record: what the inspector waits for at most


class Verdict(Enum):
    TLS = "tls"
    PLAINTEXT = "plaintext"
    NEED_MORE = "need_more"  # a TLS record has started but is not all here yet


def inspect(data: bytes) -> tuple[Verdict, str]:
    """(TLS with its SNI or "", PLAINTEXT, or NEED_MORE) for the first bytes of a connection."""
    if not data:
        return Verdict.NEED_MORE, ""
    if data[0] != HANDSHAKE:
        return Verdict.PLAINTEXT, ""
    if len(data) < 3:
        return Verdict.NEED_MORE, ""
    if data[1] != 0x03:  # TLS 1.x record versions are 3.x; anything else is not TLS
        return Verdict.PLAINTEXT, ""
    if len(data) < 6:
        return Verdict.NEED_MORE, ""
    record_length = int.from_bytes(data[3:5], "big")
    if data[5] != CLIENT_HELLO or record_length < 4:
        return Verdict.PLAINTEXT, ""
    if len(data) < 5 + record_length and len(data) < MAX_PEEK:
        return Verdict.NEED_MORE, ""
    return Verdict.TLS, server_name(data[5 : 5 + record_length])


def server_name(hello: bytes) -> str:
    """The SNI host name of a ClientHello handshake message, or "" when it has none or is malformed."""
    # handshake header (4) + client_version (2) + random (32)
    pos = 4 + 2 + 32
    if len(hello) < pos + 1:
        return ""
    pos += 1 + hello[pos]  # session id
    if len(hello) < pos + 2:
        return ""
    pos += 2 + int.from_bytes(hello[pos : pos + 2], "big")  # cipher suites
    if len(hello) < pos + 1:
        return ""
    pos += 1 + hello[pos]  # compression methods
    if len(hello) < pos + 2:
        return ""
    end = min(len(hello), pos + 2 + int.from_bytes(hello[pos : pos + 2], "big"))
    pos += 2
    while pos + 4 <= end:
        kind = int.from_bytes(hello[pos : pos + 2], "big")
        size = int.from_bytes(hello[pos + 2 : pos + 4], "big")
        pos += 4
        if pos + size > end:
            return ""
        if kind == SERVER_NAME:
            return _host_name(hello[pos : pos + size])
        pos += size
    return ""


def _host_name(ext: bytes) -> str:
    if len(ext) < 2:
        return ""
    end = min(len(ext), 2 + int.from_bytes(ext[0:2], "big"))
    pos = 2
    while pos + 3 <= end:
        name_type = ext[pos]
        size = int.from_bytes(ext[pos + 1 : pos + 3], "big")
        pos += 3
        if pos + size > end:
            return ""
        if name_type == 0:
            try:
                return ext[pos : pos + size].decode("ascii").lower()
            except UnicodeDecodeError:
                return ""
        pos += size
    return ""
