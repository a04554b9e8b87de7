"""Kiali's JSON API on the console (paths and shapes of kiali/kiali's handlers/routing.go).

    GET /api/namespaces                                   [{name, labels, cluster, counts}]
    GET /api/namespaces/graph?namespaces=&graphType=&duration=&injectServiceNodes=&responseTime=
    GET /api/namespaces/{ns}/health?type=app|workload|service&rateInterval=
    GET /api/namespaces/{ns}/apps|workloads|services[/{name}[/metrics|/traces]]
    GET /api/namespaces/{ns}/workloads/{name}/logs?tailLines=&filter=&sinceTime=   (and pods/{pod}/logs)
    GET /api/namespaces/{ns}/pods/{pod}/config_dump/{routes|clusters|endpoints|listeners|secrets|all}
    GET /api/namespaces/{ns}/istio[?validate=true], /api/namespaces/{ns}/istio/{kind}/{name}?validate=true
    GET /api/mesh/tls, /api/namespaces/{ns}/tls
    GET /api/namespaces/{ns}/security       per workload: mTLS in force per port, AuthorizationPolicies (sandbox's)
    GET /api/namespaces/{ns}/services/{name}/wizard   the wizards' starting state (sandbox's; Kiali's is client-side)
    GET /api/mesh/sync                      every sidecar's ACK of the config on disk (`sandbox wait --synced`)

Writes (create, replace, merge patch, delete, the wizards) are in changes.py.

Handlers only parse parameters and serialise: the data comes from `ConsoleData` (data.py), which
the HTML pages render too. A bad parameter is a 400 with `{"error": ...}`, an unknown object a 404,
an upstream that does not answer a 503 naming it.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from sandbox.console.data import BadRequest, ConsoleData, NotFound
from sandbox.console.reader import UpstreamError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(data: Any) -> web.Response:
    return web.Response(text=json.dumps(data, separators=(",", ":")), content_type="application/json")


def _guard(handler: Callable[[web.Request], Awaitable[Any]]) -> Handler:
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return _json(await handler(request))
        except BadRequest as exc:
            return web.json_response({"error": str(exc)}, status=400)
        except NotFound as exc:
            return web.json_response({"error": str(exc)}, status=404)
        except UpstreamError as exc:
            return web.json_response({"error": str(exc)}, status=503)

    return wrapped


def add_routes(app: web.Application, data: ConsoleData) -> None:
    def m(request: web.Request, key: str) -> str:
        return request.match_info[key]

    q = {
        "/api/namespaces": lambda r: data.namespaces(),
        "/api/namespaces/graph": lambda r: data.graph(r.query),
        "/api/mesh/tls": lambda r: data.mesh_tls(),
        "/api/namespaces/{ns}/tls": lambda r: data.namespace_tls(m(r, "ns")),
        "/api/namespaces/{ns}/health": lambda r: data.health(m(r, "ns"), r.query.get("type", "app"), r.query),
        "/api/namespaces/{ns}/apps": lambda r: data.apps(m(r, "ns")),
        "/api/namespaces/{ns}/apps/{name}": lambda r: data.app(m(r, "ns"), m(r, "name")),
        "/api/namespaces/{ns}/workloads": lambda r: data.workloads(m(r, "ns")),
        "/api/namespaces/{ns}/workloads/{name}": lambda r: data.workload(m(r, "ns"), m(r, "name")),
        "/api/namespaces/{ns}/services": lambda r: data.services(m(r, "ns")),
        "/api/namespaces/{ns}/services/{name}": lambda r: data.service(m(r, "ns"), m(r, "name")),
        "/api/namespaces/{ns}/workloads/{name}/logs": lambda r: data.logs(m(r, "ns"), m(r, "name"), r.query),
        "/api/namespaces/{ns}/pods/{pod}/logs": lambda r: data.logs(m(r, "ns"), m(r, "pod"), r.query, pod=True),
        "/api/namespaces/{ns}/pods/{pod}/config_dump/{resource}": lambda r: data.config_dump(
            m(r, "ns"), m(r, "pod"), m(r, "resource")
        ),
        "/api/namespaces/{ns}/istio": lambda r: data.istio_list(m(r, "ns"), r.query.get("validate") == "true"),
        "/api/namespaces/{ns}/istio/{kind}/{name}": lambda r: data.istio_object(m(r, "ns"), m(r, "kind"), m(r, "name")),
        "/api/namespaces/{ns}/services/{name}/wizard": lambda r: data.wizard(m(r, "ns"), m(r, "name")),
        "/api/namespaces/{ns}/security": lambda r: data.security(m(r, "ns")),
        "/api/mesh/sync": lambda r: data.sync(),
    }
    for kind, plural in (("app", "apps"), ("workload", "workloads"), ("service", "services")):
        q[f"/api/namespaces/{{ns}}/{plural}/{{name}}/metrics"] = (
            lambda r, kind=kind: data.metrics(kind, m(r, "ns"), m(r, "name"), r.query)  # type: ignore[misc]
        )
        q[f"/api/namespaces/{{ns}}/{plural}/{{name}}/traces"] = (
            lambda r, kind=kind: data.traces(kind, m(r, "ns"), m(r, "name"), r.query)  # type: ignore[misc]
        )
    for path, handler in q.items():
        app.router.add_get(path, _guard(handler))
