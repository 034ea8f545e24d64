"""Experiment tracking: each finished fine-tuning task logged as a run of an external tracker
(MLflow), with its params, per-step loss, before/after figures, verdict, data summary and a
reference to the tuned model. Optional (`embtune[mlflow]`, `EMBTUNE_MLFLOW_TRACKING_URI`) and
never on a task's critical path: the runner logs after the task's final commit and turns any
tracker failure into a warning event."""

from embtune.tracking.credentials import hide_credentials
from embtune.tracking.mlflow_tracker import (
    MlflowNotInstalled,
    MlflowTracker,
    TrackingError,
    build_tracker,
)
from embtune.tracking.run_record import RunRecord, run_record, task_path, tracked
from embtune.tracking.steps import StepHistory, StepValue

__all__ = [
    "MlflowNotInstalled",
    "MlflowTracker",
    "RunRecord",
    "StepHistory",
    "StepValue",
    "TrackingError",
    "build_tracker",
    "hide_credentials",
    "run_record",
    "task_path",
    "tracked",
]
