"""HTTP for tests: a Response with `status`, `headers`, `text`, `json()`, and the ways to send.

- from the host: a plain request (through the ingress, or to any address); a URL on the ingress
  port with a host name is sent to 127.0.0.1 with that Host header, as `curl --resolve` does, so
  Gateway hosts such as `bookinfo.example.com` work without DNS;
- from a workload (`kubectl exec WORKLOAD -- curl` in Kubernetes): the request goes to that
  workload's sidecar outbound listener in absolute form, `GET http://reviews:9080/ HTTP/1.1`, as
  the app's HTTP_PROXY sends it, so the routing rules of that workload apply. The local runtime
  records the listener's address; in the compose runtime it is not published, so the request is
  sent from inside the sidecar's container (`docker compose exec`).
"""

from __future__ import annotations

import base64
import http.client
import json
import subprocess
import time
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

DEFAULT_TIMEOUT = 30.0


class Headers(Mapping[str, str]):
    """Response headers, looked up in any case; repeated ones joined with ", " (RFC 9110 5.3)."""

    def __init__(self, pairs: Sequence[tuple[str, str]] = ()) -> None:
        self.pairs = tuple(pairs)
        self._index: dict[str, str] = {}
        for name, value in self.pairs:
            key = name.lower()
            self._index[key] = f"{self._index[key]}, {value}" if key in self._index else value

    def __getitem__(self, name: str) -> str:
        return self._index[name.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)

    def __repr__(self) -> str:
        return f"Headers({dict(self._index)!r})"


@dataclass(frozen=True)
class Response:
    status: int
    headers: Headers
    body: bytes
    method: str = "GET"
    url: str = ""
    elapsed: float = 0.0  # seconds, request sent to body read
    sent_from: str | None = None  # the workload it was sent from (None: the host)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.body)

    def __repr__(self) -> str:
        where = f" from {self.sent_from}" if self.sent_from else ""
        return f"<Response {self.status} to {self.method} {self.url}{where} in {self.elapsed:.3f}s>"


class RequestFailed(Exception):
    """The request got no HTTP answer (connection refused, timed out); the message says where."""


@dataclass(frozen=True)
class Target:
    """Where the bytes go: `host:port`, and whether the request line carries the absolute URL."""

    host: str
    port: int
    absolute: bool = False
    host_header: str | None = None


def split(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path with query) of an http URL."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"not an http:// URL: {url!r}")
    path = parts.path or "/"
    if parts.query:
        path += f"?{parts.query}"
    return parts.scheme, parts.hostname, parts.port or 80, path


def send(
    method: str,
    url: str,
    target: Target,
    headers: Mapping[str, str] | None = None,
    body: bytes | str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    sent_from: str | None = None,
) -> Response:
    _, host, port, path = split(url)
    data = body.encode() if isinstance(body, str) else body
    outgoing = dict(headers or {})
    if not any(k.lower() == "host" for k in outgoing):
        outgoing["Host"] = target.host_header or (host if port == 80 else f"{host}:{port}")
    began = time.monotonic()
    connection = http.client.HTTPConnection(target.host, target.port, timeout=timeout)
    try:
        connection.request(method, url if target.absolute else path, body=data, headers=outgoing)
        answer = connection.getresponse()
        payload = answer.read()
    except (OSError, http.client.HTTPException) as exc:
        via = f" (through {target.host}:{target.port})" if (target.host, target.port) != (host, port) else ""
        raise RequestFailed(f"{method} {url}{via}: {exc}") from None
    finally:
        connection.close()
    return Response(
        answer.status,
        Headers(answer.getheaders()),
        payload,
        method,
        url,
        time.monotonic() - began,
        sent_from,
    )


# Run inside a sidecar container: the request to its outbound listener, the answer as JSON.
_IN_CONTAINER = """
import base64, http.client, json, sys, time
method, url, headers, body, timeout, port = json.loads(sys.argv[1])
began = time.monotonic()
c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
c.request(method, url, body=base64.b64decode(body) if body is not None else None, headers=headers)
r = c.getresponse()
data = r.read()
print(json.dumps({"status": r.status, "headers": r.getheaders(), "body": base64.b64encode(data).decode(),
                  "elapsed": time.monotonic() - began}))
"""


@dataclass(frozen=True)
class ContainerExec:
    """Send from inside a compose sidecar: `docker compose ... exec -T SERVICE python3 -c ...`."""

    compose: Sequence[str]  # the runtime's base command (the record's extra["compose"])
    service: str  # the sidecar's Compose service
    port: int = 15001  # its outbound listener

    def send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        body: bytes | str | None,
        timeout: float,
        sent_from: str,
    ) -> Response:
        _, host, port, _ = split(url)
        outgoing = dict(headers or {})
        outgoing.setdefault("Host", host if port == 80 else f"{host}:{port}")
        data = body.encode() if isinstance(body, str) else body
        encoded = base64.b64encode(data).decode() if data is not None else None
        argument = json.dumps([method, url, outgoing, encoded, timeout, self.port])
        command = [*self.compose, "exec", "-T", self.service, "python3", "-c", _IN_CONTAINER, argument]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout + 30, check=False)
        if done.returncode != 0:
            raise RequestFailed(f"{method} {url} from {sent_from}: {done.stderr.strip() or done.stdout.strip()}")
        answer = json.loads(done.stdout)
        pairs = [(str(k), str(v)) for k, v in answer["headers"]]
        return Response(
            answer["status"],
            Headers(pairs),
            base64.b64decode(answer["body"]),
            method,
            url,
            float(answer["elapsed"]),
            sent_from,
        )
