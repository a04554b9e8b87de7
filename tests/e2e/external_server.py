"""A server outside the mesh for the egress tasks: plain HTTP, HTTPS, and HTTPS that wants a client
certificate, each answering what it saw as JSON (so a test reads it through the mesh, whichever
runtime it runs on):

    python3 external_server.py CERT_DIR [--bind 127.0.0.1] [--ports HTTP,HTTPS,MUTUAL]

CERT_DIR holds tls.crt, tls.key and ca.crt (the CA that signs client certificates too). Port 0
picks a free port; the ports in use are printed as one JSON line on stdout once all listen.
Answers: {"tls": bool, "sni": the server name asked for, "client": the client certificate's CN,
"path": ..., "host": the Host header}.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


class Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # http.server's name for the GET handler
        tls = getattr(self.connection, "getpeercert", None)
        peer = tls() if tls else None
        client = next((v for rdn in (peer or {}).get("subject", ()) for k, v in rdn if k == "commonName"), "")
        seen = {
            "tls": tls is not None,
            "sni": getattr(self.connection, "sni", ""),
            "client": client,
            "path": self.path,
            "host": self.headers.get("host", ""),
        }
        body = json.dumps(seen).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(f"{self.address_string()} {format % args}\n")


def tls_context(certs: Path, want_client: bool) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certs / "tls.crt", certs / "tls.key")
    if want_client:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cafile=str(certs / "ca.crt"))

    def remember(sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        sock.sni = name or ""  # type: ignore[attr-defined]  # read back by the handler

    ctx.sni_callback = remember
    return ctx


def serve(certs: Path, bind: str, ports: list[int]) -> list[ThreadingHTTPServer]:
    servers = []
    for port, tls in zip(ports, (None, False, True), strict=True):
        server = ThreadingHTTPServer((bind, port), Echo)
        server.daemon_threads = True
        if tls is not None:
            server.socket = tls_context(certs, want_client=tls).wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
    return servers


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("certs", type=Path)
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--ports", default="0,0,0")
    args = parser.parse_args()
    servers = serve(args.certs, args.bind, [int(p) for p in args.ports.split(",")])
    names = ("http", "https", "mutual")
    print(json.dumps({n: s.server_address[1] for n, s in zip(names, servers, strict=True)}), flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()


if __name__ == "__main__":
    main()
