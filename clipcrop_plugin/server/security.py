"""Who may talk to ``clipcrop serve``, and which requests may change state.

The server is a local tool that can read every photo in the library, so it defends against:

- other machines: it binds to loopback unless the user passes a token (:func:`check_bind`);
- DNS rebinding (a hostile page whose name resolves to 127.0.0.1): the ``Host`` header must be
  one the user allowed (Starlette's ``TrustedHostMiddleware``, installed by the app factory);
- cross-site requests (CSRF): a state-changing request must come from our own origin
  (``Origin`` equal to the server's), or, from a non-browser client that sends no ``Origin``,
  carry the ``X-Clipcrop`` header or the token; browsers never attach a custom header to a
  cross-site request without a CORS preflight, which this app never grants;
- anyone without the token, when one is set: ``Authorization: Bearer T``, the ``clipcrop_token``
  cookie, or a one-time ``?token=T`` on a page load that sets that cookie (Jupyter's scheme);
- other sites' pages embedding our URLs (``<img src=http://127.0.0.1:8765/api/photos/1/thumbnail>``
  makes the server decode a photo): a cross-site request that is not a top-level navigation is
  refused (``Sec-Fetch-Site``/``Sec-Fetch-Mode``, sent by every current browser);
- huge request bodies: :class:`BodyLimitMiddleware` answers 413 past ``MAX_BODY_BYTES``, from
  ``Content-Length`` before reading, or while the body streams in.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.datastructures import URL, Headers, MutableHeaders, QueryParams
from starlette.exceptions import HTTPException
from starlette.requests import cookie_parser
from starlette.responses import JSONResponse, RedirectResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import ConfigError

MAX_BODY_BYTES = 1 << 20  # every request body the API takes is a few hundred bytes
TOKEN_COOKIE = "clipcrop_token"
CSRF_HEADER = "x-clipcrop"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")
# Our pages load only our own files; no other site may frame them (a framed review page could be
# clicked through by a hostile page).
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
                               "form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (``127.0.0.0/8``, ``::1``)."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse to serve on a non-loopback address without a token (raises :class:`ConfigError`)."""
    if not is_loopback(host) and not token:
        raise ConfigError(
            f"refusing to listen on {host} without a token: other machines could read your photos; "
            "pass --token (or CLIPCROP_TOKEN) or bind 127.0.0.1"
        )


def default_allowed_hosts(bind_host: str = "127.0.0.1", extra: Iterable[str] = ()) -> list[str]:
    """Host names a request may carry: the loopback names, the bound address, and ``extra``.

    An IPv6 literal is listed bare and in brackets (``Host: [::1]:8765`` reaches the host check
    as ``[::1]``).
    """
    hosts: list[str] = []
    for raw in (*LOOPBACK_NAMES, bind_host, *extra):
        name = raw.strip().strip("[]").lower() if raw else ""
        if not name or name in ("0.0.0.0", "::"):
            # A wildcard bind accepts any address, but the Host header must still name one the user chose.
            continue
        hosts.append(name)
        if ":" in name:
            hosts.append(f"[{name}]")
    return list(dict.fromkeys(hosts))


def _json(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


class GuardMiddleware:
    """Token and cross-site checks (pure ASGI, so streaming responses pass through untouched).

    Runs after the Host check; ``exempt_prefixes`` (the static assets of the review page) need
    no token because they hold nothing private.
    """

    def __init__(self, app: ASGIApp, token: str | None = None, exempt_prefixes: tuple[str, ...] = ()) -> None:
        self.app = app
        self.token = token or None
        self.exempt_prefixes = exempt_prefixes

    def _token_ok(self, headers: Headers, cookies: dict[str, str]) -> bool:
        if self.token is None:
            return True
        auth = headers.get("authorization", "")
        if auth[:7].lower() == "bearer " and hmac.compare_digest(auth[7:].strip().encode(), self.token.encode()):
            return True
        cookie = cookies.get(TOKEN_COOKIE, "")
        return bool(cookie) and hmac.compare_digest(cookie.encode(), self.token.encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        method = scope["method"].upper()
        path: str = scope.get("path", "")
        cookies = cookie_parser(headers.get("cookie", ""))

        if headers.get("sec-fetch-site", "") == "cross-site" and headers.get("sec-fetch-mode", "") != "navigate":
            # Another site's <img>, <script> or fetch(): it may not make us decode or send anything.
            await _json(403, "cross-site request refused")(scope, receive, send)
            return

        if self.token is not None and not path.startswith(self.exempt_prefixes):
            url = URL(scope=scope)
            given = QueryParams(url.query).get("token")
            if method == "GET" and given is not None and hmac.compare_digest(given.encode(), self.token.encode()):
                # Trade the token in the address bar for an HttpOnly cookie and drop it from the URL.
                clean = url.remove_query_params("token")
                response = RedirectResponse(clean.path + (f"?{clean.query}" if clean.query else ""), 303)
                response.set_cookie(TOKEN_COOKIE, self.token, httponly=True, samesite="strict")
                await response(scope, receive, send)
                return
            if not self._token_ok(headers, cookies):
                await _json(401, "missing or wrong token (Authorization: Bearer TOKEN)")(scope, receive, send)
                return

        if method not in SAFE_METHODS:
            problem = self._cross_site_problem(scope, headers)
            if problem:
                await _json(403, problem)(scope, receive, send)
                return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                MutableHeaders(scope=message).update(SECURITY_HEADERS)
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _cross_site_problem(self, scope: Scope, headers: Headers) -> str | None:
        """Why a state-changing request looks cross-site, or None when it is acceptable."""
        if headers.get("sec-fetch-site", "") == "cross-site":
            return "cross-site request refused"
        origin = headers.get("origin")
        if origin is not None:
            own = f"{scope.get('scheme', 'http')}://{headers.get('host', '')}".lower()
            parts = urlsplit(origin.lower())
            if origin == "null" or f"{parts.scheme}://{parts.netloc}" != own:
                return f"foreign origin {origin!r} refused"
            return None
        # No Origin: not a browser page (curl, a host app). Demand proof it is not a form post.
        if CSRF_HEADER in headers or (self.token is not None and "authorization" in headers):
            return None
        return "state-changing request needs an Origin of this server, the X-Clipcrop header, or the token"


class BodyLimitMiddleware:
    """Refuse request bodies over ``max_bytes`` with 413, before reading them where possible."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        problem = f"request body too large (the limit is {limit} bytes)"
        declared = Headers(scope=scope).get("content-length")
        if declared is not None:
            try:
                too_big = int(declared) > limit
            except ValueError:
                await _json(400, "bad Content-Length header")(scope, receive, send)
                return
            if too_big:
                await _json(413, problem)(scope, receive, send)
                return
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:  # a chunked body without Content-Length: stop reading it
                    raise HTTPException(413, problem)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except HTTPException as exc:
            if exc.status_code != 413 or started:
                raise
            await _json(413, problem)(scope, receive, send)
