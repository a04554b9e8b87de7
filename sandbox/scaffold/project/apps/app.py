"""A tiny HTTP service for the sandbox demo, standard library only.

    GET /         JSON with this service's name, version and path, plus what UPSTREAM answered
    GET /healthz  "ok"

Environment: PORT (default 8080; 0 picks a free port), HOST (default 127.0.0.1), SERVICE,
VERSION, and UPSTREAM (e.g. http://api:9080/) for a service that calls another. The call goes
through HTTP_PROXY when it is set (urllib reads it): that is how the sidecar sees and routes it.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SERVICE = os.environ.get("SERVICE", "app")
VERSION = os.environ.get("VERSION", "v1")
UPSTREAM = os.environ.get("UPSTREAM", "")
# Headers a mesh app forwards so that one request is one trace (Istio asks apps to do this).
PROPAGATE = ("x-request-id", "traceparent", "tracestate", "x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid",
             "x-b3-sampled", "b3", "end-user")  # fmt: skip


def call_upstream(headers: dict[str, str]) -> tuple[int, Any]:
    """(status, body) of GET UPSTREAM; a failure is reported, never raised."""
    request = urllib.request.Request(UPSTREAM, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:  # 503 from an injected fault, 404 from a missing route...
        status, raw = exc.code, exc.read()
    except (OSError, ValueError) as exc:
        return 502, {"error": str(exc)}
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode("utf-8", "replace")


class Handler(BaseHTTPRequestHandler):
    server_version = f"{SERVICE}/{VERSION}"

    def do_GET(self) -> None:  # the name http.server dispatches GET to
        if self.path == "/healthz":
            self.reply(200, "ok\n", "text/plain")
            return
        body: dict[str, Any] = {"service": SERVICE, "version": VERSION, "path": self.path}
        status = 200
        if UPSTREAM:
            forwarded = {name: value for name in PROPAGATE if (value := self.headers.get(name))}
            upstream_status, body["upstream"] = call_upstream(forwarded)
            body["upstream_status"] = upstream_status
            status = 200 if upstream_status < 400 else 502
        self.reply(status, json.dumps(body) + "\n", "application/json")

    def reply(self, status: int, text: str, content_type: str) -> None:
        data = text.encode()
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def main() -> None:
    host = os.environ.get("HOST", "127.0.0.1")
    server = ThreadingHTTPServer((host, int(os.environ.get("PORT", "8080"))), Handler)
    print(f"{SERVICE} {VERSION} listening on http://{host}:{server.server_port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        sys.stdout.flush()


if __name__ == "__main__":
    main()
