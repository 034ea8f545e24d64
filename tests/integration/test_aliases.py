"""Aliases through the HTTP API: set, read, list, history with the actor, rollback as an undo
stack, refusals that store nothing, and `/embed` and `download` through an alias."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from embtune.domain.evaluation_sets import NAME_MAX_LENGTH
from tests.conftest import register_model


@pytest.fixture
def client(client_factory: Callable[..., TestClient]) -> TestClient:
    """No task runs here: an app without its in-process worker starts and stops in a fraction
    of the time."""
    return client_factory(run_worker=False)


ALIASES = "/api/v1/aliases"
MODELS = "/api/v1/embedding-models"
TOKEN = "s3cret-token-0123456789"


def point(client: TestClient, name: str, model_id: str, **body: object) -> dict:
    response = client.put(f"{ALIASES}/{name}", json={"model_id": model_id, **body})
    assert response.status_code == 200, response.text
    return response.json()


def rollback(client: TestClient, name: str, **body: object) -> dict:
    response = client.post(f"{ALIASES}/{name}/rollback", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def alias_count(client: TestClient) -> int:
    response = client.get(ALIASES)
    assert response.status_code == 200, response.text
    return int(response.headers["X-Total-Count"])


def test_set_get_list_and_history_record_who_and_why(client: TestClient) -> None:
    first, second = register_model(client, name="a"), register_model(client, name="b")
    created = point(client, "production", first, reason="first launch")
    assert (created["name"], created["model_id"], created["version"]) == ("production", first, 1)
    assert created["updated_by"] == "api"  # no token configured: anyone may call
    assert created["history"] == [{
        "version": 1, "action": "set", "model_id": first, "previous_model_id": None,
        "actor": "api", "reason": "first launch", "created_at": created["updated_at"],
    }]
    moved = point(client, "production", second)
    assert (moved["model_id"], moved["version"]) == (second, 2)
    assert [(c["version"], c["model_id"], c["previous_model_id"]) for c in moved["history"]] == [
        (2, second, first), (1, first, None)]

    again = point(client, "production", second, reason="retried")  # already there: no change
    assert again == moved
    point(client, "staging", first)

    shown = client.get(f"{ALIASES}/production").json()
    assert shown == moved
    listed = client.get(ALIASES, params={"limit": 1})
    assert listed.headers["X-Total-Count"] == "2"
    assert [a["name"] for a in listed.json()] == ["production"]  # by name
    assert "history" not in listed.json()[0]
    assert [a["name"] for a in client.get(ALIASES, params={"offset": 1}).json()] == ["staging"]


@pytest.mark.backends("sqlite-embedded")
def test_the_actor_is_how_the_caller_signed_in(client_factory: Callable[..., TestClient]) -> None:
    client = client_factory(api_token=TOKEN)
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    model = client.post(MODELS, headers=bearer, json={
        "name": "m", "plugin_name": "sleepy", "source": "builtin:all-MiniLM-L6-v2"}).json()["id"]
    assert client.put(f"{ALIASES}/p", json={"model_id": model}).status_code == 401
    by_token = client.put(f"{ALIASES}/p", headers=bearer, json={"model_id": model}).json()
    assert by_token["updated_by"] == "user:token"
    assert by_token["history"][0]["actor"] == "user:token"

    signed_in = client.post("/login", data={"token": TOKEN}, follow_redirects=False)
    assert signed_in.status_code == 303  # the client keeps the session cookie from here on
    second = client.post(MODELS, json={
        "name": "n", "plugin_name": "sleepy", "source": "builtin:all-MiniLM-L6-v2"}).json()["id"]
    by_dashboard = client.put(f"{ALIASES}/p", json={"model_id": second}).json()
    assert by_dashboard["updated_by"] == "user:dashboard"


def test_rollback_is_an_undo_stack(client: TestClient) -> None:
    m1, m2, m3, m4 = (register_model(client, name=f"m{i}") for i in range(1, 5))
    only = point(client, "p", m1)
    refused = client.post(f"{ALIASES}/p/rollback")  # one change: nothing before it
    assert refused.status_code == 409 and "no earlier model" in refused.json()["detail"]
    assert client.get(f"{ALIASES}/p").json() == only

    point(client, "p", m2)
    point(client, "p", m3)
    back = rollback(client, "p", reason="m3 hurts recall")
    assert (back["model_id"], back["version"]) == (m2, 4)
    assert back["history"][0] == {**back["history"][0], "action": "rollback", "model_id": m2,
                                  "previous_model_id": m3, "reason": "m3 hurts recall"}
    assert rollback(client, "p")["model_id"] == m1  # again: further back, not to m3
    assert client.post(f"{ALIASES}/p/rollback").status_code == 409  # the stack is empty

    point(client, "p", m4)  # a new change after rollbacks: undoing it goes back to m1
    assert rollback(client, "p")["model_id"] == m1
    final = client.get(f"{ALIASES}/p").json()
    assert [(c["action"], c["model_id"]) for c in final["history"]] == [
        ("rollback", m1), ("set", m4), ("rollback", m1), ("rollback", m2), ("set", m3),
        ("set", m2), ("set", m1)]
    assert final["version"] == 7
    assert client.post(f"{ALIASES}/nope/rollback").status_code == 404


def test_expected_version_guards_a_change(client: TestClient) -> None:
    m1, m2 = register_model(client, name="a"), register_model(client, name="b")
    created = point(client, "p", m1, expected_version=0)  # 0: only if new
    stale = client.put(f"{ALIASES}/p", json={"model_id": m2, "expected_version": 0})
    assert stale.status_code == 409 and "version 1" in stale.json()["detail"]
    assert client.get(f"{ALIASES}/p").json() == created
    assert point(client, "p", m2, expected_version=1)["version"] == 2
    # a retry of that PUT after a lost answer: already done, not a conflict
    assert point(client, "p", m2, expected_version=1)["version"] == 2
    stale_rollback = client.post(f"{ALIASES}/p/rollback", json={"expected_version": 1})
    assert stale_rollback.status_code == 409
    assert rollback(client, "p", expected_version=2)["model_id"] == m1


def test_an_unknown_model_is_404_naming_it_and_stores_nothing(client: TestClient) -> None:
    missing = "f" * 32
    response = client.put(f"{ALIASES}/production", json={"model_id": missing})
    assert response.status_code == 404
    assert "model_id" in response.json()["detail"] and missing in response.json()["detail"]
    assert client.get(f"{ALIASES}/production").status_code == 404
    assert alias_count(client) == 0

    model = register_model(client)
    point(client, "production", model)
    assert client.put(f"{ALIASES}/production", json={"model_id": missing}).status_code == 404
    kept = client.get(f"{ALIASES}/production").json()
    assert (kept["model_id"], kept["version"], len(kept["history"])) == (model, 1, 1)


@pytest.mark.parametrize("name", [
    "x" * (NAME_MAX_LENGTH + 1), "a b", "é", ".hidden", "-x", "a%00b", "0123456789abcdef" * 2,
])
@pytest.mark.backends("sqlite-embedded", "postgres-redis")
def test_a_bad_name_is_422_naming_the_path_parameter(client: TestClient, name: str) -> None:
    model = register_model(client)
    put = client.put(f"{ALIASES}/{name}", json={"model_id": model})
    assert put.status_code == 422, put.text  # (a name spelled like a model id: by the service)
    for response in (put, client.get(f"{ALIASES}/{name}"),
                     client.post(f"{ALIASES}/{name}/rollback")):
        assert response.status_code in (404, 422), response.text
        if response.status_code == 422:
            assert [e["loc"] for e in response.json()["detail"]] == [["path", "name"]]
    assert alias_count(client) == 0


def test_a_path_that_climbs_out_stores_nothing(client: TestClient) -> None:
    model = register_model(client)
    response = client.put(f"{ALIASES}/../x", json={"model_id": model})
    assert response.status_code in (404, 405, 422)
    response = client.put(f"{ALIASES}/..%2Fx", json={"model_id": model})
    assert response.status_code in (404, 422)
    assert alias_count(client) == 0


def test_body_fields_are_checked(client: TestClient) -> None:
    model = register_model(client)
    for body, field in (
        ({}, "model_id"),
        ({"model_id": model, "reason": "x" * 1001}, "reason"),
        ({"model_id": model, "expected_version": -1}, "expected_version"),
        ({"model_id": model, "extra": 1}, "extra"),
    ):
        response = client.put(f"{ALIASES}/p", json=body)
        assert response.status_code == 422, body
        assert ["body", field] in [e["loc"] for e in response.json()["detail"]]
    assert alias_count(client) == 0


@pytest.mark.backends("sqlite-embedded")  # loads the built-in model's weights: seconds
def test_embed_and_download_follow_an_alias(client: TestClient) -> None:
    first, second = register_model(client, name="a"), register_model(client, name="b")
    point(client, "production", first)
    embedded = client.post(f"{MODELS}/production/embed", json={"texts": ["red shoes"]})
    assert embedded.status_code == 200, embedded.text
    assert embedded.json()["model_id"] == first and embedded.json()["dimension"] == 384

    download = client.get(f"{MODELS}/production/download")
    assert download.status_code == 200, download.text
    assert f"embtune-model-{first}.tar.gz" in download.headers["content-disposition"]
    with tarfile.open(fileobj=io.BytesIO(download.content), mode="r:gz") as tar:
        assert {n.split("/")[0] for n in tar.getnames()} == {first}

    point(client, "production", second)
    moved = client.post(f"{MODELS}/production/embed", json={"texts": ["red shoes"]}).json()
    assert moved["model_id"] == second
    assert moved["vectors"] == embedded.json()["vectors"]  # the same weights under both ids
    by_id = client.post(f"{MODELS}/{first}/embed", json={"texts": ["x"]})
    assert by_id.status_code == 200 and by_id.json()["model_id"] == first

    for unknown in (client.post(f"{MODELS}/nope/embed", json={"texts": ["x"]}),
                    client.get(f"{MODELS}/nope/download")):
        assert unknown.status_code == 404
        assert unknown.json()["detail"] == "no embedding model or alias named 'nope'"
