"""Access control and request hygiene, as plain ASGI middleware around the whole app.

* Bearer-token auth (`EMBTUNE_API_TOKEN`): every path but the health checks needs
  `Authorization: Bearer <token>` — or, for the dashboard in a browser, the session cookie
  that signing in at `/login` (a POST form) sets. The token never has to appear in a URL: an
  old `/?token=…` bookmark is sent to the form without signing in (and `embtune serve`
  redacts `token=` from its access log).
* Bodies over `EMBTUNE_MAX_BODY_BYTES` are refused with 413 before they are read: by the
  declared Content-Length, or while streaming when none was declared.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from embtune.web.login import LOGIN_HEADERS, LOGIN_PATH, login_page

OPEN_PATHS = frozenset({"/healthz", "/readyz", "/static/app.css"})  # the sign-in page's style
COOKIE = "embtune_session"
MAX_LOGIN_BODY = 4096  # bytes: a form with one token field


async def _respond(send: Send, status: int, headers: list, body: bytes = b"") -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def _json(send: Send, status: int, detail: str, headers: list | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    await _respond(send, status, [(b"content-type", b"application/json"), *(headers or [])], body)


async def _redirect(send: Send, location: str, headers: list | None = None) -> None:
    await _respond(send, 303, [(b"location", location.encode()),
                               (b"cache-control", b"no-store"), *(headers or [])])


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole request body, or None when it exceeds `limit` bytes."""
    body = b""
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return body
        body += message.get("body", b"")
        if len(body) > limit:
            return None
        if not message.get("more_body", False):
            return body


class TokenAuth:
    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode()
        # The dashboard cookie carries a value derived from the token, not the token itself:
        # always cookie-safe characters, and the secret stays out of the browser's cookie jar.
        self.session = hmac.new(self.token, b"embtune dashboard session",
                                hashlib.sha256).hexdigest().encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        path, method = scope["path"], scope["method"]
        if path == LOGIN_PATH:
            await self._login(scope, receive, send)
            return
        if path == "/" and b"token" in parse_qs(scope.get("query_string", b"")):
            # An old `/?token=` bookmark: the token leaves the address bar at once, unused.
            await _redirect(send, "/")
            return
        headers = dict(scope.get("headers") or [])
        bearer = self._bearer(headers)
        if bearer is not None and self._ok(bearer):
            await self.app(scope, receive, send)
            return
        cookie = self._cookie(headers)
        if cookie is not None and secrets.compare_digest(cookie, self.session):
            await self.app(scope, receive, send)
            return
        if path == "/" and method in ("GET", "HEAD"):
            # A browser opening the dashboard (an old `/?token=` bookmark too): to the form.
            await _redirect(send, LOGIN_PATH)
            return
        await _json(send, 401, "missing or invalid API token",
                    [(b"www-authenticate", b"Bearer")])

    async def _login(self, scope: Scope, receive: Receive, send: Send) -> None:
        """GET: the form. POST (form field `token`): the session cookie and back to the
        dashboard, or the form again with 401."""
        if scope["method"] in ("GET", "HEAD"):
            await _respond(send, 200, LOGIN_HEADERS, login_page())
            return
        if scope["method"] != "POST":
            await _json(send, 405, "method not allowed", [(b"allow", b"GET, HEAD, POST")])
            return
        body = await _read_body(receive, MAX_LOGIN_BODY)
        if body is None:
            await _json(send, 413, f"a sign-in form is at most {MAX_LOGIN_BODY} bytes")
            return
        offered = parse_qs(body.decode("utf-8", "replace")).get("token", [""])[0]
        if not self._ok(offered.encode()):
            await _respond(send, 401, LOGIN_HEADERS, login_page(failed=True))
            return
        cookie = f"{COOKIE}={self.session.decode()}; HttpOnly; SameSite=Strict; Path=/"
        await _redirect(send, "/", [(b"set-cookie", cookie.encode())])

    def _ok(self, offered: bytes) -> bool:
        return secrets.compare_digest(offered, self.token)

    @staticmethod
    def _bearer(headers: dict[bytes, bytes]) -> bytes | None:
        value = headers.get(b"authorization", b"")
        scheme, _, token = value.partition(b" ")
        return token.strip() if scheme.lower() == b"bearer" and token.strip() else None

    @staticmethod
    def _cookie(headers: dict[bytes, bytes]) -> bytes | None:
        raw = headers.get(b"cookie")
        if not raw:
            return None
        morsel = SimpleCookie(raw.decode("latin-1")).get(COOKIE)
        return morsel.value.encode() if morsel else None


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _json(send, 413, f"request body over the limit of {self.max_bytes} bytes")
            return
        seen = 0
        started = False
        rejected = False

        async def counting_receive() -> Message:
            nonlocal seen, rejected
            if rejected:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    # Answer now and tell the app the client left: whatever it tries to send
                    # afterwards is dropped (frameworks turn exceptions raised here into 400s).
                    rejected = True
                    if not started:
                        await _json(send, 413,
                                    f"request body over the limit of {self.max_bytes} bytes")
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if rejected:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, counting_receive, guarded_send)


def install_security(app: Any, *, token: str | None, max_body_bytes: int) -> None:
    """Outermost first: size limit, then auth, so an unauthenticated flood is cut early too."""
    if token:
        app.add_middleware(TokenAuth, token=token)
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
