"""`/docs` still works in a real browser under its strict Content-Security-Policy: Swagger UI
loads from the local assets, starts from its separate init script, and lists the operations.
(The `page` fixture fails the test on any script error or CSP report.)"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

pytestmark = pytest.mark.backends("sqlite-embedded")


def test_swagger_ui_renders_under_the_policy(serve: Callable[..., str], page: Any) -> None:
    from playwright.sync_api import expect

    url = serve(run_worker=False)
    response = page.goto(f"{url}/docs")
    assert response.status == 200
    assert "script-src 'self'" in response.headers["content-security-policy"]
    expect(page.locator(".opblock-summary-path", has_text="/api/v1/fine-tuning/task").first
           ).to_be_visible()
    page.locator(".opblock-summary", has_text="/api/v1/plugins").first.click()
    page.get_by_role("button", name="Try it out").click()
    page.get_by_role("button", name="Execute").click()
    expect(page.locator(".live-responses-table tr.response .response-col_status").first
           ).to_have_text("200")
