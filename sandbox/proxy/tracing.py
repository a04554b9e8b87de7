"""Spans in Zipkin v2 JSON (Jaeger ingests it on :9411 `/api/v2/spans`), batched and sent in the
background so a request never waits for the tracing backend.

One span per hop, as Envoy's Zipkin tracer writes it (docs/reference/istio-semantics.md §3.2): named after the
route's operation (`reviews.default.svc.cluster.local:9080/*`), kind CLIENT on the outbound side
and SERVER on the inbound side (sharing the client's span id), service name `<app>.<namespace>`,
with Envoy's tags (http.method, http.url, http.protocol, http.status_code, response_flags,
upstream_cluster, node_id, component=proxy, guid:x-request-id, peer.address, request_size,
response_size, error on 5xx) and Istio's (istio.canonical_service, istio.canonical_revision,
istio.namespace, istio.mesh_id, istio.cluster_id).

The reporter keeps finished records in a bounded list; when it is full, new spans are dropped
and counted (`spans_dropped`). Turning records into JSON happens at send time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from json.encoder import encode_basestring_ascii as _json_str  # the C string encoder json.dumps uses
from typing import Any

from sandbox.proxy.metrics import Peer
from sandbox.proxy.record import RequestRecord
from sandbox.xds.identity import ProxyIdentity

log = logging.getLogger(__name__)
DEFAULT_ZIPKIN_URL = "http://127.0.0.1:9411/api/v2/spans"
Post = Callable[[bytes], Awaitable[None]]


def _address(hostport: str | None) -> dict[str, Any] | None:
    if not hostport:
        return None
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        return None
    host = host.strip("[]")
    endpoint: dict[str, Any] = {"port": int(port)}
    endpoint["ipv6" if ":" in host else "ipv4"] = host
    return endpoint


class SpanBuilder:
    """Everything about this proxy a span repeats: service name, node id, Istio tags."""

    def __init__(self, identity: ProxyIdentity, ip: str = "127.0.0.1", mesh_id: str = "cluster.local") -> None:
        peer = Peer.from_identity(identity, mtls=False)
        app = identity.app or identity.labels.get("app") or identity.workload
        self.service_name = f"{app}.{identity.namespace}" if app else "istio-proxy"
        node_type = "router" if identity.kind == "router" else "sidecar"
        self.node_id = (
            f"{node_type}~{ip}~{identity.workload}.{identity.namespace}~{identity.namespace}.svc.cluster.local"
        )
        self.local_endpoint = {"serviceName": self.service_name, "ipv4": ip}
        self.istio_tags = {
            "istio.canonical_service": peer.canonical_service,
            "istio.canonical_revision": peer.canonical_revision,
            "istio.namespace": identity.namespace,
            "istio.mesh_id": mesh_id,
            "istio.cluster_id": peer.cluster,
        }
        # span_json's fixed parts, serialised once
        self.set_custom_tags({})

    def set_custom_tags(self, tags: Mapping[str, str]) -> None:
        """The Telemetry API's literal and environment tags: the same on every span."""
        fixed = {"component": "proxy", "node_id": self.node_id, **self.istio_tags, **tags}
        self._fixed_tags = json.dumps(fixed, separators=(",", ":"))[1:-1]
        self._local = json.dumps(self.local_endpoint, separators=(",", ":"))

    def span_json(self, rec: RequestRecord) -> str:
        """One Zipkin v2 span as JSON, written out without building the object: fixed parts are
        serialised once, variable strings go through json's C string encoder."""
        ctx = rec.trace
        assert ctx is not None
        e = _json_str
        code = rec.response_code
        cluster = e(rec.upstream_cluster or "-")
        tags = (
            f'{{{self._fixed_tags},"guid:x-request-id":{e(rec.request_id)},"http.method":{e(rec.method)},'
            f'"http.url":{e(f"{rec.scheme}://{rec.authority}{rec.path}")},"http.protocol":{e(rec.protocol)},'
            f'"http.status_code":"{code}","response_flags":{e(rec.response_flags or "-")},'
            f'"request_size":"{rec.bytes_received}","response_size":"{rec.bytes_sent}",'
            f'"upstream_cluster":{cluster},"upstream_cluster.name":{cluster}'
        )
        if rec.downstream_remote_address:
            tags += f',"peer.address":{e(rec.downstream_remote_address.rpartition(":")[0].strip("[]"))}'
        if rec.upstream_host:
            tags += f',"upstream_address":{e(rec.upstream_host)}'
        if rec.user_agent:
            tags += f',"user_agent":{e(rec.user_agent)}'
        if code >= 500 or code == 0:
            tags += ',"error":"true"'
        for name, value in rec.span_tags:  # the Telemetry API's header tags
            tags += f",{e(name)}:{e(value)}"
        name = rec.operation or f"{rec.authority}{rec.path.partition('?')[0]}"
        out = (
            f'{{"traceId":{e(ctx.trace_id)},"id":{e(ctx.span_id)},"name":{e(name)},"kind":{e(ctx.kind)},'
            f'"timestamp":{int(rec.start_time * 1_000_000)},"duration":{max(1, int(rec.duration * 1_000_000))},'
            f'"localEndpoint":{self._local},"tags":{tags}}}'
        )
        if ctx.parent_id:
            out += f',"parentId":{e(ctx.parent_id)}'
        if ctx.shared:
            out += ',"shared":true'
        remote = _address(rec.upstream_host if ctx.kind == "CLIENT" else rec.downstream_remote_address)
        if remote is not None:
            out += f',"remoteEndpoint":{json.dumps(remote, separators=(",", ":"))}'
        return out + "}"


class SpanReporter:
    """A bounded queue of finished records, sent as Zipkin v2 JSON batches by `run()`."""

    def __init__(
        self,
        builder: SpanBuilder,
        url: str = DEFAULT_ZIPKIN_URL,
        post: Post | None = None,
        max_queue: int = 4096,
        batch_size: int = 256,
        flush_interval: float = 1.0,
    ) -> None:
        self.builder = builder
        self.url = url
        self._post = post
        self.max_queue = max_queue
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self._queue: list[RequestRecord] = []
        self._wake: asyncio.Event | None = None
        self.spans_sent = 0
        self.spans_dropped = 0
        self.send_failures = 0
        self._session: Any = None

    def submit(self, rec: RequestRecord) -> None:
        """Never blocks: queue the record, or drop and count it when the queue is full."""
        queue = self._queue
        if len(queue) >= self.max_queue:
            self.spans_dropped += 1
            return
        queue.append(rec.detached())
        if len(queue) >= self.batch_size and self._wake is not None:
            self._wake.set()

    def encode(self, records: list[RequestRecord]) -> bytes:
        return f"[{','.join(map(self.builder.span_json, records))}]".encode()

    async def flush(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[: self.batch_size], self._queue[self.batch_size :]
            body = self.encode(batch)
            try:
                await (self._post or self._aiohttp_post)(body)
                self.spans_sent += len(batch)
            except Exception as exc:  # the backend being away must never hurt the proxy
                self.send_failures += 1
                self.spans_dropped += len(batch)
                log.debug("sending %d spans to %s failed: %s", len(batch), self.url, exc)

    async def run(self) -> None:
        """Send batches every `flush_interval`, or sooner when a batch fills; cancel to stop."""
        self._wake = asyncio.Event()
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.flush_interval)
                self._wake.clear()
                await self.flush()
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.flush())
            await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _aiohttp_post(self, body: bytes) -> None:
        import aiohttp

        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        async with self._session.post(self.url, data=body, headers={"Content-Type": "application/json"}) as resp:
            if resp.status >= 300:
                raise RuntimeError(f"HTTP {resp.status}")
