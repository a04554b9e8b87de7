"""Who may change the mesh through the console.

Reading needs nothing (the console listens on 127.0.0.1 only). Every request that writes needs the
mesh's console token (runtime/consoletoken.py): in the cookie the console sets when a page is
opened with `?token=` (the URL `sandbox dashboard` opens and `sandbox status` prints), or as
`Authorization: Bearer <token>` from a script. A browser request must also come from the console's
own pages: an Origin header naming another site is refused, whatever it carries, so a page
elsewhere cannot make the user's browser change the mesh. The cookie is HttpOnly, SameSite=Strict
and named after the port (cookies are per host, not per port: two meshes' consoles on 127.0.0.1
keep their own).
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from urllib.parse import urlencode

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
TOKEN_PARAM = "token"
NO_TOKEN = (
    "this request changes the mesh and needs the console's token: open the console with "
    "`sandbox dashboard` (its URL carries the token), or send `Authorization: Bearer <token>` "
    "(the token is in .sandbox/state/console-token)"
)


class Access:
    def __init__(self, token: str) -> None:
        if len(token) < 16:
            raise ValueError("the console token must be at least 16 characters")
        self._token = token

    def __repr__(self) -> str:
        return "Access(<token>)"

    def matches(self, presented: str | None) -> bool:
        return bool(presented) and hmac.compare_digest(self._token.encode(), str(presented).encode())

    @staticmethod
    def cookie_name(request: web.Request) -> str:
        port = request.url.port or (443 if request.scheme == "https" else 80)
        return f"sandbox_console_{port}"

    def granted(self, request: web.Request) -> bool:
        """Whether the request carries the token (cookie or bearer)."""
        header = request.headers.get("Authorization", "")
        if header[:7].lower() == "bearer " and self.matches(header[7:].strip()):
            return True
        return self.matches(request.cookies.get(self.cookie_name(request)))

    def refusal(self, request: web.Request) -> str | None:
        """Why a write must be refused (None: it may go ahead)."""
        origin = request.headers.get("Origin")
        own = f"{request.scheme}://{request.host}"
        if origin is not None and origin != own:
            return f"requests that change the mesh must come from the console's own pages ({own}), not from {origin}"
        if request.headers.get("Sec-Fetch-Site") == "cross-site":
            return "requests that change the mesh must come from the console's own pages, not from another site"
        if not self.granted(request):
            return NO_TOKEN
        return None

    def check_write(self, request: web.Request) -> None:
        reason = self.refusal(request)
        if reason is not None:
            raise web.HTTPForbidden(text=_json_error(reason), content_type="application/json")

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """A page opened with `?token=`: the right token becomes the cookie and leaves the address
        bar (so it is not in the history or a screenshot); a wrong one is said so."""
        presented = request.query.get(TOKEN_PARAM)
        if presented is None or request.method != "GET" or request.path.startswith("/api/"):
            return await handler(request)
        rest = {k: v for k, v in request.query.items() if k != TOKEN_PARAM}
        clean = request.path + (f"?{urlencode(rest)}" if rest else "")
        if not self.matches(presented):
            raise web.HTTPForbidden(
                text=(
                    "This link's token is not this console's (the link is for another mesh, or an old one). "
                    f"Open the console with `sandbox dashboard`, or read it without editing: {clean}\n"
                ),
                content_type="text/plain",
            )
        response = web.HTTPSeeOther(clean)
        response.set_cookie(
            self.cookie_name(request), self._token, httponly=True, samesite="Strict", path="/", max_age=30 * 86400
        )
        raise response


def _json_error(message: str) -> str:
    import json

    return json.dumps({"error": message})
