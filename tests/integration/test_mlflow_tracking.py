"""Tasks logged as MLflow runs, read back through the real mlflow package from a local SQLite
store; an unreachable tracker costs a warning event, never the task."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient
from mlflow.entities import Run

from tests.conftest import events, register_model, wait_status, wait_until
from tests.integration.test_real_finetune import ingest_shop

TASKS = "/api/v1/fine-tuning/task"
PARAMS = {"max_seq_length": 32, "batch_size": 16, "learning_rate": 2e-4, "epochs": 1, "seed": 0}
pytestmark = pytest.mark.backends("sqlite-embedded")


def _store(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def _run_of(uri: str, task_id: str) -> Run:
    mlflow = MlflowClient(tracking_uri=uri)
    experiment = mlflow.get_experiment_by_name("embtune")
    assert experiment is not None
    runs = mlflow.search_runs([experiment.experiment_id],
                              filter_string=f"tags.`embtune.task_id` = '{task_id}'")
    assert len(runs) == 1
    return runs[0]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_fine_tuning_task_is_logged_as_an_mlflow_run(
    client_factory: Callable[..., TestClient], tmp_path: Path
) -> None:
    uri = _store(tmp_path)
    client = client_factory(mlflow_tracking_uri=uri)
    ingest_shop(client)
    model_id = register_model(client, plugin="sentence-transformers-mnrl")
    task = client.post(TASKS, json={"embedding_model_id": model_id, "params": PARAMS}).json()
    done = wait_status(client, task["id"], "done", timeout=240)
    metrics = done["metrics"]
    logged = _wait_for_event(client, task["id"], "run", "logged as run")

    run = _run_of(uri, task["id"])
    assert run.info.run_id in logged["message"]
    assert run.info.status == "FINISHED"
    tags, params, figures = run.data.tags, run.data.params, run.data.metrics
    assert tags["embtune.task_url"] == f"{TASKS}/{task['id']}"
    assert tags["embtune.model_id"] == model_id
    assert tags["embtune.result_model_id"] == done["result_model_id"]
    tuned = client.get(f"/api/v1/embedding-models/{done['result_model_id']}").json()
    assert tags["embtune.model_uri"] == tuned["source"]  # a reference, not a copy
    assert tags["embtune.verdict"] == metrics["verdict"]["verdict"]
    assert params["max_seq_length"] == "32" and params["epochs"] == "1"
    assert figures["before/ndcg_at_10"] == pytest.approx(metrics["before"]["ndcg@10"])
    assert figures["after/ndcg_at_10"] == pytest.approx(metrics["after"]["ndcg@10"])
    assert figures["data/sessions"] == metrics["data"]["sessions"]

    mlflow = MlflowClient(tracking_uri=uri)
    losses = mlflow.get_metric_history(run.info.run_id, "train_loss")
    assert sorted(m.step for m in losses) == list(range(1, metrics["training"]["steps"] + 1))
    stored = [a.path for a in mlflow.list_artifacts(run.info.run_id, "embtune")]
    assert stored == ["embtune/data_summary.json", "embtune/report.json"]
    card = [a.path for a in mlflow.list_artifacts(run.info.run_id, "model")]
    assert card == ["model/README.md"]  # the model card; the weights stay where embtune keeps them
    # the local store keeps its artifacts beside its database, not in the working directory
    artifacts = Path(urlsplit(run.info.artifact_uri).path)
    assert artifacts.is_relative_to(tmp_path / "mlartifacts")
    summary = json.loads((artifacts / "embtune" / "data_summary.json").read_text())
    assert summary == metrics["data"]


@pytest.mark.backends("sqlite-embedded", "postgres-redis", "postgres-rabbitmq")
def test_a_failed_task_is_logged_as_a_failed_run(
    client_factory: Callable[..., TestClient], tmp_path: Path
) -> None:
    uri = _store(tmp_path)
    client = client_factory(mlflow_tracking_uri=uri)
    task = client.post(TASKS, json={"embedding_model_id": register_model(client),
                                    "params": {"fail": True, "steps": 1}}).json()
    failed = wait_status(client, task["id"], "failed")
    _wait_for_event(client, task["id"], "run", "logged as run")
    run = _run_of(uri, task["id"])
    assert run.info.status == "FAILED"
    assert run.data.tags["mlflow.note.content"] == f"Task failed: {failed['detail']}"


@pytest.mark.backends("sqlite-embedded", "postgres-redis", "postgres-rabbitmq")
def test_an_unreachable_tracker_is_a_warning_that_shows_no_password(
    client_factory: Callable[..., TestClient], caplog: pytest.LogCaptureFixture
) -> None:
    port = _closed_port()
    client = client_factory(mlflow_tracking_uri=f"http://alice:s3cret@127.0.0.1:{port}")
    task = client.post(TASKS, json={"embedding_model_id": register_model(client),
                                    "params": {"steps": 1}}).json()
    with caplog.at_level(logging.WARNING):
        wait_status(client, task["id"], "done")
        warning = _wait_for_event(client, task["id"], "warning", "could not log the run")
    assert f"MLflow tracker at http://alice:***@127.0.0.1:{port}" in warning["message"]
    assert wait_status(client, task["id"], "done")["result_model_id"] is not None
    shown = json.dumps(events(client, task["id"])) + caplog.text
    assert "s3cret" not in shown and "could not log the run" in caplog.text


def test_with_tracking_off_a_task_logs_nothing(client: TestClient) -> None:
    task = client.post(TASKS, json={"embedding_model_id": register_model(client),
                                    "params": {"steps": 1}}).json()
    wait_status(client, task["id"], "done")
    history = events(client, task["id"])
    assert not [e for e in history if e["kind"] == "warning" or "MLflow" in e["message"]]


def _wait_for_event(client: TestClient, task_id: str, kind: str, text: str) -> dict[str, Any]:
    """The tracker is called after the task's final commit: its event follows the status."""
    found = wait_until(
        lambda: [e for e in events(client, task_id) if e["kind"] == kind and text in e["message"]],
        timeout=60,
    )
    return found[0]


def test_long_histories_and_many_params_are_logged_in_batches(tmp_path: Path) -> None:
    """MLflow takes at most 1,000 metrics and 100 params per call: a long run is chunked."""
    from embtune.domain.tasks import Progress, Task, TaskStatus
    from embtune.tracking import MlflowTracker, StepHistory

    history = StepHistory()
    for step in range(1, 601):  # two keys a step: 1,200 metrics
        history.record(step, {"loss": 1.0 / step, "learning_rate": 1e-4})
    now = datetime.now(UTC)
    task = Task(
        id="long", status=TaskStatus.done, embedding_model_id="m", idempotency_key=None,
        batch_id=None, params={f"p{i}": i for i in range(150)}, metadata={}, message_id=None,
        progress=Progress(), metrics=None, result_model_id=None, detail=None, attempts=1,
        created_at=now, updated_at=now, started_at=now, finished_at=now, heartbeat_at=None,
        dispatched_at=None, worker_id=None,
    )
    uri = _store(tmp_path)
    run_id = MlflowTracker(uri, "embtune").log_task(task, source=None, result=None,
                                                    steps=history.points)
    mlflow = MlflowClient(tracking_uri=uri)
    run = mlflow.get_run(run_id)
    assert run.info.status == "FINISHED" and len(run.data.params) == 150
    assert len(mlflow.get_metric_history(run_id, "train_loss")) == 600
    assert len(mlflow.get_metric_history(run_id, "learning_rate")) == 600
