"""The console's data, one method per view: what the JSON API answers and the pages render
(datasette's habit: one view model, two faces). Reads through MeshReader, shapes with the pure
modules (graph, health, inventory, metrics, validations, logs)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any

from sandbox.console import graph as graphs
from sandbox.console import health as healths
from sandbox.console import inventory, logs, security
from sandbox.console.edits import loaded_lines
from sandbox.console.graph_appenders import decorations_from
from sandbox.console.graph_queries import namespace_queries
from sandbox.console.metrics import (
    DEFAULT_QUANTILES,
    KINDS,
    dashboard_json,
    dashboard_queries,
    health_queries,
    request_rates,
    selector,
)
from sandbox.console.prom import PromError, Sample
from sandbox.console.proxies import config_dump_view
from sandbox.console.reader import MeshReader, UpstreamError
from sandbox.console.tracesource import TraceSource
from sandbox.console.validations import object_type
from sandbox.console.wizard_state import wizard_view
from sandbox.console.wizards import ServiceContext
from sandbox.console.writer import ConfigWriter
from sandbox.mesh.names import resolve_host
from sandbox.mesh.resources import lookup_kind

MAX_DURATION = 7 * 24 * 3600
DEFAULT_RATE_INTERVAL = "10m"


class BadRequest(ValueError):
    """A parameter the console cannot answer (the message names it)."""


class NotFound(LookupError):
    """No such namespace, object or workload (the message says which)."""


def parse_seconds(text: str, name: str, default: int) -> int:
    """Kiali's durations: `60s`, `10m`, `1h`, `1d` or plain seconds."""
    if not text:
        return default
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    number, unit = (text[:-1], units[text[-1]]) if text[-1:] in units else (text, 1)
    if not number.isdigit() or not 0 < int(number) * unit <= MAX_DURATION:
        raise BadRequest(f"{name} must be a duration like 60s, 10m or 1h (at most 7d), not {text!r}")
    return int(number) * unit


class ConsoleData:
    def __init__(
        self,
        reader: MeshReader,
        traces: TraceSource,
        clock: Callable[[], float] = time.time,
        writer: ConfigWriter | None = None,
    ) -> None:
        self.reader = reader
        self.trace_source = traces
        self.clock = clock
        self.writer = writer

    # -- namespaces, security ----------------------------------------------------------------
    async def namespaces(self) -> list[dict[str, Any]]:
        topology = self.reader.topology()
        try:
            _, resources = await self.reader.resources()
        except UpstreamError:
            resources = []
        out = []
        for ns in inventory.namespaces_of(topology, resources):
            workloads = [w for w in topology.workloads if w.namespace == ns]
            out.append(
                {
                    "name": ns,
                    "cluster": inventory.CLUSTER,
                    "isControlPlane": ns == security.ROOT_NAMESPACE,
                    "labels": {"istio-injection": "enabled"} if any(w.inject for w in workloads) else {},
                    "counts": {
                        "apps": len({w.app for w in workloads}),
                        "workloads": len(workloads),
                        "services": len([s for s in topology.services if s.namespace == ns]),
                        "istioConfigs": len([r for r in resources if r.get("namespace") == ns]),
                    },
                }
            )
        return out

    async def mesh_tls(self) -> dict[str, Any]:
        _, resources = await self.reader.resources()
        return security.mesh_tls(resources)

    async def namespace_tls(self, namespace: str) -> dict[str, Any]:
        _, resources = await self.reader.resources()
        return security.namespace_tls(resources, namespace)

    # -- graph -----------------------------------------------------------------------------------
    async def graph(self, query: Mapping[str, str]) -> dict[str, Any]:
        namespaces = [n for n in query.get("namespaces", "").split(",") if n]
        if not namespaces:
            raise BadRequest("namespaces is required (namespaces=NS[,NS])")
        graph_type = query.get("graphType", "workload")  # Kiali's backend default
        if graph_type not in graphs.GRAPH_TYPES:
            raise BadRequest(f"graphType must be one of {', '.join(graphs.GRAPH_TYPES)}, not {graph_type!r}")
        duration = parse_seconds(query.get("duration", ""), "duration", 600)
        inject = query.get("injectServiceNodes", "false") == "true"
        quantile = {"avg": 0.5, "50": 0.5, "95": 0.95, "99": 0.99}.get(query.get("responseTime", "95"), 0.95)
        # Kiali's appenders parameter: absent means all of them; the response-time appender reads the
        # duration histograms (20 series per edge), the costliest query, so the pages ask for it only
        # when they show response times
        appenders = query.get("appenders")
        response_time = appenders is None or "responseTime" in appenders.split(",")
        prom = self.reader.prometheus()
        timestamp = int(self.clock())
        topology = self.reader.topology()
        uninjected = {
            ns: [w.name for w in topology.workloads if w.namespace == ns and not w.inject] for ns in namespaces
        }
        plans = [namespace_queries(ns, duration, quantile, response_time, uninjected[ns]) for ns in namespaces]
        flat = [promql for plan in plans for _, promql in plan.queries] if prom is not None else []
        # Prometheus and the control plane (for the badges) at once
        badges = asyncio.ensure_future(self._resources_or_none())
        try:
            answers: list[list[Sample]] = (
                list(await asyncio.gather(*(prom.query(q, timestamp) for q in flat))) if prom is not None else []
            )
        except PromError as exc:
            badges.cancel()
            raise UpstreamError(str(exc)) from None
        resources = await badges
        # per namespace: http unserviced, inbound, outbound; tcp the same; rt destination, source.
        # Inbound (the destination reporter, which knows mTLS) first: the first of duplicates counts.
        by_position: list[list[Sample]] = [[] for _ in range(8)]
        for i, answer in enumerate(answers):
            by_position[i % len(plans[0].queries)].extend(answer)
        http = by_position[1] + by_position[2] + by_position[0]
        tcp = by_position[4] + by_position[5] + by_position[3]
        decorations = decorations_from(
            (r.get("manifest") or {} for r in resources),
            ((w.namespace, w.name, w.labels) for w in topology.workloads),
        )
        rt = (by_position[6], by_position[7])
        traffic = graphs.build(graph_type, namespaces, http, tcp, rt, inject, decorations)
        return graphs.to_json(traffic, timestamp, duration)

    async def _resources_or_none(self) -> list[dict[str, Any]]:
        """The resources in force, or none while the control plane does not answer (no badges)."""
        try:
            return (await self.reader.resources())[1]
        except UpstreamError:
            return []

    # -- health ------------------------------------------------------------------------------------
    async def requests(self, namespace: str, kind: str, rate: str) -> dict[str, Any]:
        prom = self.reader.prometheus()
        if prom is None:
            return {}
        inbound_q, outbound_q = health_queries(namespace, rate)
        try:
            inbound, outbound = await asyncio.gather(prom.query(inbound_q), prom.query(outbound_q))
        except PromError as exc:
            raise UpstreamError(str(exc)) from None
        return request_rates(inbound, outbound, kind)

    async def health(self, namespace: str, kind: str, query: Mapping[str, str]) -> dict[str, Any]:
        if kind not in KINDS:
            raise BadRequest(f"type must be one of {', '.join(KINDS)}, not {kind!r}")
        rate = f"{parse_seconds(query.get('rateInterval', ''), 'rateInterval', 600)}s"
        topology = self.reader.topology()
        requests, proxies = await asyncio.gather(self.requests(namespace, kind, rate), self.reader.proxies())
        workloads = [w for w in topology.workloads if w.namespace == namespace]
        out: dict[str, Any] = {}
        if kind == "service":
            for s in (s for s in topology.services if s.namespace == namespace):
                out[s.name] = healths.service_health(requests.get(s.name, {}))
        elif kind == "workload":
            for w in workloads:
                out[w.name] = healths.workload_health(requests.get(w.name, {}), inventory.workload_status(w, proxies))
        else:
            for app in inventory.app_names(topology, namespace):
                statuses = [inventory.workload_status(w, proxies) for w in workloads if w.app == app]
                out[app] = healths.app_health(requests.get(app, {}), statuses)
        return out

    # -- lists and details -------------------------------------------------------------------------
    async def apps(self, namespace: str) -> dict[str, Any]:
        health = await self.health(namespace, "app", {})
        return inventory.app_list(self.reader.topology(), namespace, health)

    async def app(self, namespace: str, name: str) -> dict[str, Any]:
        health, proxies = await asyncio.gather(self.health(namespace, "app", {}), self.reader.proxies())
        found = inventory.app_details(self.reader.topology(), namespace, name, proxies, health.get(name))
        if found is None:
            raise NotFound(f"no application {name!r} in namespace {namespace!r}")
        return found

    async def workloads(self, namespace: str) -> dict[str, Any]:
        health, proxies = await asyncio.gather(self.health(namespace, "workload", {}), self.reader.proxies())
        return inventory.workload_list(self.reader.topology(), namespace, proxies, health)

    async def workload(self, namespace: str, name: str) -> dict[str, Any]:
        topology = self.reader.topology()
        w = topology.workload(name)
        if w is None or w.namespace != namespace:
            raise NotFound(f"no workload {name!r} in namespace {namespace!r}")
        (health, proxies), (resources, validated) = await asyncio.gather(
            asyncio.gather(self.health(namespace, "workload", {}), self.reader.proxies()), self._validated()
        )
        out = inventory.workload_json(w, proxies, health.get(name))
        refs = inventory.config_for_workload(w, resources, inventory.namespaces_of(topology, resources))
        out["istioConfig"] = [self._with_validation(r, validated) for r in refs]
        out["security"] = security.workload_security(validated.state, w, self._validation_of(validated))
        out["services"] = [s.name for s in topology.services if name in s.workloads and s.namespace == namespace]
        return out

    async def services(self, namespace: str) -> dict[str, Any]:
        health, (resources, validated) = await asyncio.gather(self.health(namespace, "service", {}), self._validated())
        by_key = {k: validated.for_object(k) for k in validated.texts}
        out = inventory.service_list(self.reader.topology(), namespace, health, resources, by_key)
        out["validations"] = validated.all_objects(namespace)
        return out

    async def service(self, namespace: str, name: str) -> dict[str, Any]:
        health, proxies, (resources, validated) = await asyncio.gather(
            self.health(namespace, "service", {}), self.reader.proxies(), self._validated()
        )
        topology = self.reader.topology()
        service = next((s for s in topology.services if s.namespace == namespace and s.name == name), None)
        endpoints = (await self.reader.endpoints(proxies)).get(service.fqdn, []) if service else []
        found = inventory.service_details(topology, namespace, name, proxies, endpoints, resources, health.get(name))
        if found is None:
            raise NotFound(f"no service {name!r} in namespace {namespace!r}")
        found["istioConfig"] = [self._with_validation(r, validated) for r in found["istioReferences"]]
        return found

    async def _validated(self) -> Any:
        return await self.reader.validated()

    @staticmethod
    def _validation_of(validated: Any) -> Callable[[tuple[str, str, str]], dict[str, Any] | None]:
        return lambda key: validated.for_object(key) if key in validated.texts else None

    # -- security ----------------------------------------------------------------------------------
    async def security(self, namespace: str) -> dict[str, Any]:
        """Per workload of the namespace: the mTLS mode in force on each port and the
        AuthorizationPolicies that select it, in evaluation order, with their validations."""
        resources, validated = await self._validated()
        topology = self.reader.topology()
        if namespace not in inventory.namespaces_of(topology, resources):
            raise NotFound(f"no namespace {namespace!r}")
        of = self._validation_of(validated)
        workloads = sorted((w for w in topology.workloads if w.namespace == namespace), key=lambda w: w.name)
        return {
            "namespace": namespace,
            "tls": security.namespace_tls(resources, namespace),
            "meshTLS": security.mesh_tls(resources),
            "workloads": [security.workload_security(validated.state, w, of) for w in workloads],
        }

    # -- sync (what `sandbox wait --synced` judges) ----------------------------------------------------
    async def sync(self) -> dict[str, Any]:
        from sandbox.console.views import expected_nodes
        from sandbox.operator.views import not_synced

        data = await self.reader.sync()
        record = self.reader.record()
        expected = [p.node for p in record.proxies] if record else expected_nodes(self.reader.topology())
        problems = not_synced(data, expected)
        states = {str(p.get("proxy")): p for p in data["proxies"]}
        acked = [n for n in expected if (states.get(n) or {}).get("state") == "SYNCED"]
        return {
            "synced": not problems,
            "generation": data.get("generation"),
            "pending": data.get("pending", []),
            "rejected": data.get("rejected", []),
            "problems": problems,
            "expected": len(expected),
            "acked": len(acked),
            "proxies": [
                {k: p.get(k) for k in ("proxy", "workload", "namespace", "state", "connected", "versionAcked")}
                for p in data["proxies"]
            ],
        }

    # -- wizards -------------------------------------------------------------------------------------
    async def service_context(self, namespace: str, name: str) -> ServiceContext:
        topology = self.reader.topology()
        service = next((s for s in topology.services if s.namespace == namespace and s.name == name), None)
        if service is None:
            raise NotFound(f"no service {name!r} in namespace {namespace!r}")
        _, resources = await self.reader.resources()
        known = inventory.namespaces_of(topology, resources)

        def mine(r: Mapping[str, Any], hosts: Any) -> bool:
            ns = str(r.get("namespace", ""))
            return any(resolve_host(str(h), ns, known) == service.fqdn for h in hosts or ())

        manifests = [(r, r.get("manifest") or {}) for r in resources]
        return ServiceContext(
            name,
            namespace,
            service.fqdn,
            tuple((w.name, dict(w.labels)) for w in topology.workloads if w.name in service.workloads),
            tuple(
                m for r, m in manifests if r.get("kind") == "VirtualService" and mine(r, m.get("spec", {}).get("hosts"))
            ),
            tuple(
                m
                for r, m in manifests
                if r.get("kind") == "DestinationRule" and mine(r, [m.get("spec", {}).get("host")])
            ),
            tuple(f"{r.get('namespace')}/{r.get('name')}" for r in resources if r.get("kind") == "Gateway"),
            tuple(m for r, m in manifests if r.get("kind") == "PeerAuthentication" and r.get("namespace") == namespace),
        )

    async def wizard(self, namespace: str, name: str) -> dict[str, Any]:
        ctx = await self.service_context(namespace, name)
        _, resources = await self.reader.resources()
        return wizard_view(ctx, security.namespace_tls(resources, namespace)["status"])

    @staticmethod
    def _with_validation(ref: Mapping[str, str], validated: Any) -> dict[str, Any]:
        key = (ref["objectType"], ref["namespace"], ref["name"])
        return {**ref, "validation": validated.for_object(key) if key in validated.texts else None}

    # -- metrics, traces, logs ---------------------------------------------------------------------
    async def metrics(self, kind: str, namespace: str, name: str, query: Mapping[str, str]) -> dict[str, Any]:
        direction = query.get("direction", "inbound")
        if direction not in ("inbound", "outbound"):
            raise BadRequest(f"direction must be inbound or outbound, not {direction!r}")
        duration = parse_seconds(query.get("duration", ""), "duration", 1800)
        step = parse_seconds(query.get("step", ""), "step", max(15, duration // 60))
        rate = f"{parse_seconds(query.get('rateInterval', ''), 'rateInterval', 60)}s"
        getall = getattr(query, "getall", None)
        quantiles: list[str] = list(getall("quantiles[]", [])) if getall else []
        quantiles = quantiles or list(DEFAULT_QUANTILES)
        for q in quantiles:
            try:
                if not 0 < float(q) < 1:
                    raise ValueError
            except ValueError:
                raise BadRequest(f"quantiles[] must be numbers between 0 and 1, not {q!r}") from None
        prom = self.reader.prometheus()
        if prom is None:
            return {}
        plan = dashboard_queries(selector(kind, namespace, name, direction), rate, quantiles)
        end = self.clock()
        try:
            answers = await asyncio.gather(*(prom.query_range(q, end - duration, end, step) for _, _, q in plan))
        except PromError as exc:
            raise UpstreamError(str(exc)) from None
        return dashboard_json((n, s, a) for (n, s, _), a in zip(plan, answers, strict=True))

    async def traces(self, kind: str, namespace: str, name: str, query: Mapping[str, str]) -> dict[str, Any]:
        topology = self.reader.topology()
        app = name
        if kind == "workload":
            w = topology.workload(name)
            app = w.app if w else name
        limit = int(query.get("limit", "20")) if query.get("limit", "20").isdigit() else 20
        service = f"{app}.{namespace}"  # Kiali's tracing service name: <app>.<namespace>
        found, error = await self.trace_source.search(service, limit, query.get("lookback", "1h"))
        return {"data": found, "errors": [{"msg": error}] if error else [], "tracingServiceName": service}

    async def logs(self, namespace: str, name: str, query: Mapping[str, str], pod: bool = False) -> dict[str, Any]:
        from sandbox.console.logsource import read_logs

        tail = (
            int(query.get("tailLines", query.get("maxLines", "100")) or 100)
            if (query.get("tailLines", query.get("maxLines", "100")) or "100").isdigit()
            else 100
        )
        proxies = await self.reader.proxies()
        nodes = [
            p.node for p in proxies if p.namespace == namespace and (p.node == name if pod else p.workload == name)
        ]
        topology = self.reader.topology()
        w = topology.workload(name) if not pod else None
        if not nodes and w is None and not pod:
            raise NotFound(f"no workload {name!r} in namespace {namespace!r}")
        sources = read_logs(self.reader.project, nodes or [name], tail + 1000)
        since = int(query.get("sinceTime", "0")) if query.get("sinceTime", "0").isdigit() else 0
        return logs.merged(sources, tail=tail, contains=query.get("filter", ""), since_ms=since)

    async def config_dump(self, namespace: str, pod: str, resource: str) -> dict[str, Any]:
        proxies = await self.reader.proxies()
        proxy = next((p for p in proxies if p.node == pod and p.namespace == namespace), None)
        if proxy is None:
            raise NotFound(f"no sidecar {pod!r} in namespace {namespace!r}")
        path = "/certs" if resource == "secrets" else "/config_dump"
        try:
            return config_dump_view(resource, await self.reader.admin(proxy, path))
        except ValueError as exc:
            raise BadRequest(str(exc)) from None

    # -- istio config ------------------------------------------------------------------------------
    async def istio_list(self, namespace: str, validate: bool) -> dict[str, Any]:
        resources, validated = await self._validated()
        mine = [r for r in resources if r.get("namespace") == namespace]
        out: dict[str, Any] = {"namespace": {"name": namespace}, "resources": {}}
        for r in mine:
            out["resources"].setdefault(str(r.get("kind")), []).append(
                {
                    "name": r.get("name"),
                    "namespace": namespace,
                    "kind": r.get("kind"),
                    "file": r.get("file"),
                    "line": r.get("line"),
                    "manifest": r.get("manifest"),
                }
            )
        if validate:
            out["validations"] = validated.all_objects(namespace)
        return out

    async def istio_object(self, namespace: str, kind: str, name: str) -> dict[str, Any]:
        info = lookup_kind(kind)
        if info is None:
            raise BadRequest(f"unknown Istio kind {kind!r}")
        resources, validated = await self._validated()
        found = next(
            (
                r
                for r in resources
                if r.get("kind") == info.kind and r.get("namespace") == namespace and r.get("name") == name
            ),
            None,
        )
        if found is None:
            raise NotFound(f"no {info.kind} {name!r} in namespace {namespace!r}")
        key = (info.kind, namespace, name)
        validation = validated.for_object(key)
        text = validated.texts.get(key, "")
        hint = str(found.get("file") or "") or None
        document = await self.writer.document(key, hint) if self.writer is not None else None
        if document is not None:  # the document as its author wrote it, with the checks at its lines
            text = document.text
            validation = {**validation, "checks": loaded_lines(text, validation["checks"], document.file)}
        return {
            "namespace": {"name": namespace},
            "objectType": object_type(info.kind),
            "kind": info.kind,
            "name": name,
            "file": found.get("file"),
            "line": found.get("line"),
            "resource": found.get("manifest"),
            "yaml": text,
            "asWritten": document is not None,
            "validation": validation,
        }
