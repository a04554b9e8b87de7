"""OpenSSL's record work for one request and its response, alone: what mutual TLS costs at least.

    .venv/bin/python benchmarks/tls_records_micro.py [--n 200000]

Two TLS objects with the mesh's contexts (workload certificates from the mesh CA, as the sidecars
use them) talk through memory BIOs in a tight loop: the client encrypts a request, the server
decrypts it, encrypts a response, the client decrypts it; no sockets, no event loop. That is the
TLS part of one request through a mesh hop (each sidecar does one side of it), run with warm
caches: proxy_bench.py's rows (d) and (f) show what it costs in place.
"""

from __future__ import annotations

import argparse
import contextlib
import ssl
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sandbox.control.ca import MeshCA
from sandbox.proxy.tls import mesh_context

REQUEST = b"GET / HTTP/1.1\r\nhost: server:9080\r\nx-request-id: 0123456789abcdef\r\n\r\n"
RESPONSE = b"HTTP/1.1 200 OK\r\ncontent-length: 20\r\nserver: envoy\r\n\r\nhello from upstream\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--n", type=int, default=200_000, help="round trips per run (default 200000)")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ca = MeshCA.load_or_create(Path(tmp))
        server_ctx = mesh_context(ca.issue("default", "server"), server_side=True)
        client_ctx = mesh_context(ca.issue("default", "client"), server_side=False)
    s_in, s_out, c_in, c_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    client = client_ctx.wrap_bio(c_in, c_out)
    for _ in range(5):
        for side in (client, server):
            with contextlib.suppress(ssl.SSLWantReadError):
                side.do_handshake()
        s_in.write(c_out.read())
        c_in.write(s_out.read())
    print(f"{client.version()} {client.cipher()[0]}")
    best = float("inf")
    for _ in range(args.runs):
        start = time.perf_counter()
        for _ in range(args.n):
            client.write(REQUEST)
            s_in.write(c_out.read())
            server.read(65536)
            server.write(RESPONSE)
            c_in.write(s_out.read())
            client.read(65536)
        best = min(best, (time.perf_counter() - start) / args.n * 1e6)
    print(f"one request and its response through TLS records: {best:.2f} us (best of {args.runs})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
