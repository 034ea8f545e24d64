"""Access control and request hygiene, as plain ASGI middleware around the whole app.

* Bearer-token auth (`EMBTUNE_API_TOKEN`): every path but the health checks needs
  `Authorization: Bearer <token>` — or, for the dashboard in a browser, the `embtune_token`
  cookie that `/?token=<token>` sets once.
* Bodies over `EMBTUNE_MAX_BODY_BYTES` are refused with 413 before they are read: by the
  declared Content-Length, or while streaming when none was declared.
"""

from __future__ import annotations

import json
import secrets
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Message, Receive, Scope, Send

OPEN_PATHS = frozenset({"/healthz", "/readyz"})
COOKIE = "embtune_token"


async def _json(send: Send, status: int, detail: str, headers: list | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()), *(headers or [])],
    })
    await send({"type": "http.response.body", "body": body})


class TokenAuth:
    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        offered = self._bearer(headers) or self._cookie(headers)
        query_token = parse_qs(scope.get("query_string", b"").decode()).get("token", [None])[0]
        if query_token is not None and scope["path"] == "/" and self._ok(query_token.encode()):
            # the dashboard's one-time login: keep the token in an HttpOnly cookie
            cookie = f"{COOKIE}={query_token}; HttpOnly; SameSite=Strict; Path=/"
            await send({"type": "http.response.start", "status": 303,
                        "headers": [(b"location", b"/"), (b"set-cookie", cookie.encode()),
                                    (b"content-length", b"0")]})
            await send({"type": "http.response.body", "body": b""})
            return
        if offered is None or not self._ok(offered):
            await _json(send, 401, "missing or invalid API token",
                        [(b"www-authenticate", b"Bearer")])
            return
        await self.app(scope, receive, send)

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
