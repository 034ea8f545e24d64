"""Every error leaves as JSON `{"detail": …}`; a traceback never reaches a client."""

from __future__ import annotations

import logging
import secrets

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from embtune.errors import EmbtuneError, InvalidParams, Unavailable

log = logging.getLogger(__name__)


def query_error(field: str, message: str) -> InvalidParams:
    error = {"loc": ["query", field], "msg": message, "type": "value_error"}
    return InvalidParams(message, [error])


def _allowed_methods(request: Request) -> str:
    """Every method some route serves at this path. Starlette's 405 names only the methods of
    the first route whose path matched, so `OPTIONS /api/v1/items` said `Allow: POST` though
    GET works too."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        route_methods = getattr(route, "methods", None)
        if route_methods and route.matches(request.scope)[0] is not Match.NONE:
            methods |= route_methods
    return ", ".join(sorted(methods))


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(InvalidParams)
    async def _invalid(_: Request, exc: InvalidParams) -> JSONResponse:
        # Always a list of field errors, like every other 422, even if none were itemized.
        errors = exc.errors or [{"loc": ["body"], "msg": exc.detail, "type": "value_error"}]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(Unavailable)
    async def _unavailable(_: Request, exc: Unavailable) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=503, headers={"Retry-After": "5"})

    @app.exception_handler(EmbtuneError)
    async def _known(_: Request, exc: EmbtuneError) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = exc.headers
        if exc.status_code == 405:
            headers = {**(headers or {}), "Allow": _allowed_methods(request)}
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        ref = secrets.token_hex(6)
        log.error("unhandled error [%s] on %s %s", ref, request.method, request.url.path,
                  exc_info=exc)
        return JSONResponse(
            {"detail": f"internal server error (reference {ref}; see the server log)"},
            status_code=500,
        )
