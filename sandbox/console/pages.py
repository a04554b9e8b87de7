"""The console's pages, at Kiali's routes without its web root (`/console/overview`,
`/console/graph/namespaces`, `/console/applications`, ...). Each page renders the same data the
JSON API answers (data.py); the graph, charts and logs pages draw in the browser from that API
with the vendored libraries under /static/vendor (nothing is fetched from elsewhere)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from sandbox.console.access import Access
from sandbox.console.data import BadRequest, ConsoleData, NotFound, parse_seconds
from sandbox.console.health import HEALTHY, NA
from sandbox.console.reader import UpstreamError
from sandbox.console.views import trace_view

STATIC_DIR = Path(__file__).parent / "static"
LISTS = {"applications": "app", "workloads": "workload", "services": "service"}
CONFIG_STATES = {"valid": "Valid", "warning": "Warning", "error": "Not Valid", "na": "Not Validated"}
_request: ContextVar[web.Request | None] = ContextVar("console_request", default=None)
NEW_OBJECT = """apiVersion: networking.istio.io/v1
kind: {kind}
metadata:
  name: {name}
  namespace: {namespace}
spec:
{spec}"""
NEW_SPECS = {
    "VirtualService": "  hosts:\n  - reviews\n  http:\n  - route:\n    - destination:\n        host: reviews\n",
    "DestinationRule": "  host: reviews\n  subsets:\n  - name: v1\n    labels:\n      version: v1\n",
    "Gateway": "  selector:\n    istio: ingressgateway\n  servers:\n  - port:\n      number: 80\n"
    '      name: http\n      protocol: HTTP\n    hosts:\n    - "*"\n',
    "ServiceEntry": "  hosts:\n  - api.example.com\n  ports:\n  - number: 443\n    name: https\n"
    "    protocol: TLS\n  resolution: DNS\n",
    "PeerAuthentication": "  mtls:\n    mode: STRICT\n",
    "AuthorizationPolicy": "  selector:\n    matchLabels:\n      app: productpage\n  action: ALLOW\n  rules:\n"
    "  - from:\n    - source:\n        principals:\n        - cluster.local/ns/default/sa/bookinfo-gateway\n",
}


def config_state(validation: Mapping[str, Any] | None) -> str:
    """Kiali's Config filter: valid, warning, error (not valid) or na (not validated)."""
    if validation is None:
        return "na"
    severities = {c["severity"] for c in validation.get("checks") or ()}
    if not validation.get("valid", True) or "error" in severities:
        return "error"
    return "warning" if "warning" in severities else "valid"


class Pages:
    def __init__(
        self,
        data: ConsoleData,
        env: jinja2.Environment,
        status: Callable[[], Awaitable[dict[str, Any]]],
        clock: Callable[[], float],
        access: Access,
    ) -> None:
        self.data = data
        self.env = env
        self.status = status
        self.clock = clock
        self.access = access

    def add_routes(self, app: web.Application) -> None:
        routes: dict[str, Callable[[web.Request], Awaitable[str]]] = {
            "/console/overview": self.overview,
            "/console/graph/namespaces": self.graph,
            "/console/graph/namespaces/": self.graph,
            "/console/applications": self.listing,
            "/console/workloads": self.listing,
            "/console/services": self.listing,
            "/console/istio": self.istio_list,
            "/console/istio/new": self.istio_new,
            "/console/security": self.security,
            "/console/proxies": self.proxies,
            "/console/namespaces/{ns}/applications/{name}": self.app_details,
            "/console/namespaces/{ns}/workloads/{name}": self.workload_details,
            "/console/namespaces/{ns}/services/{name}": self.service_details,
            "/console/namespaces/{ns}/istio/{kind}/{name}": self.istio_object,
            "/console/traces/{trace_id}": self.trace,
        }
        for path, handler in routes.items():
            app.router.add_get(path, self._page(handler))

    def _page(
        self, handler: Callable[[web.Request], Awaitable[str]]
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def wrapped(request: web.Request) -> web.Response:
            _request.set(request)
            try:
                html = await handler(request)
            except NotFound as exc:
                return self._error(404, "Not found", str(exc))
            except BadRequest as exc:
                return self._error(400, "Bad request", str(exc))
            except UpstreamError as exc:
                return self._error(503, "A mesh component did not answer", str(exc))
            return web.Response(text=html, content_type="text/html")

        return wrapped

    def _error(self, status: int, title: str, message: str) -> web.Response:
        html = self.render("error.html", nav="", title=title, message=message)
        return web.Response(text=html, status=status, content_type="text/html")

    def render(self, template: str, **context: Any) -> str:
        request = _request.get()
        editable = request is not None and self.access.granted(request) and self.data.writer is not None
        writes = self.data.writer is not None and self.data.writer.enabled
        defaults = {"now": self.clock(), "refresh": None, "editable": editable and writes, "writes": writes}
        return self.env.get_template(template).render(**{**defaults, **context})

    async def _namespaces(self, request: web.Request) -> tuple[list[dict[str, Any]], list[str]]:
        namespaces = await self.data.namespaces()
        names = [n["name"] for n in namespaces]
        chosen = [n for n in request.query.get("namespaces", "").split(",") if n in names]
        if not chosen:
            chosen = [n for n in names if n != "istio-system"] or names
        return namespaces, chosen

    # -- pages -------------------------------------------------------------------------------------
    async def overview(self, request: web.Request) -> str:
        duration = parse_seconds(request.query.get("duration", ""), "duration", 60)
        namespaces, _ = await self._namespaces(request)
        status, tls = await asyncio.gather(self.status(), self._safe(self.data.mesh_tls(), {"status": "UNKNOWN"}))
        cards = []
        for ns in namespaces:
            health = await self._safe(self.data.health(ns["name"], "app", {"rateInterval": f"{duration}s"}), {})
            requests = await self._safe(self.data.requests(ns["name"], "app", f"{duration}s"), {})
            rate = sum(sum(c.values()) for r in requests.values() for c in (r.get("inbound") or {}).values())
            counts: dict[str, int] = {}
            for h in health.values():
                counts[h["status"]["status"]] = counts.get(h["status"]["status"], 0) + 1
            ns_tls = await self._safe(self.data.namespace_tls(ns["name"]), {"status": "UNKNOWN"})
            cards.append({**ns, "health": counts, "rate": rate, "tls": ns_tls["status"]})
        return self.render(
            "overview.html",
            nav="overview",
            status=status,
            namespaces=cards,
            tls=tls,
            duration=duration,
            HEALTHY=HEALTHY,
        )

    async def _safe(self, awaitable: Awaitable[Any], default: Any) -> Any:
        try:
            return await awaitable
        except (UpstreamError, BadRequest, NotFound):
            return default

    async def graph(self, request: web.Request) -> str:
        namespaces, chosen = await self._namespaces(request)
        graph_type = request.query.get("graphType", "versionedApp")
        return self.render(
            "graph.html", nav="graph", namespaces=namespaces, chosen=chosen, graph_type=graph_type,
            duration=request.query.get("duration", "60s"),
            refresh_interval=request.query.get("refresh", "10"),
        )  # fmt: skip

    async def listing(self, request: web.Request) -> str:
        page = request.path.rsplit("/", 1)[-1]
        kind = LISTS[page]
        namespaces, chosen = await self._namespaces(request)
        rows: list[dict[str, Any]] = []
        for ns in chosen:
            if kind == "app":
                rows += (await self.data.apps(ns))["applications"]
            elif kind == "workload":
                rows += (await self.data.workloads(ns))["workloads"]
            else:
                rows += (await self.data.services(ns))["services"]
        return self.render("list.html", nav=page, page=page, kind=kind, rows=rows, namespaces=namespaces, chosen=chosen)

    async def istio_list(self, request: web.Request) -> str:
        """Every object with its kind, namespace, file and validation; Kiali's filters (type, name,
        config state) as query parameters."""
        namespaces, chosen = await self._namespaces(request)
        q = request.query
        kind, name, state = q.get("kind", ""), q.get("name", "").strip().lower(), q.get("config", "")
        rows, kinds = [], set()
        for ns in chosen:
            found = await self.data.istio_list(ns, validate=True)
            validations = found["validations"]
            for k, items in found["resources"].items():
                kinds.add(k)
                for item in items:
                    v = validations.get(k.lower(), {}).get(f"{item['name']}.{ns}")
                    rows.append({**item, "validation": v, "state": config_state(v)})
        shown = [
            r
            for r in rows
            if (not kind or r["kind"] == kind) and (not name or name in str(r["name"]).lower())
            and (not state or r["state"] == state)
        ]  # fmt: skip
        return self.render(
            "istio_list.html", nav="istio", rows=shown, total=len(rows), namespaces=namespaces, chosen=chosen,
            kinds=sorted(kinds | {kind} - {""}), kind=kind, name=q.get("name", ""), state=state, states=CONFIG_STATES,
        )  # fmt: skip

    async def istio_new(self, request: web.Request) -> str:
        """A new object, written as YAML in the editor and created through the config API."""
        from sandbox.mesh.resources import KINDS, lookup_kind

        namespaces, chosen = await self._namespaces(request)
        info = lookup_kind(request.query.get("kind", "VirtualService")) or KINDS["VirtualService"]
        namespace = chosen[0] if chosen else "default"
        text = NEW_OBJECT.format(kind=info.kind, name="my-" + info.kind.lower(), namespace=namespace,
                                 spec=NEW_SPECS.get(info.kind, "  {}\n"))  # fmt: skip
        if info.group != "networking.istio.io":
            text = text.replace("networking.istio.io/v1", f"{info.group}/v1", 1)
        obj = {
            "namespace": {"name": namespace},
            "kind": info.kind,
            "objectType": info.kind.lower(),
            "name": "",
            "yaml": text,
            "validation": {"checks": [], "valid": True},
            "file": None,
            "line": None,
            "asWritten": False,
        }
        return self.render("istio_object.html", nav="istio", obj=obj, create=True,
                           kinds=sorted(KINDS), namespaces=namespaces)  # fmt: skip

    async def security(self, request: web.Request) -> str:
        namespaces, chosen = await self._namespaces(request)
        views = [await self.data.security(ns) for ns in chosen]
        return self.render("security.html", nav="security", views=views, namespaces=namespaces, chosen=chosen)

    async def proxies(self, request: web.Request) -> str:
        proxies = await self.data.reader.proxies()
        return self.render("proxies.html", nav="proxies", proxies=[p.to_json() for p in proxies])

    async def app_details(self, request: web.Request) -> str:
        ns, name = request.match_info["ns"], request.match_info["name"]
        app = await self.data.app(ns, name)
        return self.render("details.html", nav="applications", kind="app", ns=ns, name=name, item=app)

    async def workload_details(self, request: web.Request) -> str:
        ns, name = request.match_info["ns"], request.match_info["name"]
        workload = await self.data.workload(ns, name)
        return self.render("details.html", nav="workloads", kind="workload", ns=ns, name=name, item=workload)

    async def service_details(self, request: web.Request) -> str:
        ns, name = request.match_info["ns"], request.match_info["name"]
        service = await self.data.service(ns, name)
        return self.render("details.html", nav="services", kind="service", ns=ns, name=name, item=service)

    async def istio_object(self, request: web.Request) -> str:
        info = request.match_info
        found = await self.data.istio_object(info["ns"], info["kind"], info["name"])
        return self.render("istio_object.html", nav="istio", obj=found, create=False)

    async def trace(self, request: web.Request) -> str:
        trace_id = request.match_info["trace_id"]
        found, error = await self.data.trace_source.trace(trace_id)
        if found is None:
            raise NotFound(error or f"no trace {trace_id} (it may have been evicted)")
        view = trace_view(found)
        workloads = {(p.node, p.namespace): p.workload for p in await self.data.reader.proxies()}
        for span in view["spans"]:
            node = span.pop("node")
            span["workload"] = (workloads.get(node, node[0]), node[1]) if node else None
        return self.render("trace.html", nav="traces", trace=view, NA=NA)
