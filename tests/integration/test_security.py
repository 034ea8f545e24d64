"""Access control and request hygiene: token auth, body limit, model source roots."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

pytestmark = pytest.mark.backends("sqlite-embedded")


TOKEN = "s3cret-token-0123456789"


def test_token_guards_everything_but_health(client_factory) -> None:
    client = client_factory(api_token=TOKEN)
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    denied = client.get("/api/v1/fine-tuning/task")
    assert denied.status_code == 401 and denied.json() == {"detail": "missing or invalid API token"}
    assert client.get("/api/v1/fine-tuning/task",
                      headers={"Authorization": "Bearer wrong"}).status_code == 401
    ok = client.get("/api/v1/fine-tuning/task", headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200
    dashboard = client.get("/", follow_redirects=False)  # the dashboard too: to the sign-in form
    assert dashboard.status_code == 303 and dashboard.headers["location"] == "/login"
    assert client.get("/static/app.js").status_code == 401


def test_dashboard_signs_in_with_a_posted_form_never_a_url(client_factory) -> None:
    client = client_factory(api_token=TOKEN)
    form = client.get("/login")
    assert form.status_code == 200 and '<form method="post" action="/login">' in form.text
    csp = form.headers["content-security-policy"]
    assert "form-action 'self'" in csp and "script-src" not in csp and "unsafe" not in csp
    assert form.headers["x-frame-options"] == "DENY"

    wrong = client.post("/login", data={"token": "nope"}, follow_redirects=False)
    assert wrong.status_code == 401 and "not valid" in wrong.text
    assert "set-cookie" not in wrong.headers and "nope" not in wrong.text

    login = client.post("/login", data={"token": TOKEN}, follow_redirects=False)
    assert login.status_code == 303 and login.headers["location"] == "/"
    cookie = login.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and TOKEN not in cookie
    assert client.get("/api/v1/embedding-models").status_code == 200  # cookie now sent
    assert client.get("/", follow_redirects=False).status_code == 200

    client.cookies.clear()
    old = client.get(f"/?token={TOKEN}", follow_redirects=False)  # an old bookmark
    assert old.status_code == 303 and old.headers["location"] == "/"
    assert "set-cookie" not in old.headers  # it no longer signs in
    assert client.get("/", follow_redirects=False).headers["location"] == "/login"


def test_without_a_token_the_sign_in_page_leads_to_the_dashboard(client: TestClient) -> None:
    for method in ("GET", "POST"):
        response = client.request(method, "/login", follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"] == "/"


def test_oversized_body_is_413_before_it_is_read(client: TestClient) -> None:
    big = b'{"items": [' + b'{"object_id": "x", "text": "' + b"a" * (21 * 1024 * 1024) + b'"}]}'
    response = client.post("/api/v1/items", content=big,
                           headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert "limit" in response.json()["detail"]

    def chunks():
        for _ in range(22):
            yield b"a" * (1024 * 1024)

    streamed = client.post("/api/v1/items", content=chunks(),
                           headers={"content-type": "application/json"})
    assert streamed.status_code == 413


def test_model_source_cannot_escape_the_allowed_roots(client_factory, tmp_path: Path) -> None:
    inside = tmp_path / "data" / "imports" / "my-model"
    inside.mkdir(parents=True)
    (inside / "modules.json").write_text("[]")  # a model directory (test_model_sources.py)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    client = client_factory()
    body = {"name": "m", "plugin_name": "sleepy"}
    ok = client.post("/api/v1/embedding-models", json={**body, "source": str(inside)})
    assert ok.status_code == 201
    for source in (str(outside), str(inside / ".." / ".." / ".." / "elsewhere"), "/etc"):
        denied = client.post("/api/v1/embedding-models", json={**body, "source": source})
        assert denied.status_code == 400
        assert "outside the allowed model roots" in denied.json()["detail"]
    link = tmp_path / "data" / "sneaky"
    link.symlink_to(outside)
    denied = client.post("/api/v1/embedding-models", json={**body, "source": str(link)})
    assert denied.status_code == 400


def test_docs_and_their_assets_send_a_strict_policy(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200 and "swagger-ui-bundle.js" in page.text
    assert "<script>" not in page.text  # no inline script: Swagger UI starts from /docs/init.js
    assert '<script src="/docs/init.js"></script>' in page.text
    for path in ("/docs", "/docs/init.js", "/docs-assets/swagger-ui-bundle.js",
                 "/docs-assets/swagger-ui.css"):
        response = client.get(path)
        assert response.status_code == 200, path
        csp = response.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp, path
        assert "unsafe" not in csp and "frame-ancestors 'none'" in csp, path
        assert response.headers["x-frame-options"] == "DENY", path
        assert response.headers["x-content-type-options"] == "nosniff", path
    assert "SwaggerUIBundle(" in client.get("/docs/init.js").text
    assert '"/openapi.json"' in client.get("/docs/init.js").text
