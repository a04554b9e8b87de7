"""The console's writes, at Kiali's config API paths, plus the service wizards:

    POST   /api/namespaces/{ns}/istio/{kind}          create (YAML or JSON body)            201
    PUT    /api/namespaces/{ns}/istio/{kind}/{name}   replace it with the document sent     200
                                                      (YAML: the editor's text, comments kept)
    PATCH  /api/namespaces/{ns}/istio/{kind}/{name}   a JSON merge patch (what Kiali sends)  200
    DELETE /api/namespaces/{ns}/istio/{kind}/{name}                                          200
    POST   /api/namespaces/{ns}/services/{name}/wizard          {type, ...state}: the wizard's
                                                      objects created or updated in one change
    DELETE /api/namespaces/{ns}/services/{name}/wizard          "Delete Traffic Routing"

`?dryRun=All` (Kubernetes' parameter) validates and answers without writing (the editor's live
marks, the wizard's preview). Every write is planned by the operator against the whole Istio
directory and the Compose workloads, as `sandbox apply` is, and refused with 422 and the
diagnostics (each with its line in the text sent) when it brings an error: nothing is written.
Each needs the console's token and, from a browser, the console's own Origin (access.py): 403.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiohttp import web

from sandbox.console import edits, wizards
from sandbox.console.access import Access
from sandbox.console.data import BadRequest, ConsoleData, NotFound
from sandbox.console.edits import EditError
from sandbox.console.reader import UpstreamError
from sandbox.console.wizard_state import routing_keys
from sandbox.console.writer import ConfigWriter, WritesOff
from sandbox.mesh.yamlsrc import dump_yaml
from sandbox.operator.apply import Input, Plan
from sandbox.operator.documents import Key

Guard = Callable[[Plan], tuple[int, str] | None]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(data, separators=(",", ":")), status=status, content_type="application/json")


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return _json({"error": message, **extra}, status)


class Changes:
    def __init__(self, data: ConsoleData, writer: ConfigWriter, access: Access) -> None:
        self.data = data
        self.writer = writer
        self.access = access

    def add_routes(self, app: web.Application) -> None:
        base = "/api/namespaces/{ns}"
        app.router.add_post(f"{base}/istio/{{kind}}", self._guarded(self.create))
        app.router.add_put(f"{base}/istio/{{kind}}/{{name}}", self._guarded(self.replace))
        app.router.add_patch(f"{base}/istio/{{kind}}/{{name}}", self._guarded(self.patch))
        app.router.add_delete(f"{base}/istio/{{kind}}/{{name}}", self._guarded(self.delete))
        app.router.add_post(f"{base}/services/{{name}}/wizard", self._guarded(self.wizard))
        app.router.add_delete(f"{base}/services/{{name}}/wizard", self._guarded(self.delete_routing))

    def _guarded(self, handler: Callable[[web.Request], Awaitable[web.Response]]) -> Handler:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            self.access.check_write(request)
            try:
                return await handler(request)
            except EditError as exc:
                return _error(exc.status, str(exc), checks=exc.checks) if exc.checks else _error(exc.status, str(exc))
            except wizards.WizardError as exc:
                return _error(400, str(exc))
            except (BadRequest, WritesOff) as exc:
                return _error(400 if isinstance(exc, BadRequest) else 409, str(exc))
            except NotFound as exc:
                return _error(404, str(exc))
            except UpstreamError as exc:
                return _error(503, str(exc))

        return wrapped

    # -- the steps every write shares --------------------------------------------------------------
    async def _body(self, request: web.Request) -> tuple[str, Any, bool]:
        content_type = request.content_type or "application/json"
        text, data = edits.parse_body(await request.read(), content_type)
        return text, data, content_type.endswith("json")

    async def _commit(
        self,
        request: web.Request,
        inputs: Sequence[Input],
        remove: Sequence[Key] = (),
        guard: Guard | None = None,
        status: int = 200,
        extra: dict[str, Any] | None = None,
    ) -> web.Response:
        dry_run = request.query.get("dryRun", "") in ("All", "all", "true")
        outcome = await self.writer.change(inputs, remove, dry_run, guard)
        plan, written = outcome.plan, outcome.written
        text = "---\n".join(i.text for i in inputs)
        answer = edits.result_json(plan, written, text, outcome.after) | (extra or {})
        answer["dryRun"] = dry_run
        if not plan.ok:
            return _json(answer, 422)
        rejected = guard(plan) if guard is not None else None
        if rejected is not None:
            return _error(rejected[0], rejected[1])
        return _json(answer, status if written else 200)

    # -- Kiali's config API --------------------------------------------------------------------------
    async def create(self, request: web.Request) -> web.Response:
        ns, info = request.match_info["ns"], edits.kind_of(request.match_info["kind"])
        text, data, is_json = await self._body(request)
        body, name = edits.object_text(text, data, info, ns, json_body=is_json)

        def exists(plan: Plan) -> tuple[int, str] | None:
            if any(
                c.action != "created" for c in plan.changes if (c.kind, c.namespace, c.name) == (info.kind, ns, name)
            ):
                where = next(c.file for c in plan.changes if c.name == name)
                return 409, f"{info.kind} {ns}/{name} already exists (in {where}): edit it instead (PUT or PATCH)"
            return None

        return await self._commit(request, [Input("-", body)], guard=exists, status=201)

    def _must_exist(self, key: Key) -> Guard:
        def guard(plan: Plan) -> tuple[int, str] | None:
            if any((c.kind, c.namespace, c.name) == key and c.action == "created" for c in plan.changes):
                return 404, f"no {key[0]} {key[2]!r} in namespace {key[1]!r} (create it with POST)"
            return None

        return guard

    async def replace(self, request: web.Request) -> web.Response:
        ns, name, info = request.match_info["ns"], request.match_info["name"], edits.kind_of(request.match_info["kind"])
        text, data, is_json = await self._body(request)
        body, _ = edits.object_text(text, data, info, ns, name, json_body=is_json)
        return await self._commit(request, [Input("-", body)], guard=self._must_exist((info.kind, ns, name)))

    async def patch(self, request: web.Request) -> web.Response:
        ns, name, info = request.match_info["ns"], request.match_info["name"], edits.kind_of(request.match_info["kind"])
        key = (info.kind, ns, name)
        found = await self.writer.document(key)
        if found is None:
            raise NotFound(f"no {info.kind} {name!r} in namespace {ns!r}")
        _, patch, _ = await self._body(request)
        merged = edits.merge_patch(edits.manifest_of(found), patch)
        body, _ = edits.object_text(dump_yaml(merged), merged, info, ns, name, json_body=True)
        return await self._commit(request, [Input("-", body)], guard=self._must_exist(key))

    async def delete(self, request: web.Request) -> web.Response:
        ns, name, info = request.match_info["ns"], request.match_info["name"], edits.kind_of(request.match_info["kind"])
        key = (info.kind, ns, name)

        def found(plan: Plan) -> tuple[int, str] | None:
            if any(c.action == "not found" for c in plan.changes):
                return 404, f"no {info.kind} {name!r} in namespace {ns!r}"
            return None

        return await self._commit(request, [], [key], guard=found)

    # -- the wizards ---------------------------------------------------------------------------------
    async def wizard(self, request: web.Request) -> web.Response:
        ns, name = request.match_info["ns"], request.match_info["name"]
        _, state, _ = await self._body(request)
        if not isinstance(state, dict) or "type" not in state:
            raise EditError("send the wizard's state as JSON: {type, workloads, ...}")
        ctx = await self.data.service_context(ns, name)
        wizard_type = str(state["type"])
        if not ctx.enabled(wizard_type):
            title = wizards.TITLES.get(wizard_type, wizard_type)
            raise EditError(
                f"{name} already has traffic routing that the {title} wizard did not make: edit its VirtualService "
                "and DestinationRule as YAML, or delete the traffic routing first",
                409,
            )
        objects = wizards.build(ctx, wizard_type, state)
        text = "---\n".join(dump_yaml(o) for o in objects)
        return await self._commit(request, [Input("-", text)], extra={"yaml": text, "objects": objects})

    async def delete_routing(self, request: web.Request) -> web.Response:
        ns, name = request.match_info["ns"], request.match_info["name"]
        ctx = await self.data.service_context(ns, name)
        keys = routing_keys(ctx)
        if not keys:
            raise NotFound(f"{name} has no traffic routing to delete")
        return await self._commit(request, [], keys)
