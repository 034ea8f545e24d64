"""A search task's lifecycle on every backend, with a plugin of known learning curves
(tests/support/search_plugin.py): trials recorded, only the best model kept, warm start and
median pruning, a re-queued study going on, cancel, and the 4xx of a bad spec."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from embtune.domain.search_trials import TrialState
from embtune.storage.search_trials_repo import SearchTrialRepository
from embtune.storage.tasks_repo import TaskRepository
from tests.conftest import events, register_model, task_status, wait_status, wait_until
from tests.support.backends import TEST_PLUGINS
from tests.support.search_plugin import quality

TASKS = "/api/v1/fine-tuning/task"
CURVE = "tests.support.search_plugin:CurvePlugin"


@pytest.fixture
def curve_client(client_factory: Callable[..., TestClient]) -> TestClient:
    return client_factory(plugins=[*TEST_PLUGINS, CURVE])


def _create(client: TestClient, model_id: str, search: dict[str, Any], **params: Any) -> dict:
    body = {"embedding_model_id": model_id, "params": {**params, "search": search}}
    response = client.post(TASKS, json=body)
    assert response.status_code == 201, response.text
    return response.json()


def _trials(client: TestClient, task_id: str) -> list[dict[str, Any]]:
    response = client.get(f"{TASKS}/{task_id}/trials")
    assert response.status_code == 200, response.text
    return response.json()


def _staged(client: TestClient) -> list[Path]:
    staging = client.app.state.runtime.artifacts.root / ".staging"
    return list(staging.rglob("*")) if staging.exists() else []


def _weights(client: TestClient, model_id: str) -> str:
    source = client.get(f"/api/v1/embedding-models/{model_id}").json()["source"]
    return (Path(source) / "weights.txt").read_text()


def test_a_search_records_its_trials_and_keeps_only_the_best_model(
    curve_client: TestClient,
) -> None:
    client = curve_client
    model_id = register_model(client, plugin="curve")
    space = {"learning_rate": {"type": "float", "low": 1e-7, "high": 1e-2, "log": True}}
    task = _create(client, model_id, {"trials": 3, "space": space, "pruner": "none"})
    done = wait_status(client, task["id"], "done", timeout=60)

    trials = _trials(client, task["id"])
    assert [(t["number"], t["state"]) for t in trials] == [(n, "complete") for n in range(3)]
    for trial in trials:  # each trial's own curve: evaluated at half and at the end of its epoch
        q = quality(trial["params"]["learning_rate"])
        assert trial["value"] == pytest.approx(q)
        assert trial["intermediate"] == [[50, pytest.approx(q / 2)], [100, pytest.approx(q)]]
    best = max(trials, key=lambda t: t["value"])
    search = done["metrics"]["search"]
    assert (search["trials"], search["completed"], search["pruned"]) == (3, 3, 0)
    assert search["best_trial"] == best["number"] and search["best_params"] == best["params"]
    assert search["best_value"] == pytest.approx(best["value"])
    assert search["metric"] == "ndcg@10" and search["direction"] == "maximize"
    assert search["space"] == space and search["warm_start"] is None
    assert done["metrics"]["judged"]["after"]["ndcg@10"] == pytest.approx(best["value"])
    # the result is the best trial's files; the others left none
    assert _weights(client, done["result_model_id"]) == f"lr {best['params']['learning_rate']}\n"
    tuned = [m for m in client.get("/api/v1/embedding-models").json() if m["task_id"]]
    assert [m["id"] for m in tuned] == [done["result_model_id"]]
    assert _staged(client) == []
    messages = [e["message"] for e in events(client, task["id"]) if e["kind"] == "progress"]
    assert {"trial 1/3: training", "trial 3/3: training"} <= set(messages)


def test_the_next_search_warm_starts_and_prunes_trials_behind_the_median(
    curve_client: TestClient,
) -> None:
    """The parent search's best lr (1e-4, the curve's best) is the child's first trial; every
    later trial samples a worse lr and reports less at the first evaluation: pruned there."""
    client = curve_client
    model_id = register_model(client, plugin="curve")
    only = {"learning_rate": {"type": "categorical", "choices": [1e-4]}}
    parent = wait_status(client, _create(client, model_id, {"trials": 1, "space": only})["id"],
                         "done", timeout=60)
    assert parent["metrics"]["search"]["best_params"] == {"learning_rate": 1e-4}

    below = {"learning_rate": {"type": "float", "low": 1e-7, "high": 3e-4, "log": True}}
    task = _create(client, parent["result_model_id"],
                   {"trials": 3, "space": below, "startup_trials": 1}, epochs=2)
    done = wait_status(client, task["id"], "done", timeout=60)
    trials = _trials(client, task["id"])
    assert trials[0]["params"] == {"learning_rate": 1e-4} and trials[0]["state"] == "complete"
    assert [t["state"] for t in trials[1:]] == ["pruned", "pruned"]
    assert [t["pruned_at"] for t in trials[1:]] == [50, 50]
    assert all(len(t["intermediate"]) == 1 for t in trials[1:])
    search = done["metrics"]["search"]
    assert search["warm_start"] == {"learning_rate": 1e-4}
    assert (search["best_trial"], search["pruned"], search["trials"]) == (0, 2, 3)
    assert _staged(client) == []


def test_a_requeued_search_continues_from_the_recorded_trials(
    client_factory: Callable[..., TestClient],
) -> None:
    """The last run finished trial 0 and died in trial 1: the re-run marks trial 1 interrupted,
    runs its params again first, then samples until 3 trials ended; none recorded is re-run."""
    client = client_factory(run_worker=False, plugins=[*TEST_PLUGINS, CURVE])
    runtime = client.app.state.runtime
    model_id = register_model(client, plugin="curve")
    space = {"learning_rate": {"type": "float", "low": 1e-7, "high": 1e-2, "log": True}}
    task = _create(client, model_id, {"trials": 3, "space": space, "pruner": "none"})
    repo, now = SearchTrialRepository(), datetime.now(UTC)
    with runtime.db.transaction() as session:
        repo.start(session, task["id"], 0, {"learning_rate": 1e-4}, now)
        repo.finish(session, task["id"], 0, state=TrialState.complete, now=now, value=1.0,
                    intermediate=[[50, 0.5], [100, 1.0]])
        repo.start(session, task["id"], 1, {"learning_rate": 1e-3}, now)
        message_id = TaskRepository().get(session, task["id"]).message_id

    runtime.runner.handle(task["id"], message_id)

    done = task_status(client, task["id"])
    assert done["status"] == "done", done["detail"]
    trials = _trials(client, task["id"])
    assert [(t["number"], t["state"]) for t in trials] == [
        (0, "complete"), (1, "interrupted"), (2, "complete"), (3, "complete")
    ]
    assert trials[0]["intermediate"] == [[50, 0.5], [100, 1.0]]  # recorded, not run again
    assert trials[2]["params"] == {"learning_rate": 1e-3}
    search = done["metrics"]["search"]
    assert (search["trials"], search["interrupted"], search["best_trial"]) == (3, 1, 0)
    # trial 0's files went with the old run: its params are trained again for the result
    assert search["retrained_best"] is True
    assert _weights(client, done["result_model_id"]) == "lr 0.0001\n"
    assert _staged(client) == []


def test_cancel_stops_the_study(curve_client: TestClient) -> None:
    client = curve_client
    model_id = register_model(client, plugin="curve")
    space = {"learning_rate": {"type": "float", "low": 1e-7, "high": 1e-2, "log": True}}
    task = _create(client, model_id, {"trials": 3, "space": space},
                   steps_per_epoch=1000, step_seconds=0.05)
    wait_until(
        lambda: task_status(client, task["id"])["progress"]["message"] == "trial 1/3: training",
        30,
    )
    assert client.put(f"{TASKS}/{task['id']}/cancel").status_code == 200
    wait_until(lambda: [e for e in events(client, task["id"])
                        if e["message"].startswith("run stop")], timeout=30)
    assert task_status(client, task["id"])["status"] == "canceled"
    assert [(t["number"], t["state"]) for t in _trials(client, task["id"])] == [
        (0, "interrupted")
    ]
    assert _staged(client) == []


LR = {"learning_rate": {"type": "float", "low": 1e-5, "high": 3e-4, "log": True}}


@pytest.mark.parametrize(
    ("search", "named"),
    [
        ({"trials": 0, "space": LR}, "params.search.trials"),
        ({"trials": 2, "metric": "loss", "space": LR}, "params.search.metric"),
        ({"trials": 2, "space": {"seed": {"type": "int", "low": 1, "high": 2}}},
         "params.search.space.seed"),
        ({"trials": 2, "space": {"learning_rate": {"type": "float", "low": 1e-5, "high": 1}}},
         "params.search.space.learning_rate.high"),
        ({"trials": 2, "space": {"batch_size": {"type": "int", "low": 8, "high": 16}}},
         "params.search.space.batch_size"),  # not a param of this method
    ],
)
def test_an_invalid_search_is_a_422_naming_it_with_nothing_stored(
    curve_client: TestClient, search: dict[str, Any], named: str
) -> None:
    model_id = register_model(curve_client, plugin="curve")
    body = {"embedding_model_id": model_id, "params": {"search": search}}
    response = curve_client.post(TASKS, json=body)
    assert response.status_code == 422
    locs = [".".join(map(str, e["loc"][1:])) for e in response.json()["detail"]]
    assert any(loc.startswith(named) for loc in locs), locs
    assert curve_client.get(TASKS).json() == []


def test_trials_of_an_unknown_task_are_a_404_and_a_plain_task_has_none(
    client: TestClient,
) -> None:
    assert client.get(f"{TASKS}/nope/trials").status_code == 404
    model_id = register_model(client)
    task = client.post(TASKS, json={"embedding_model_id": model_id}).json()
    assert _trials(client, task["id"]) == []
    # and once it ran: a task without `search` records no trial (waiting for it also ends its
    # run before the worker is stopped, which an abandoned run would outlast)
    wait_status(client, task["id"], "done")
    assert _trials(client, task["id"]) == []
