"""meshConfig's `extensionProviders`, as the top-level `x-sandbox` of the Compose file declares them.

Istio's MeshConfig.ExtensionProvider, with its field names: a CUSTOM AuthorizationPolicy names one
by `provider.name`. The sidecars call `envoyExtAuthzHttp` providers; the other kinds (gRPC ext-authz,
tracing and logging providers) are read and reported as not applied (SBX705).

    x-sandbox:
      extensionProviders:
      - name: sample-ext-authz-http
        envoyExtAuthzHttp:
          service: ext-authz.default.svc.cluster.local
          port: 8000
          includeRequestHeadersInCheck: ["x-ext-authz"]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import field
from typing import Any

from sandbox.mesh.resources.common import Duration, model


@model
class EnvoyExtAuthzHttpProvider:
    service: str  # `[<namespace>/]<hostname>` of a mesh service (or ServiceEntry)
    port: int | str  # Istio's YAML often quotes it ("8000")
    timeout: Duration | None = None  # default 600s
    path_prefix: str | None = None
    fail_open: bool | None = None
    status_on_error: int | str | None = None  # default "403"
    include_request_headers_in_check: tuple[str, ...] = ()
    include_additional_headers_in_check: dict[str, str] = field(default_factory=dict)
    include_request_body_in_check: Any = None  # read, not applied: the check carries no body
    headers_to_upstream_on_allow: tuple[str, ...] = ()
    headers_to_downstream_on_allow: tuple[str, ...] = ()
    headers_to_downstream_on_deny: tuple[str, ...] = ()
    include_headers_in_check: tuple[str, ...] = ()  # deprecated name of includeRequestHeadersInCheck

    def service_fqdn(self, namespace: str, resolve: Callable[[str, str], str]) -> str:
        """`service` as a registry FQDN; a host without `<namespace>/` resolves in `namespace`."""
        where, _, host = self.service.rpartition("/")
        return resolve(host, where or namespace)

    @property
    def port_number(self) -> int | None:
        port = self.port
        if isinstance(port, int):
            return port if 0 < port < 65536 else None
        return int(port) if port.strip().isdigit() and 0 < int(port) < 65536 else None


@model
class ExtensionProvider:
    name: str
    envoy_ext_authz_http: EnvoyExtAuthzHttpProvider | None = None
    # Accepted so a real meshConfig loads; not applied here.
    envoy_ext_authz_grpc: Any = None
    zipkin: Any = None
    opentelemetry: Any = None
    envoy_file_access_log: Any = None
    envoy_otel_als: Any = None
    prometheus: Any = None

    @property
    def kind(self) -> str:
        for name in ("envoy_ext_authz_http", "envoy_ext_authz_grpc", "zipkin", "opentelemetry"):
            if getattr(self, name) is not None:
                return name
        return ""
