"""What one task's tracker run holds, built from the task as it finished: pure data, so what is
logged can be tested without a tracker and every tracker logs the same thing.

Names follow the tracker's rules (MLflow's): keys of letters, digits and `_ - . / : space`, at
most 250 characters; param values at most 6,000 characters. Metric names group by their first
`/` part (`before/`, `after/`, `delta/`, `verdict/`, `data/`, `training/`), which is how the
MLflow UI groups its charts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from embtune.domain.models import EmbeddingModel
from embtune.domain.tasks import Task, TaskStatus
from embtune.tracking.credentials import hide_credentials

TASK_PATH = "/api/v1/fine-tuning/task/{id}"
MAX_KEY = 250
MAX_PARAM_VALUE = 6000
MAX_TAG_VALUE = 8000
# How a finished task's status reads as a tracker run's status; others are not logged (a task
# handed back or taken over by another worker is still running there).
RUN_STATUS = {
    TaskStatus.done: "FINISHED",
    TaskStatus.failed: "FAILED",
    TaskStatus.refused: "FAILED",
    TaskStatus.canceled: "KILLED",
}
# The figures of a run's report logged as metrics, besides the headline before/after/delta
# (the whole report goes in as an artifact, per-query comparison included).
FIGURE_SECTIONS = ("data", "training")
_BAD_KEY_CHARS = re.compile(r"[^\w./\- :]")


@dataclass(frozen=True)
class RunRecord:
    name: str
    status: str  # FINISHED, FAILED or KILLED
    start_ms: int | None
    end_ms: int | None
    tags: dict[str, str]
    params: dict[str, str]
    metrics: dict[str, float]  # one value each, logged at step 0
    # JSON documents stored as artifacts, by their path in the run
    documents: dict[str, Any] = field(default_factory=dict)
    # local files stored as artifacts (the model card), by their directory in the run
    files: dict[str, Path] = field(default_factory=dict)


def tracked(task: Task) -> bool:
    """Whether the task's run ended in a way a tracker records."""
    return task.status in RUN_STATUS


def task_path(task_id: str) -> str:
    return TASK_PATH.format(id=task_id)


def run_record(
    task: Task, source: EmbeddingModel | None, result: EmbeddingModel | None
) -> RunRecord:
    """The run of a finished fine-tuning task: its params, report figures, verdict, data
    summary and a reference to the tuned model (not a copy of its weights)."""
    report = task.metrics or {}
    verdict = report.get("verdict") if isinstance(report.get("verdict"), dict) else {}
    tags = {
        "embtune.task_id": task.id,
        "embtune.task_url": task_path(task.id),
        "embtune.status": task.status.value,
        "embtune.attempt": str(task.attempts),
    }
    if source is not None:
        tags |= {"embtune.model_id": source.id, "embtune.model_name": source.name,
                 "embtune.plugin": source.plugin_name}
    elif task.embedding_model_id:
        tags["embtune.model_id"] = task.embedding_model_id
    if task.batch_id:
        tags["embtune.batch_id"] = task.batch_id
    if result is not None:
        # the model stays where embtune keeps it: a reference, since the weights are hundreds
        # of megabytes per iteration and the tracker's store would hold a second copy of each
        tags |= {"embtune.result_model_id": result.id, "embtune.result_model_name": result.name,
                 "embtune.model_uri": hide_credentials(result.source)}
    if verdict:
        tags |= {f"embtune.verdict{suffix}": str(verdict[key])
                 for key, suffix in (("verdict", ""), ("basis", "_basis"), ("metric", "_metric"))
                 if verdict.get(key) is not None}
    note = _note(task, verdict)
    if note:
        tags["mlflow.note.content"] = note  # the run's description in the MLflow UI
    params = dict(flatten(task.params))
    if isinstance(report.get("params"), dict):  # what the method ran with, defaults included
        params |= dict(flatten(report["params"]))
    documents: dict[str, Any] = {}
    if report:
        documents["embtune/report.json"] = report
    if isinstance(report.get("data"), dict):
        documents["embtune/data_summary.json"] = report["data"]
    card = _model_card(result)
    return RunRecord(
        name=f"{source.name if source else 'model'} (task {task.id})",
        status=RUN_STATUS[task.status],
        start_ms=_ms(task.started_at or task.created_at),
        end_ms=_ms(task.finished_at),
        tags={key_name(k): v[:MAX_TAG_VALUE] for k, v in tags.items()},
        params={key_name(k): v[:MAX_PARAM_VALUE] for k, v in params.items()},
        metrics=_figures(report, verdict),
        documents=documents,
        files={"model": card} if card else {},
    )


def key_name(key: str) -> str:
    """A key the tracker accepts: `ndcg@10` → `ndcg_at_10`, other odd characters → `_`."""
    name = _BAD_KEY_CHARS.sub("_", key.replace("@", "_at_")).strip("/")
    return name[:MAX_KEY] or "_"


def flatten(values: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    """Nested params as `a.b` keys with string values (lists and None as JSON)."""
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            yield from flatten(value, f"{name}.")
        elif isinstance(value, str):
            yield name, value
        else:
            yield name, json.dumps(value, default=str)


def _figures(report: Mapping[str, Any], verdict: Mapping[str, Any]) -> dict[str, float]:
    figures: dict[str, float] = {}
    for part in ("before", "after", "delta"):
        figures |= _numbers(report.get(part), f"{part}/")
    for section in FIGURE_SECTIONS:
        figures |= _numbers(report.get(section), f"{section}/")
    for key in ("before", "after", "delta", "queries"):
        figures |= _numbers({key: verdict.get(key)}, "verdict/")
    ci95 = verdict.get("ci95")
    if isinstance(ci95, list | tuple) and len(ci95) == 2:
        figures |= _numbers({"ci95_low": ci95[0], "ci95_high": ci95[1]}, "verdict/")
    return {key_name(k): v for k, v in figures.items()}


def _numbers(values: Any, prefix: str) -> dict[str, float]:
    """The numeric leaves of a section (booleans and strings left out)."""
    if not isinstance(values, Mapping):
        return {}
    found: dict[str, float] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            found |= _numbers(value, f"{prefix}{key}/")
        elif isinstance(value, int | float) and not isinstance(value, bool) and value == value:
            found[f"{prefix}{key}"] = float(value)
    return found


def _note(task: Task, verdict: Mapping[str, Any]) -> str:
    lines = []
    if verdict.get("reason"):
        lines.append(f"Verdict: {verdict.get('verdict')}. {verdict['reason']}")
    if task.detail and task.status is not TaskStatus.done:
        lines.append(f"Task {task.status.value}: {task.detail}")
    return "\n\n".join(lines)


def _model_card(result: EmbeddingModel | None) -> Path | None:
    """The tuned model's card where its directory is on this host (a remote store's model is
    referenced by its URI only: fetching it just for the card would cost a download)."""
    if result is None:
        return None
    card = Path(result.source) / "README.md"
    try:
        return card if card.is_file() else None
    except OSError:
        return None


def _ms(moment: datetime | None) -> int | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)
