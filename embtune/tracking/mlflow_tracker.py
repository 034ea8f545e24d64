"""Logs each finished fine-tuning task as an MLflow run.

`mlflow` (the `embtune[mlflow]` extra) is imported on first use, so the service runs without it
while tracking is off. Every call goes through an `MlflowClient` bound to the configured URI,
never MLflow's process-wide tracking URI, so nothing else in the process is redirected.

A tracker is a side channel: whatever goes wrong (unreachable server, bad credentials, a store
that refuses a value) comes out of `log_task` as one `TrackingError` whose message carries no
credentials, for the runner to record as a warning; it never fails or changes a task.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embtune.config import Settings
from embtune.domain.models import EmbeddingModel
from embtune.domain.tasks import Task
from embtune.errors import EmbtuneError
from embtune.tracking.credentials import hide_credentials
from embtune.tracking.run_record import RunRecord, run_record
from embtune.tracking.steps import StepHistory, StepValue

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

# An unreachable or hung server must cost a run seconds, not MLflow's defaults (120 s per
# request, 7 retries with doubling back-off); an operator's own MLFLOW_* values win.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
}
# MLflow's limits per log_batch call
BATCH_METRICS = 1000
BATCH_PARAMS_TAGS = 100


class TrackingError(EmbtuneError):
    """The experiment tracker could not record a run (the task itself is unaffected)."""


class MlflowNotInstalled(EmbtuneError):
    """Tracking is configured but the `mlflow` package is missing."""


class MlflowTracker:
    """Logs tasks as runs of one experiment in one tracking store; safe to share between the
    worker's threads (each call builds its own run; the client is created once)."""

    def __init__(self, tracking_uri: str, experiment: str) -> None:
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.name = f"MLflow tracker at {hide_credentials(tracking_uri)}"
        self._client: MlflowClient | None = None
        self._experiment_id: str | None = None
        self._lock = threading.Lock()
        for variable, value in HTTP_DEFAULTS.items():
            os.environ.setdefault(variable, value)

    def callbacks(self, history: StepHistory) -> list[Any]:
        """Trainer callbacks that record each step into `history` (imports transformers)."""
        from embtune.tracking.step_callback import StepHistoryCallback

        return [StepHistoryCallback(history)]

    def log_task(
        self,
        task: Task,
        *,
        source: EmbeddingModel | None,
        result: EmbeddingModel | None,
        steps: Sequence[StepValue] = (),
    ) -> str:
        """Log the finished task as one run and return its id; `TrackingError` (credentials
        hidden) on any failure, leaving at most a partial run marked FAILED behind."""
        try:
            return self._log(run_record(task, source, result), steps)
        except Exception as exc:
            self._experiment_id = None  # looked up again next time (it may have been deleted)
            raise TrackingError(self.describe(exc)) from None

    def describe(self, exc: BaseException) -> str:
        """An exception's first line with the tracking URI's credentials hidden."""
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        text = hide_credentials(text, self.tracking_uri)
        return f"{type(exc).__name__}: {text}"[:1000] if text else type(exc).__name__

    # -- MLflow calls ----------------------------------------------------------------------
    def _log(self, record: RunRecord, steps: Sequence[StepValue]) -> str:
        from mlflow.entities import Metric, Param, RunTag

        client = self._mlflow()
        run = client.create_run(
            self._experiment(client), start_time=record.start_ms, run_name=record.name,
            tags={"embtune.task_id": record.tags["embtune.task_id"]},
        )
        run_id = run.info.run_id
        try:
            tags = [RunTag(k, v) for k, v in record.tags.items()]
            params = [Param(k, v) for k, v in record.params.items()]
            for chunk in _chunks([*tags, *params], BATCH_PARAMS_TAGS):
                client.log_batch(
                    run_id,
                    tags=[e for e in chunk if isinstance(e, RunTag)],
                    params=[e for e in chunk if isinstance(e, Param)],
                )
            stamp = record.end_ms or record.start_ms or 0
            metrics = [Metric(k, v, stamp, 0) for k, v in record.metrics.items()]
            metrics += [Metric(p.key, p.value, p.timestamp_ms, p.step) for p in steps]
            for chunk in _chunks(metrics, BATCH_METRICS):
                client.log_batch(run_id, metrics=chunk)
            for path, document in record.documents.items():
                client.log_dict(run_id, document, path)
            for directory, file in record.files.items():
                client.log_artifact(run_id, str(file), directory)
        except BaseException:
            with contextlib.suppress(Exception):  # the first failure is the one to report
                client.set_terminated(run_id, "FAILED", end_time=record.end_ms)
            raise
        client.set_terminated(run_id, record.status, end_time=record.end_ms)
        return run_id

    def _mlflow(self) -> MlflowClient:
        with self._lock:
            if self._client is None:
                from mlflow import MlflowClient

                self._client = MlflowClient(tracking_uri=self.tracking_uri)
            return self._client

    def _experiment(self, client: MlflowClient) -> str:
        """The experiment's id, created on first use (another worker may create it at the same
        time: then its id is read back)."""
        if self._experiment_id is not None:
            return self._experiment_id
        found = client.get_experiment_by_name(self.experiment)
        if found is None:
            try:
                experiment_id = client.create_experiment(
                    self.experiment, artifact_location=local_artifact_root(self.tracking_uri)
                )
            except Exception:
                found = client.get_experiment_by_name(self.experiment)
                if found is None:
                    raise
                experiment_id = found.experiment_id
        else:
            experiment_id = found.experiment_id
        self._experiment_id = experiment_id
        return experiment_id


def build_tracker(settings: Settings) -> MlflowTracker | None:
    """The tracker the settings ask for (None: tracking off). A URI without the `mlflow`
    package is a deployment mistake caught at start-up, not a warning on every task."""
    if not settings.mlflow_tracking_uri:
        return None
    try:
        importlib.import_module("mlflow")  # ~1 s, once, and only where tracking is on
    except ImportError as exc:
        raise MlflowNotInstalled(
            "EMBTUNE_MLFLOW_TRACKING_URI is set but the mlflow package cannot be imported "
            f"({exc}): install embtune[mlflow], or unset the variable to turn tracking off"
        ) from None
    tracker = MlflowTracker(settings.mlflow_tracking_uri, settings.mlflow_experiment)
    log.info("tracking fine-tuning tasks in experiment %r of the %s", tracker.experiment,
             tracker.name)
    return tracker


def local_artifact_root(tracking_uri: str) -> str | None:
    """Artifacts of a local SQLite store go beside its database file; MLflow's default is
    `./mlruns` under whatever directory the worker happened to start in."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    database = tracking_uri.removeprefix("sqlite:///").split("?", 1)[0]
    if not database or database == ":memory:":
        return None
    return (Path(database).resolve().parent / "mlartifacts").as_uri()


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
