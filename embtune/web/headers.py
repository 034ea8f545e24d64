"""The security headers of every page embtune serves to a browser: the dashboard, its sign-in
form and the API docs. One place, so a page cannot be served with a weaker set by accident."""

from __future__ import annotations

# Scripts, styles and requests from this origin only; no inline script, no framing.
PAGE_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "img-src 'self' data:",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)


def page_headers(policy: str = PAGE_POLICY) -> dict[str, str]:
    """`policy` as the Content-Security-Policy, with no sniffing, no referrer, no framing."""
    return {
        "Content-Security-Policy": policy,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
    }
