"""Istio's security tasks on the httpbin sample, driven from outside through the ingress gateway:
explicit deny, ingress IP blocks, dry run, end-user authentication with JWT, JWT claim based
routing, and external authorization with the sample ext-authz server.

Tokens are Istio's demo tokens (tests/fixtures/jwt) and ones minted with its demo key, as the
task's gen-jwt.py does. The ext-authz server is the sample's (samples/httpbin/apps/ext_authz.py),
declared as the mesh's extension provider in samples/httpbin/compose.yaml.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator

import pytest
from aiohttp import web
from jwtkit import ISSUER, demo, forged, groups_scope, jwks, mint
from mesh_support import Mesh, http_get, http_request, poll

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


@pytest.fixture
def mesh(httpbin: Mesh) -> Iterator[Mesh]:
    yield httpbin
    httpbin.reset()


def call(mesh: Mesh, path: str, method: str = "GET", host: str = "", **headers: str) -> tuple[int, bytes]:
    sent = {name.replace("_", "-"): value for name, value in headers.items()}
    if host:
        sent["Host"] = host
    status, _, body = http_request(mesh.ingress + path, method, sent)
    return status, body


def bearer(token: str) -> str:
    return f"Bearer {token}"


def httpbin_proxy_log(mesh: Mesh) -> str:
    """Both httpbin versions' sidecars' logs (the policies select app: httpbin; the gateway balances)."""
    return mesh.logs("httpbin-v1", proxy=True) + mesh.logs("httpbin-v2", proxy=True)


def stat(mesh: Mesh, name: str) -> int:
    total = 0
    for workload in ("httpbin-v1", "httpbin-v2"):
        _, body = http_get(f"{mesh.admin(workload)}/stats?filter={name}")
        total += sum(int(line.rsplit(" ", 1)[1]) for line in body.decode().splitlines() if line.strip())
    return total


# --------------------------------------------------------------------------- authorization


def test_explicit_deny_by_method_then_header_then_an_allow_for_ip(mesh: Mesh) -> None:
    mesh.apply("deny-method-get.yaml")
    assert call(mesh, "/get")[0] == 403
    assert call(mesh, "/anything", "POST")[0] == 200
    mesh.apply("deny-method-get-unless-admin.yaml")
    assert call(mesh, "/get", x_token="admin")[0] == 200
    assert call(mesh, "/get", x_token="guest") == (403, b"RBAC: access denied")
    mesh.apply("allow-path-ip.yaml")
    assert call(mesh, "/ip", x_token="admin")[0] == 200
    assert call(mesh, "/get", x_token="admin")[0] == 403  # no ALLOW policy matches it
    assert call(mesh, "/ip", x_token="guest")[0] == 403  # DENY comes before ALLOW

    def logged() -> bool:
        log = httpbin_proxy_log(mesh)
        return "rbac_access_denied_matched_policy[ns[default]-policy[deny-method-get]-rule[0]]" in log

    poll(logged, 10, "the DENY policy named in httpbin's access log")


def ingress_policy(action: str, blocks: list[str]) -> str:
    return f"""\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: ingress-policy
  namespace: istio-system
spec:
  selector:
    matchLabels:
      app: istio-ingressgateway
  action: {action}
  rules:
  - from:
    - source:
        ipBlocks: {json.dumps(blocks)}
"""


def test_ingress_ip_blocks_allow_and_deny_the_client(mesh: Mesh) -> None:
    # The task's first step: the client's address as the gateway sees it (httpbin's /ip).
    status, body = call(mesh, "/ip")
    assert status == 200
    client = json.loads(body)["origin"]
    mesh.apply_yaml("ingress-policy.yaml", ingress_policy("ALLOW", ["1.2.3.4", "5.6.7.0/24"]))
    assert call(mesh, "/headers") == (403, b"RBAC: access denied")
    mesh.apply_yaml("ingress-policy.yaml", ingress_policy("ALLOW", ["1.2.3.4", "5.6.7.0/24", client]))
    assert call(mesh, "/headers")[0] == 200
    mesh.apply_yaml("ingress-policy.yaml", ingress_policy("DENY", [client]))
    assert call(mesh, "/headers")[0] == 403


def test_a_dry_run_policy_is_logged_and_counted_not_enforced(mesh: Mesh) -> None:
    mesh.apply("deny-path-headers-dry-run.yaml")
    assert [call(mesh, "/headers")[0] for _ in range(3)] == [200, 200, 200]
    shadow = "shadow denied, matched policy ns[default]-policy[deny-path-headers]-rule[0]"
    poll(lambda: httpbin_proxy_log(mesh).count(shadow) >= 3, 10, "the sidecars logging the dry run")
    assert stat(mesh, "istio_dry_run_deny_shadow_denied") >= 3


# --------------------------------------------------------------------------- end-user authentication


def test_jwt_on_the_gateway_then_required(mesh: Mesh) -> None:
    mesh.apply("jwt-example.yaml")
    assert call(mesh, "/headers")[0] == 200  # no token: anonymous, allowed
    assert call(mesh, "/headers", Authorization="Bearer deadbeef")[0] == 401
    assert call(mesh, "/headers", Authorization=bearer(demo()))[0] == 200
    assert call(mesh, "/headers", Authorization=bearer(mint(expire=-120))) == (401, b"Jwt is expired")
    assert call(mesh, "/headers", Authorization=bearer(forged())) == (401, b"Jwt verification fails")
    mesh.apply("require-jwt.yaml")
    assert call(mesh, "/headers")[0] == 403
    assert call(mesh, "/headers", Authorization=bearer(demo()))[0] == 200
    mesh.apply("require-jwt-headers.yaml")
    assert call(mesh, "/headers")[0] == 403
    assert call(mesh, "/ip")[0] == 200


def test_a_token_the_task_mints_for_five_seconds_expires_after_envoys_minute_of_skew(mesh: Mesh) -> None:
    mesh.apply("jwt-example.yaml")
    assert call(mesh, "/headers", Authorization=bearer(mint(expire=5)))[0] == 200
    assert call(mesh, "/headers", Authorization=bearer(mint(expire=-55)))[0] == 200  # within the skew
    assert call(mesh, "/headers", Authorization=bearer(mint(expire=-65)))[0] == 401


def test_jwt_claim_based_routing(mesh: Mesh) -> None:
    mesh.apply("jwt-example.yaml", "virtual-service-claims.yaml")
    host = "httpbin.example.com"
    assert call(mesh, "/headers", host=host)[0] == 404
    assert call(mesh, "/headers", host=host, Authorization="Bearer some.invalid.token")[0] == 401
    assert call(mesh, "/headers", host=host, Authorization=bearer(groups_scope()))[0] == 200
    assert call(mesh, "/headers", host=host, Authorization=bearer(demo()))[0] == 404  # no group1 in it


class JwksServer:
    """Istio's demo JWKS on a loopback port, in a thread of the test process."""

    def __init__(self) -> None:
        self.url = ""
        self.ready = threading.Event()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> JwksServer:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        return self

    async def _start(self) -> None:
        async def keys(_request: web.Request) -> web.Response:
            return web.Response(text=jwks(), content_type="application/json")

        app = web.Application()
        app.router.add_get("/jwks.json", keys)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}/jwks.json"

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def test_jwks_uri_is_fetched_by_the_control_plane(mesh: Mesh) -> None:
    if mesh.record["runtime"] != "local":
        pytest.skip("the JWKS server runs on the host's loopback, which only the local control plane reaches")
    with JwksServer() as server:
        mesh.apply_yaml(
            "jwt-uri.yaml",
            "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\n"
            "metadata: {name: jwt-uri, namespace: istio-system}\n"
            f"spec:\n  selector: {{matchLabels: {{istio: ingressgateway}}}}\n"
            f"  jwtRules:\n  - issuer: {ISSUER}\n    jwksUri: {server.url}\n",
        )
        poll(lambda: call(mesh, "/headers", Authorization=bearer(demo()))[0] == 200, 15, "the fetched keys in force")
        assert call(mesh, "/headers", Authorization=bearer(forged()))[0] == 401
        _, body = http_get(f"{mesh.control_plane}/debug/jwksz")
        assert json.loads(body)[0]["uri"] == server.url and json.loads(body)[0]["keys"] == 1


# --------------------------------------------------------------------------- CUSTOM


def test_external_authorization_with_the_sample_ext_authz_server(mesh: Mesh) -> None:
    mesh.apply("ext-authz.yaml")
    status, body = call(mesh, "/headers", x_ext_authz="deny")
    assert (status, body) == (403, b"denied by ext_authz for not found header `x-ext-authz: allow` in the request")
    status, body = call(mesh, "/headers", x_ext_authz="allow")
    assert status == 200
    assert json.loads(body)["headers"]["X-Ext-Authz-Check-Result"] == "allowed"  # headersToUpstreamOnAllow
    assert call(mesh, "/ip", x_ext_authz="deny")[0] == 200  # not a path the policy sends to the provider
    poll(lambda: "[HTTP][allowed]" in mesh.logs("ext-authz"), 10, "the check in ext-authz's log")
    poll(lambda: " 403 UAEX ext_authz_denied " in httpbin_proxy_log(mesh), 10, "UAEX in httpbin's access log")
