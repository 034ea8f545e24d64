"""The dashboard's sign-in page: a plain HTML form posted to `/login`, so the API token never
travels in a URL (URLs end up in access logs, proxies' logs and browser history).

The page and its headers live here; `embtune.api.security.TokenAuth` serves it and checks the
form, since only it knows the token.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from embtune.web.headers import page_headers

LOGIN_PATH = "/login"
# Stricter than the dashboard's policy (no script, no requests), but the form may post here.
LOGIN_CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "style-src 'self'",
        "img-src 'self' data:",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
LOGIN_HEADERS = [
    (b"content-type", b"text/html; charset=utf-8"),
    *((name.lower().encode(), value.encode())
      for name, value in page_headers(LOGIN_CONTENT_SECURITY_POLICY).items()),
    (b"cache-control", b"no-store"),
]
FAILED = "That token is not valid."


@cache
def _template() -> str:
    return files("embtune.web").joinpath("static", "login.html").read_text(encoding="utf-8")


def login_page(failed: bool = False) -> bytes:
    """The form; after a wrong token, with a fixed message (never the text that was sent)."""
    return _template().replace("<!--error-->", FAILED if failed else "").encode()
