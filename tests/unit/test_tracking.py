"""What a task's tracker run holds (built without a tracker), hiding credentials, and the
start-up check of the mlflow extra."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from embtune.config import Settings
from embtune.domain.models import EmbeddingModel
from embtune.domain.tasks import Progress, Task, TaskStatus
from embtune.tracking import (
    MlflowNotInstalled,
    StepHistory,
    build_tracker,
    hide_credentials,
    run_record,
)
from embtune.tracking.mlflow_tracker import local_artifact_root
from embtune.tracking.run_record import flatten, key_name

START = datetime(2026, 12, 1, 20, 0, tzinfo=UTC)
END = datetime(2026, 12, 1, 20, 5, tzinfo=UTC)
REPORT: dict[str, Any] = {  # the shape training.run and training.judging produce
    "before": {"ndcg@10": 0.4, "mrr@10": 0.3},
    "after": {"ndcg@10": 0.7, "mrr@10": 0.6},
    "delta": {"ndcg@10": 0.3, "mrr@10": 0.3},
    "per_query": {"better": 5, "worse": 1, "same": 2},
    "verdict": {"verdict": "better", "basis": "clicks", "metric": "click_dcg@10",
                "before": 0.2, "after": 0.5, "delta": 0.3, "ci95": [0.1, 0.5], "queries": 8,
                "evaluation_set": None, "reason": "the interval is above zero"},
    "data": {"sessions": 40, "examples": 30, "items": 12},
    "training": {"steps": 4, "train_loss": 1.5, "runtime_s": 2.0, "precision": "fp32"},
    "params": {"epochs": 1, "max_seq_length": 32, "learning_rate": 2e-4},
    "method": "mnrl",
}


def _task(status: TaskStatus, **values: Any) -> Task:
    fields: dict[str, Any] = {
        "id": "task1", "status": status, "embedding_model_id": "m1", "idempotency_key": None,
        "batch_id": "b1", "params": {"epochs": 1, "promote": {"alias": "prod"}},
        "metadata": {}, "message_id": None, "progress": Progress(), "metrics": None,
        "result_model_id": None, "detail": None, "attempts": 1, "created_at": START,
        "updated_at": END, "started_at": START, "finished_at": END, "heartbeat_at": None,
        "dispatched_at": None, "worker_id": None,
    }
    return Task(**{**fields, **values})


def _model(model_id: str, source: str, name: str = "mini") -> EmbeddingModel:
    return EmbeddingModel(id=model_id, name=name, plugin_name="sentence-transformers-mnrl",
                          source=source, parent_id=None, task_id=None, metrics=None,
                          created_at=START)


def test_a_done_task_holds_its_figures_verdict_data_and_model_reference(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("# card\n")
    task = _task(TaskStatus.done, metrics=REPORT, result_model_id="m2")
    record = run_record(task, _model("m1", "builtin:x"), _model("m2", str(tmp_path), "tuned"))

    assert record.status == "FINISHED" and record.name == "mini (task task1)"
    assert record.start_ms == int(START.timestamp() * 1000)
    assert record.tags["embtune.task_url"] == "/api/v1/fine-tuning/task/task1"
    assert record.tags["embtune.model_id"] == "m1"
    assert record.tags["embtune.result_model_id"] == "m2"
    assert record.tags["embtune.model_uri"] == str(tmp_path)
    assert record.tags["embtune.verdict"] == "better"
    assert record.tags["embtune.verdict_metric"] == "click_dcg@10"
    assert "the interval is above zero" in record.tags["mlflow.note.content"]
    assert record.params["promote.alias"] == "prod"  # the task's own params, flattened
    assert record.params["max_seq_length"] == "32"  # what the method ran with
    assert record.metrics["before/ndcg_at_10"] == 0.4
    assert record.metrics["after/mrr_at_10"] == 0.6
    assert record.metrics["verdict/ci95_low"] == 0.1
    assert record.metrics["verdict/ci95_high"] == 0.5
    assert record.metrics["data/sessions"] == 40
    assert record.metrics["training/runtime_s"] == 2.0
    assert "training/precision" not in record.metrics  # not a number
    assert record.documents["embtune/data_summary.json"] == REPORT["data"]
    assert record.documents["embtune/report.json"] == REPORT
    assert record.files == {"model": tmp_path / "README.md"}


def test_a_failed_task_is_a_failed_run_with_its_detail() -> None:
    task = _task(TaskStatus.failed, detail="RuntimeError: failed on purpose")
    record = run_record(task, _model("m1", "builtin:x"), None)
    assert record.status == "FAILED"
    assert "embtune.result_model_id" not in record.tags and not record.metrics
    assert record.tags["mlflow.note.content"] == "Task failed: RuntimeError: failed on purpose"


def test_keys_are_made_acceptable_to_the_tracker() -> None:
    assert key_name("ndcg@10") == "ndcg_at_10"
    assert key_name("a b/c-d.e:f") == "a b/c-d.e:f"
    assert key_name("weird$key!") == "weird_key_"
    assert len(key_name("k" * 400)) == 250


def test_params_flatten_to_dotted_string_values() -> None:
    flat = dict(flatten({"a": {"b": 1, "c": [1, 2]}, "d": None, "e": "x", "f": {}}))
    assert flat == {"a.b": "1", "a.c": "[1, 2]", "d": "null", "e": "x", "f": "{}"}


def test_a_step_history_keeps_steps_and_skips_the_summary() -> None:
    history = StepHistory()
    history.record(1, {"loss": 2.0, "learning_rate": 1e-4, "grad_norm": 3.0, "epoch": 0.5})
    history.record(2, {"loss": 1.0, "learning_rate": 5e-5})
    history.record(2, {"train_runtime": 1.0, "train_loss": 1.5})  # the summary at the end
    losses = [(p.step, p.value) for p in history.points if p.key == "train_loss"]
    assert losses == [(1, 2.0), (2, 1.0)]
    assert {p.key for p in history.points} == {"train_loss", "learning_rate", "grad_norm"}
    history.restart()  # a further training in the same run (after a search's trials)
    assert history.points == []


@pytest.mark.parametrize(
    ("text", "uri"),
    [
        ("failed: http://alice:s3cr%40t@host:5000/api", None),
        ("API request to https://alice:s3cr%40t@host/api failed", "https://alice:s3cr%40t@host"),
        ("login with s3cr@t refused", "https://alice:s3cr%40t@host"),
        ("postgresql://alice:s3cr%40t@db/mlflow: timeout", None),
    ],
)
def test_credentials_never_show(text: str, uri: str | None) -> None:
    shown = hide_credentials(text, uri)
    assert "s3cr" not in shown and "***" in shown


def test_a_local_sqlite_store_keeps_its_artifacts_beside_the_database(tmp_path: Path) -> None:
    root = local_artifact_root(f"sqlite:///{tmp_path}/mlflow.db")
    assert root == (tmp_path / "mlartifacts").as_uri()
    assert local_artifact_root("http://host:5000") is None


def test_tracking_is_off_by_default(tmp_path: Path) -> None:
    assert build_tracker(Settings(data_dir=tmp_path)) is None


def test_a_tracking_uri_without_the_mlflow_package_stops_start_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)  # how Python marks a module missing
    settings = Settings(data_dir=tmp_path, mlflow_tracking_uri="http://mlflow:5000")
    with pytest.raises(MlflowNotInstalled, match=r"embtune\[mlflow\]"):
        build_tracker(settings)
