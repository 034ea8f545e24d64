"""Serves the dashboard's package files (page, scripts, stylesheet) with strict headers.

There is no build step: the files under `static/` are what the browser runs (ES modules that
import each other by relative path, which the same-origin script policy allows). Every response
carries a Content-Security-Policy that allows scripts and styles from this origin only, so API
strings can never become markup or code even if a bug inserted them as HTML.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import APIRouter, HTTPException, Response
from fastapi.responses import RedirectResponse

from embtune.web.headers import page_headers
from embtune.web.login import LOGIN_PATH

router = APIRouter(include_in_schema=False)

SECURITY_HEADERS = {
    **page_headers(),
    # Revalidate every load so an upgraded server never runs against a stale script.
    "Cache-Control": "no-cache",
}
SCRIPT = "text/javascript; charset=utf-8"
ASSETS = {
    "app.js": SCRIPT,  # the pages and the router; imports the modules below
    "dom.js": SCRIPT,
    "nav.js": SCRIPT,
    "report.js": SCRIPT,
    "aliases.js": SCRIPT,
    "reindex.js": SCRIPT,  # reindex tasks and search; app.js and aliases.js load it on first use
    "imports.js": SCRIPT,  # import tasks; app.js loads it on first use
    "app.css": "text/css; charset=utf-8",
}


def _package_file(name: str, media_type: str) -> Response:
    body = files("embtune.web").joinpath("static", name).read_bytes()
    return Response(body, media_type=media_type, headers=SECURITY_HEADERS)


@router.get("/")
def dashboard() -> Response:
    return _package_file("index.html", "text/html; charset=utf-8")


@router.api_route(LOGIN_PATH, methods=["GET", "POST"])
def login_without_a_token() -> RedirectResponse:
    """Reached only when no `EMBTUNE_API_TOKEN` is set (else `TokenAuth` answers `/login`):
    there is nothing to sign in to."""
    return RedirectResponse("/", status_code=303)


@router.get("/static/{name}")
def static_asset(name: str) -> Response:
    media_type = ASSETS.get(name)
    if media_type is None:
        raise HTTPException(status_code=404, detail=f"no dashboard file {name!r}")
    return _package_file(name, media_type)
