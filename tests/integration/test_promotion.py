"""A task's verdict and what it does, through the API on every backend: the judged set a run
gets, the policy params' validation, promotion only on `better` (in the transaction that marks
the task done), and two tasks promoting one alias at once."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import events, register_model, wait_status

TASKS = "/api/v1/fine-tuning/task"


def create(client: TestClient, model_id: str, **params: Any) -> dict[str, Any]:
    response = client.post(TASKS, json={"embedding_model_id": model_id, "params": params})
    assert response.status_code == 201, response.text
    return response.json()


def run(client: TestClient, model_id: str, **params: Any) -> dict[str, Any]:
    return wait_status(client, create(client, model_id, **params)["id"], "done")


def alias(client: TestClient, name: str) -> dict[str, Any] | None:
    response = client.get(f"/api/v1/aliases/{name}")
    if response.status_code == 404:
        return None
    assert response.status_code == 200, response.text
    return response.json()


def task_count(client: TestClient) -> int:
    response = client.get(TASKS, params={"limit": 1})
    return int(response.headers["X-Total-Count"])


@pytest.fixture
def judged_set(client: TestClient) -> dict[str, Any]:
    items = [{"object_id": f"doc-{n}", "text": f"document {n}"} for n in range(3)]
    assert client.post("/api/v1/items", json={"items": items}).status_code == 200
    body = {
        "name": "golden",
        "queries": [
            {"query_id": "q1", "text": "first", "relevant": [{"object_id": "doc-0", "grade": 2}]},
            {"query_id": "q2", "text": "second", "relevant": [{"object_id": "doc-1"}]},
        ],
    }
    response = client.post("/api/v1/evaluation-sets", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def test_a_better_verdict_promotes_in_the_same_step_as_done(
    client: TestClient, model_id: str
) -> None:
    done = run(client, model_id, verdict="better", promote_to="production")
    tuned = done["result_model_id"]
    assert done["params"]["promote_if"] == "better"  # the default, stored with the task
    assert done["metrics"]["promotion"]["promoted"] is True
    live = alias(client, "production")
    assert live is not None and live["model_id"] == tuned
    assert live["history"][0]["action"] == "promote"
    assert live["history"][0]["actor"] == f"task:{done['id']}"
    history = events(client, done["id"])
    kinds = [e["kind"] for e in history]
    # the verdict and the promotion are recorded before the task is done, in one transaction
    assert kinds.index("verdict") < kinds.index("promotion") < len(kinds) - 1
    assert history[-1]["to_status"] == "done"
    promotion = next(e for e in history if e["kind"] == "promotion")
    assert "promoted model" in promotion["message"] and "production" in promotion["message"]
    # the alias serves the tuned model
    model = client.get(f"/api/v1/embedding-models/{tuned}").json()
    assert model["id"] == tuned


@pytest.mark.parametrize("verdict", ["worse", "inconclusive", None])
def test_no_promotion_without_a_better_verdict(
    client: TestClient, model_id: str, verdict: str | None
) -> None:
    first = run(client, model_id, verdict="better", promote_to="production")
    params = {"promote_to": "production", **({"verdict": verdict} if verdict else {})}
    done = run(client, model_id, **params)
    assert done["metrics"]["promotion"]["promoted"] is False
    live = alias(client, "production")
    assert live is not None and live["model_id"] == first["result_model_id"]
    assert live["version"] == 1
    note = next(e for e in events(client, done["id"]) if e["kind"] == "promotion")
    assert note["message"].startswith("not promoted")


def test_promote_if_always_promotes_a_worse_model(client: TestClient, model_id: str) -> None:
    done = run(client, model_id, verdict="worse", promote_to="staging", promote_if="always")
    live = alias(client, "staging")
    assert live is not None and live["model_id"] == done["result_model_id"]


def test_a_task_without_promote_to_touches_no_alias(client: TestClient, model_id: str) -> None:
    done = run(client, model_id, verdict="better")
    assert "promotion" not in done["metrics"]
    assert client.get("/api/v1/aliases").json() == []
    assert [e for e in events(client, done["id"]) if e["kind"] == "promotion"] == []


def test_two_tasks_promoting_at_once_leave_a_consistent_history(
    client: TestClient, model_id: str
) -> None:
    with ThreadPoolExecutor(max_workers=4) as pool:
        created = list(pool.map(
            lambda _: create(client, model_id, verdict="better", promote_to="production",
                             steps=2, step_seconds=0.05),
            range(4),
        ))
    finished = [wait_status(client, task["id"], "done", timeout=60) for task in created]
    live = alias(client, "production")
    assert live is not None and live["version"] == 4
    changes = list(reversed(live["history"]))  # oldest first
    assert [c["version"] for c in changes] == [1, 2, 3, 4]
    assert changes[0]["previous_model_id"] is None
    for before, after in itertools.pairwise(changes):
        assert after["previous_model_id"] == before["model_id"]
    assert live["model_id"] == changes[-1]["model_id"]
    assert {c["model_id"] for c in changes} == {t["result_model_id"] for t in finished}
    # each task's own record agrees with the alias's history
    by_model = {c["model_id"]: c for c in changes}
    for task in finished:
        promotion = task["metrics"]["promotion"]
        assert promotion["version"] == by_model[task["result_model_id"]]["version"]


def test_rollback_returns_the_alias_to_the_model_before_a_promotion(
    client: TestClient, model_id: str
) -> None:
    first = run(client, model_id, verdict="better", promote_to="production")
    second = run(client, model_id, verdict="better", promote_to="production")
    assert alias(client, "production")["model_id"] == second["result_model_id"]  # type: ignore[index]
    response = client.post("/api/v1/aliases/production/rollback", json={})
    assert response.status_code == 200, response.text
    assert response.json()["model_id"] == first["result_model_id"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"evaluation_set_id": "no-such-set"}, "evaluation_set_id"),
        ({"evaluation_set_id": "a b"}, "evaluation_set_id"),
        ({"promote_if": "better"}, "promote_if"),
        ({"promote_to": "production", "promote_if": "sometimes"}, "promote_if"),
        ({"promote_to": "x" * 101}, "promote_to"),
        ({"promote_to": "../live"}, "promote_to"),
    ],
)
def test_bad_policy_params_are_named_and_nothing_is_stored(
    client_factory: Callable[..., TestClient], params: dict[str, Any], field: str
) -> None:
    client = client_factory(run_worker=False)  # nothing runs: no worker to start and stop
    model_id = register_model(client)
    before = task_count(client)
    response = client.post(TASKS, json={"embedding_model_id": model_id, "params": params})
    assert response.status_code == 422, response.text
    locs = [error["loc"] for error in response.json()["detail"]]
    assert ["body", "params", field] in locs, locs
    assert task_count(client) == before


def test_a_run_is_judged_on_the_task_set_else_the_model_default(
    client: TestClient, model_id: str, judged_set: dict[str, Any]
) -> None:
    plain = run(client, model_id)
    assert "judged_on" not in plain["metrics"]
    # by name at creation; stored as the id, so the task names the set it was created with
    named = run(client, model_id, evaluation_set_id="golden")
    assert named["params"]["evaluation_set_id"] == judged_set["id"]
    assert named["metrics"]["judged_on"] == {"id": judged_set["id"], "queries": ["q1", "q2"]}
    response = client.put(
        f"/api/v1/embedding-models/{model_id}/evaluation-set",
        json={"evaluation_set_id": judged_set["id"]},
    )
    assert response.status_code == 200, response.text
    by_default = run(client, model_id)
    assert by_default["metrics"]["judged_on"]["id"] == judged_set["id"]
    tuned = client.get(f"/api/v1/embedding-models/{by_default['result_model_id']}").json()
    assert tuned["evaluation_set_id"] == judged_set["id"]  # an iteration keeps its parent's set


def test_preflight_says_what_the_verdict_will_be_decided_on(
    client: TestClient, model_id: str, judged_set: dict[str, Any]
) -> None:
    body = {"embedding_model_id": model_id, "params": {}}
    clicks = client.post(f"{TASKS}/preflight", json=body).json()
    assert clicks["evaluation"]["basis"] == "clicks"
    body["params"] = {"evaluation_set_id": "golden"}
    judged = client.post(f"{TASKS}/preflight", json=body).json()
    assert judged["evaluation"]["basis"] == "judged"
    assert judged["evaluation"]["evaluation_set"]["queries"] == 2
