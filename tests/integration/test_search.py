"""Hyperparameter search with real (tiny) fine-tuning on the shop data: trials evaluated
mid-training, the best one's model as the result, a trial pruned inside the trainer, a
re-queued search going on. The lifecycle on every backend: test_search_lifecycle.py."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from embtune.domain.search_trials import TrialState
from embtune.services.search_study import trial_value
from embtune.storage.search_trials_repo import SearchTrialRepository
from embtune.storage.tasks_repo import TaskRepository
from tests.conftest import events, register_model, task_status, wait_status
from tests.integration.test_real_finetune import ingest_shop

TASKS = "/api/v1/fine-tuning/task"
PARAMS = {"max_seq_length": 32, "batch_size": 16, "epochs": 1, "seed": 0}
LR_SPACE = {"learning_rate": {"type": "float", "low": 5e-5, "high": 3e-4, "log": True}}


def _create(client: TestClient, model_id: str, search: dict[str, Any], **params: Any) -> dict:
    body = {"embedding_model_id": model_id, "params": {**PARAMS, **params, "search": search}}
    response = client.post(TASKS, json=body)
    assert response.status_code == 201, response.text
    return response.json()


def _trials(client: TestClient, task_id: str) -> list[dict[str, Any]]:
    response = client.get(f"{TASKS}/{task_id}/trials")
    assert response.status_code == 200, response.text
    return response.json()


def _staged(client: TestClient) -> list[str]:
    staging = client.app.state.runtime.artifacts.root / ".staging"
    return [str(p) for p in staging.rglob("*")] if staging.exists() else []


@pytest.mark.slow  # ~1 min: the same lifecycle runs in the default suite on the curve plugin
@pytest.mark.backends("sqlite-embedded")
def test_a_search_runs_its_trials_and_its_result_is_the_best_trial(client: TestClient) -> None:
    ingest_shop(client)
    model_id = register_model(client, plugin="sentence-transformers-mnrl")
    task = _create(client, model_id, {"trials": 2, "space": LR_SPACE, "pruner": "none"})
    done = wait_status(client, task["id"], "done", timeout=400)

    trials = _trials(client, task["id"])
    assert [t["number"] for t in trials] == [0, 1]
    assert all(t["state"] == "complete" and t["intermediate"] for t in trials)
    # evaluated mid-training at half and at the end of the one epoch
    assert [step for step, _ in trials[0]["intermediate"]] == [50, 100]
    best = max(trials, key=lambda t: t["value"])
    search = done["metrics"]["search"]
    assert search["trials"] == 2 and search["pruned"] == 0 and search["metric"] == "ndcg@10"
    assert search["best_trial"] == best["number"] and search["best_params"] == best["params"]
    assert search["retrained_best"] is False
    # the result is the best trial's run: its metrics give the best value
    assert trial_value(done["metrics"], "ndcg@10") == pytest.approx(best["value"])
    assert done["metrics"]["params"]["learning_rate"] == pytest.approx(
        best["params"]["learning_rate"]
    )
    messages = [e["message"] for e in events(client, task["id"]) if e["kind"] == "progress"]
    assert "trial 2/2: training" in messages
    # one model registered; the losing trial left no files
    tuned = [m for m in client.get("/api/v1/embedding-models").json() if m["task_id"]]
    assert [m["id"] for m in tuned] == [done["result_model_id"]]
    assert _staged(client) == []


@pytest.mark.backends("sqlite-embedded")
def test_a_requeued_search_goes_on_and_prunes_a_trial_behind_the_median(
    client_factory: Callable[..., TestClient],
) -> None:
    """The last run completed trial 0 and died during trial 1 (lr 1e-2: ruins the model). The
    re-run marks trial 1 interrupted, runs its params again as trial 2, which the median pruner
    stops behind trial 0 (whose recorded values are perfect), and, trial 0's files being gone
    with the old run, trains trial 0's params again as the result."""
    client = client_factory(run_worker=False)
    runtime = client.app.state.runtime
    ingest_shop(client)
    model_id = register_model(client, plugin="sentence-transformers-mnrl")
    space = {"learning_rate": {"type": "categorical", "choices": [2e-4, 1e-2]}}
    task = _create(client, model_id, {"trials": 2, "space": space, "startup_trials": 1})
    repo, now = SearchTrialRepository(), datetime.now(UTC)
    with runtime.db.transaction() as session:
        repo.start(session, task["id"], 0, {"learning_rate": 2e-4}, now)
        repo.finish(session, task["id"], 0, state=TrialState.complete, now=now, value=1.0,
                    intermediate=[[50, 1.0], [100, 1.0]])
        repo.start(session, task["id"], 1, {"learning_rate": 1e-2}, now)
        message_id = TaskRepository().get(session, task["id"]).message_id

    runtime.runner.handle(task["id"], message_id)

    done = task_status(client, task["id"])
    assert done["status"] == "done", done["detail"]
    trials = _trials(client, task["id"])
    assert [(t["number"], t["state"]) for t in trials] == [
        (0, "complete"), (1, "interrupted"), (2, "pruned")
    ]
    assert trials[2]["params"] == {"learning_rate": 1e-2}
    assert trials[2]["pruned_at"] in (50, 100) and trials[2]["value"] < 1.0
    search = done["metrics"]["search"]
    assert search["best_trial"] == 0 and search["retrained_best"] is True
    assert (search["trials"], search["pruned"], search["interrupted"]) == (2, 1, 1)
    assert done["metrics"]["params"]["learning_rate"] == pytest.approx(2e-4)
    assert _staged(client) == []

