"""Bad input gets a clear 4xx naming the field; errors are JSON; no traceback leaks."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from embtune.storage.db import utcnow
from embtune.storage.models_repo import ModelRepository
from tests.conftest import register_model

TASKS = "/api/v1/fine-tuning/task"
pytestmark = pytest.mark.backends("sqlite-embedded", "postgres-redis")


def test_unknown_model_is_404(client: TestClient) -> None:
    response = client.post(TASKS, json={"embedding_model_id": "nope"})
    assert response.status_code == 404
    assert "nope" in response.json()["detail"]


def test_untrainable_plugin_is_400(client: TestClient) -> None:
    frozen = register_model(client, plugin="frozen")
    response = client.post(TASKS, json={"embedding_model_id": frozen})
    assert response.status_code == 400
    assert "cannot fine-tune" in response.json()["detail"]


def test_uninstalled_plugin_is_400(client: TestClient) -> None:
    runtime = client.app.state.runtime  # a model registered before its plugin was removed
    with runtime.db.transaction() as session:
        ModelRepository().insert(
            session,
            {"id": "orphan", "name": "o", "plugin_name": "gone", "source": "builtin:x",
             "parent_id": None, "task_id": None, "metrics": None, "created_at": utcnow()},
        )
    response = client.post(TASKS, json={"embedding_model_id": "orphan"})
    assert response.status_code == 400
    assert "'gone' is not installed" in response.json()["detail"]


def test_invalid_params_are_422_naming_the_field(client: TestClient, model_id: str) -> None:
    response = client.post(
        TASKS, json={"embedding_model_id": model_id, "params": {"steps": 0, "bogus": 1}}
    )
    assert response.status_code == 422
    locs = [tuple(e["loc"]) for e in response.json()["detail"]]
    assert ("body", "params", "steps") in locs
    assert ("body", "params", "bogus") in locs
    assert client.get(TASKS).headers["X-Total-Count"] == "0"  # nothing stored


def test_body_validation_names_the_field(client: TestClient) -> None:
    response = client.post(TASKS, json={"idempotency_key": ""})
    assert response.status_code == 422
    locs = [e["loc"][-1] for e in response.json()["detail"]]
    assert "embedding_model_id" in locs and "idempotency_key" in locs


@pytest.mark.parametrize("query", [{"limit": 0}, {"limit": 1001}, {"offset": -1}])
def test_page_bounds_are_422(client: TestClient, query: dict) -> None:
    response = client.get(TASKS, params=query)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][-1] in query


def test_unknown_status_filter_lists_the_valid_ones(client: TestClient) -> None:
    response = client.get(TASKS, params={"status": "running"})
    assert response.status_code == 422
    message = response.json()["detail"][0]["msg"]
    assert "pending" in message and "refused" in message


@pytest.mark.parametrize("method,suffix", [("get", ""), ("get", "/events"),
                                           ("put", "/restart"), ("put", "/cancel")])
def test_unknown_task_is_404(client: TestClient, method: str, suffix: str) -> None:
    response = getattr(client, method)(f"{TASKS}/missing{suffix}")
    assert response.status_code == 404
    assert response.json() == {"detail": "task 'missing' not found"}


def test_model_registration_validates_plugin_and_source(client: TestClient) -> None:
    bad_plugin = client.post("/api/v1/embedding-models",
                             json={"name": "m", "plugin_name": "nope", "source": "builtin:x"})
    assert bad_plugin.status_code == 400 and "plugin_name" in bad_plugin.json()["detail"]
    bad_source = client.post(
        "/api/v1/embedding-models",
        json={"name": "m", "plugin_name": "sleepy", "source": "/does/not/exist"},
    )
    assert bad_source.status_code == 400 and "source" in bad_source.json()["detail"]
    assert client.get("/api/v1/embedding-models/none").status_code == 404


def test_plugins_are_listed_with_their_schema(client: TestClient) -> None:
    plugins = {p["name"]: p for p in client.get("/api/v1/plugins").json()}
    assert plugins["sleepy"]["trainable"] is True
    assert plugins["frozen"]["trainable"] is False
    assert "steps" in plugins["sleepy"]["params_schema"]["properties"]


def test_server_error_hides_the_traceback(client: TestClient, monkeypatch) -> None:
    def explode(**_: object) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(client.app.state.runtime.tasks, "page", explode)
    response = client.get(TASKS)
    assert response.status_code == 500
    body = response.json()
    assert "secret" not in response.text and "Traceback" not in response.text
    assert body["detail"].startswith("internal server error")


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "broker": "ok"}


def test_openapi_docs_are_served_without_a_cdn(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    assert "cdn" not in page.text and "/docs-assets/swagger-ui-bundle.js" in page.text
    assert client.get("/docs-assets/swagger-ui-bundle.js").status_code == 200
    assert "/api/v1/fine-tuning/task" in client.get("/openapi.json").json()["paths"]
