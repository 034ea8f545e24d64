"""Access control and request hygiene: token auth, body limit, model source roots."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

pytestmark = pytest.mark.backends("sqlite-embedded")


def test_token_guards_everything_but_health(client_factory) -> None:
    client = client_factory(api_token="s3cret")
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    denied = client.get("/api/v1/fine-tuning/task")
    assert denied.status_code == 401 and denied.json() == {"detail": "missing or invalid API token"}
    assert client.get("/api/v1/fine-tuning/task",
                      headers={"Authorization": "Bearer wrong"}).status_code == 401
    ok = client.get("/api/v1/fine-tuning/task", headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200
    assert client.get("/").status_code == 401  # the dashboard too


def test_dashboard_login_sets_a_cookie(client_factory) -> None:
    client = client_factory(api_token="s3cret")
    login = client.get("/?token=s3cret", follow_redirects=False)
    assert login.status_code == 303
    assert "HttpOnly" in login.headers["set-cookie"]
    assert client.get("/api/v1/embedding-models").status_code == 200  # cookie now sent
    client.cookies.clear()
    assert client.get("/?token=nope", follow_redirects=False).status_code == 401


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
