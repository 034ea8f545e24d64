"""OpenAPI docs at `/docs` served from local files: the machine running embtune may have no
internet, and FastAPI's default page loads Swagger UI from a CDN.

The page and its assets carry a Content-Security-Policy as strict as the dashboard's: scripts
and styles from this origin only, no inline script (FastAPI's page starts Swagger UI with one,
so the start-up code is served as its own file, `/docs/init.js`), no framing.
"""

from __future__ import annotations

import json

from fastapi import FastAPI, Response
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from embtune.web.headers import page_headers

ASSETS = "/docs-assets"
INIT_SCRIPT = "/docs/init.js"

# the dashboard's policy: its connect-src 'self' covers the spec and "Try it out" requests
DOCS_HEADERS = page_headers()

PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>embtune API</title>
  <link rel="stylesheet" href="{assets}/swagger-ui.css">
  <link rel="icon" href="{assets}/favicon-32x32.png">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{assets}/swagger-ui-bundle.js"></script>
  <script src="{init}"></script>
</body>
</html>
"""

# The packaged Swagger UI (swagger-ui-bundle, 4.15) refuses "openapi: 3.1.x" documents with
# "Unable to render this definition"; FastAPI writes 3.1. The spec is shown to it as 3.0.3:
# everything embtune's spec uses renders, and requests are made exactly as documented.
INIT = """window.ui = SwaggerUIBundle({{
  url: {openapi_url},
  responseInterceptor: function (response) {{
    if (response.url.endsWith({openapi_url}) && response.body && response.body.openapi) {{
      response.body.openapi = "3.0.3";
      response.text = JSON.stringify(response.body);
      response.data = response.text;
    }}
    return response;
  }},
  dom_id: "#swagger-ui",
  layout: "BaseLayout",
  deepLinking: true,
  showExtensions: true,
  showCommonExtensions: true,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
}});
"""


class WithHeaders:
    """Adds fixed headers to every HTTP response of the wrapped app (the static assets)."""

    def __init__(self, app: ASGIApp, headers: dict[str, str]) -> None:
        self.app = app
        self.headers = [(k.lower().encode(), v.encode()) for k, v in headers.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *self.headers]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def install_docs(app: FastAPI) -> None:
    from swagger_ui_bundle import swagger_ui_path

    app.mount(ASSETS, WithHeaders(StaticFiles(directory=swagger_ui_path), DOCS_HEADERS),
              name="docs-assets")
    page = PAGE.format(assets=ASSETS, init=INIT_SCRIPT)
    init = INIT.format(openapi_url=json.dumps(app.openapi_url or "/openapi.json"))

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return HTMLResponse(page, headers=DOCS_HEADERS)

    @app.get(INIT_SCRIPT, include_in_schema=False)
    def swagger_ui_init() -> Response:
        return Response(init, media_type="text/javascript; charset=utf-8", headers=DOCS_HEADERS)
