"""What an exchange needs of its client connection: the seam between forwarding and the codec.

`server.DownstreamConnection` (HTTP/1.1 over a socket) implements it; sans-io tests implement it
with a fake that records what was written. A base class, not a Protocol: compiled, the exchange's
calls through it are direct (vtable) calls, and they run several times per request.
"""

from __future__ import annotations

from mypy_extensions import mypyc_attr

from sandbox.proxy.record import RequestRecord


@mypyc_attr(allow_interpreted_subclasses=True)
class Downstream:
    keep_alive: bool  # the client did not ask to close after this request
    write_paused: bool  # the client reads slower than we write: upstreams must wait
    closed: bool
    peer_ip: str
    remote_address: str  # ip:port (DOWNSTREAM_REMOTE_ADDRESS)
    local_address: str  # ip:port (DOWNSTREAM_LOCAL_ADDRESS)
    # The connection's security, as its TLS handshake established it ("" / False in plaintext):
    tls: bool  # the connection is TLS (x-forwarded-proto https)
    peer_principal: str  # the client certificate's SPIFFE ID under mutual TLS (source.principal)
    mtls: bool  # the client presented a certificate the mesh root verified
    sni: str  # the server name the client asked for (connection.sni, REQUESTED_SERVER_NAME)
    client_cert: str  # under mutual TLS, this hop's X-Forwarded-Client-Cert element for the client

    def write(self, data: bytes) -> None:
        """Response bytes, sent in order (at the end of the loop's pass: writes.py)."""
        raise NotImplementedError

    def pause_reading(self, paused: bool) -> None:
        """Back-pressure on the request body."""
        raise NotImplementedError

    def abort(self) -> None:
        """End the connection after what was written: the response cannot be completed."""
        raise NotImplementedError

    def exchange_done(self, exchange: RequestRecord) -> None:
        """`exchange` sent its whole response (and, unless closing, read its whole request)."""
        raise NotImplementedError
