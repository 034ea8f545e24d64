"""Every error leaves as JSON `{"detail": …}`; a traceback never reaches a client."""

from __future__ import annotations

import logging
import secrets

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from embtune.errors import EmbtuneError, InvalidParams, Unavailable

log = logging.getLogger(__name__)


def query_error(field: str, message: str) -> InvalidParams:
    error = {"loc": ["query", field], "msg": message, "type": "value_error"}
    return InvalidParams(message, [error])


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(InvalidParams)
    async def _invalid(_: Request, exc: InvalidParams) -> JSONResponse:
        return JSONResponse({"detail": exc.errors or exc.detail}, status_code=422)

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
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            {"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        ref = secrets.token_hex(6)
        log.error("unhandled error [%s] on %s %s", ref, request.method, request.url.path,
                  exc_info=exc)
        return JSONResponse(
            {"detail": f"internal server error (reference {ref}; see the server log)"},
            status_code=500,
        )
