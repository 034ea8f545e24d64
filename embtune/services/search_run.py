"""A task's hyperparameter search, run inside the task's own run.

Trials run one after another in the run that claimed the task: one lifecycle, one claim, and a
cancel is the run's stop flag. Each trial samples params from the space (the first one, on a
fresh study, is the source model's own search's best params, clipped to the space), runs the
plugin in its own directory under the run's staging area, and is recorded in `search_trials` in
short transactions: its start guarded by the run still owning the task (a stale run records
nothing new), its end guarded by the trial still running. Only the best trial's directory is
kept; a trial that loses, is pruned or fails leaves no files. A re-queued task rebuilds the
study from the recorded trials (`search_study.build_study`) and goes on; a trial that was
running when the last run ended is marked interrupted and its params are tried first again.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import optuna
from sqlalchemy.orm import Session

from embtune import allocator
from embtune.domain.models import EmbeddingModel
from embtune.domain.search_trials import FINISHED_STATES, SearchTrial, TrialState
from embtune.errors import InvalidParams, TaskRefused, TaskStopped
from embtune.plugins.base import FineTuningPlugin, RunContext, RunResult
from embtune.schemas.search import SearchSpec
from embtune.services.search_study import (
    DIRECTION,
    StudyReporter,
    build_study,
    distributions,
    trial_value,
    warm_params,
)
from embtune.storage.db import Database, utcnow
from embtune.storage.search_trials_repo import SearchTrialRepository
from embtune.storage.tasks_repo import TaskRepository
from embtune.training.phases import PROGRESS_UNITS
from embtune.training.trial import TrialPruned

log = logging.getLogger(__name__)

INTERRUPTED = "the run ended during this trial; the re-queued search runs its params again"


@dataclass(frozen=True)
class Best:
    number: int
    value: float
    params: dict[str, Any]
    result: RunResult | None  # None: recorded by an earlier run, whose files are gone


class SearchRun:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.trials = SearchTrialRepository()
        self.tasks = TaskRepository()

    def run(
        self,
        plugin: FineTuningPlugin,
        ctx: RunContext,
        method_params: dict[str, Any],
        spec: SearchSpec,
        *,
        message_id: str,
        source: EmbeddingModel,
    ) -> RunResult:
        """Run the trials still to run and return the best trial's result with
        `metrics.search`; raises TaskStopped on cancel (the running trial recorded as
        interrupted), TaskRefused when no trial completed."""
        seed = int(getattr(plugin.validate_params(method_params), "seed", 0) or 0)
        recorded, rerun = self._resume(ctx.task_id, message_id)
        study = build_study(spec, seed, recorded)
        spaces = distributions(spec)
        warm = warm_params(spec, source.metrics) if not recorded else {}
        for params in ([warm] if warm else []) + rerun:
            study.enqueue_trial(params, skip_if_exists=False)
        best = _best_recorded(recorded)
        finished = sum(trial.state in FINISHED_STATES for trial in recorded)
        number = len(recorded)
        while finished < spec.trials:
            ctx.check_stop()
            trial = study.ask(spaces)
            reporter = StudyReporter(
                trial, spec.metric, spec.evaluations_per_epoch, spec.eval_queries, seed
            )
            outcome = self._trial(
                plugin, ctx, method_params, spec, reporter, number, finished, message_id
            )
            if outcome is not None and (best is None or outcome.value > best.value):
                if best is not None and best.result is not None:
                    _remove(best.result.model_dir)
                best = outcome
            elif outcome is not None and outcome.result is not None:
                _remove(outcome.result.model_dir)  # lost: its files go now
            number += 1
            finished += 1
            allocator.release_freed_memory()
        if best is None:
            raise TaskRefused(f"no trial of the search completed ({finished} ran)")
        result = best.result
        retrained = result is None
        if result is None:  # the best trial ran before a re-queue: train its params again
            ctx.check_stop()
            result = self._retrain(plugin, ctx, method_params, best.params)
        with self.db.read() as session:
            trials = self.trials.list(session, ctx.task_id)
        summary = _summary(spec, trials, best, warm, retrained)
        metrics = result.metrics if retrained else without_throughput_samples(result.metrics)
        return replace(result, metrics={**metrics, "search": summary})

    # -- one trial ------------------------------------------------------------------------------
    def _trial(
        self,
        plugin: FineTuningPlugin,
        ctx: RunContext,
        method_params: dict[str, Any],
        spec: SearchSpec,
        reporter: StudyReporter,
        number: int,
        finished: int,
        message_id: str,
    ) -> Best | None:
        """Run, record and tell one trial; its result when it completed (None otherwise)."""
        params = dict(reporter.trial.params)
        self._start(ctx.task_id, message_id, number, params)
        output_dir = ctx.output_dir / f"trial-{number}"
        try:
            validated = plugin.validate_params({**method_params, **params})
        except InvalidParams as exc:  # a cross-field rule the space cannot see
            self._finish(ctx.task_id, number, TrialState.failed, detail=exc.detail)
            reporter.trial.study.tell(reporter.trial, state=optuna.trial.TrialState.FAIL)
            return None
        trial_ctx = replace(
            ctx,
            params=validated,
            output_dir=output_dir,
            report=_trial_report(ctx.report, finished, spec.trials),
            # a trial is not resumed from checkpoints: a re-queued search re-runs it
            hooks=replace(ctx.hooks, trial=reporter, checkpoint_dir=None),
        )
        try:
            result = plugin.run(trial_ctx)
        except TrialPruned as pruned:
            _remove(output_dir)
            self._finish(
                ctx.task_id, number, TrialState.pruned, value=pruned.value,
                intermediate=reporter.intermediate, detail=str(pruned),
            )
            reporter.trial.study.tell(reporter.trial, state=optuna.trial.TrialState.PRUNED)
            return None
        except BaseException as exc:  # stopped (cancel, shutdown) or failed: recorded, raised
            _remove(output_dir)
            stopped = not isinstance(exc, Exception)  # TaskStopped, Shutdown, interrupts
            state = TrialState.interrupted if stopped else TrialState.failed
            detail = INTERRUPTED if stopped else getattr(exc, "detail", None) or repr(exc)
            self._finish(
                ctx.task_id, number, state, intermediate=reporter.intermediate,
                detail=detail[:2000], safe=True,
            )
            raise
        value = trial_value(result.metrics, spec.metric)
        if value is None:
            _remove(output_dir)
            detail = f"the run reported no {spec.metric} to search on"
            self._finish(ctx.task_id, number, TrialState.failed, detail=detail)
            reporter.trial.study.tell(reporter.trial, state=optuna.trial.TrialState.FAIL)
            return None
        self._finish(
            ctx.task_id, number, TrialState.complete, value=value,
            intermediate=reporter.intermediate, metrics=_trial_metrics(result.metrics),
        )
        reporter.trial.study.tell(reporter.trial, value)
        return Best(number, value, params, result)

    def _retrain(
        self,
        plugin: FineTuningPlugin,
        ctx: RunContext,
        method_params: dict[str, Any],
        params: dict[str, Any],
    ) -> RunResult:
        validated = plugin.validate_params({**method_params, **params})
        return plugin.run(
            replace(
                ctx, params=validated, output_dir=ctx.output_dir / "best",
                hooks=replace(ctx.hooks, checkpoint_dir=None),
            )
        )

    # -- the record -----------------------------------------------------------------------------
    def _resume(
        self, task_id: str, message_id: str
    ) -> tuple[list[SearchTrial], list[dict[str, Any]]]:
        """The recorded trials, the ones the last run left running now interrupted, and those
        trials' params (to run first)."""
        with self.db.transaction() as session:
            self._guard(session, task_id, message_id)
            recorded = self.trials.list(session, task_id)
            rerun = [t.params for t in recorded if t.state is TrialState.running]
            if rerun:
                self.trials.interrupt_running(session, task_id, utcnow(), INTERRUPTED)
                recorded = self.trials.list(session, task_id)
        return recorded, rerun

    def _start(
        self, task_id: str, message_id: str, number: int, params: dict[str, Any]
    ) -> None:
        with self.db.transaction() as session:
            self._guard(session, task_id, message_id)
            self.trials.start(session, task_id, number, params, utcnow())

    def _guard(self, session: Session, task_id: str, message_id: str) -> None:
        """Hold the task row and check this run still owns it: a run that lost its task
        records no trial (TaskStopped)."""
        self.tasks.get(session, task_id, lock=True)
        if not self.tasks.is_owned(session, task_id, message_id):
            raise TaskStopped("task left processing; the search records no more trials")

    def _finish(
        self, task_id: str, number: int, state: TrialState, *, safe: bool = False, **values: Any
    ) -> None:
        """Guarded by the trial still running, so a newer run's `interrupted` stands; `safe`
        (on the way out of a failing run): a database error is logged, not raised over it."""
        try:
            with self.db.transaction() as session:
                self.trials.finish(session, task_id, number, state=state, now=utcnow(), **values)
        except Exception:
            if not safe:
                raise
            log.exception("could not record trial %s of task %s as %s", number, task_id, state)


def _trial_report(report: Callable[..., None], done: int, trials: int) -> Callable[..., None]:
    """The run's progress within the whole search: trial k of N, its phase in the message."""

    def trial_report(*, step: int, total_steps: int, message: str = "", **extra: Any) -> None:
        fraction = min(1.0, step / total_steps) if total_steps else 0.0
        overall = round((done + fraction) / trials * PROGRESS_UNITS)
        label = f"trial {done + 1}/{trials}"
        report(
            step=overall, total_steps=PROGRESS_UNITS,
            message=f"{label}: {message}" if message else label,
            trial=done + 1, trials=trials, **extra,
        )

    return trial_report


def _best_recorded(recorded: list[SearchTrial]) -> Best | None:
    complete = [t for t in recorded if t.state is TrialState.complete and t.value is not None]
    if not complete:
        return None
    top = max(complete, key=lambda t: (t.value, -t.number))
    return Best(top.number, float(top.value or 0.0), dict(top.params), None)


def _trial_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """What the trials table shows of a completed trial's report."""
    verdict = metrics.get("verdict") or {}
    training = metrics.get("training") or {}
    return {
        "verdict": verdict.get("verdict"),
        "before": metrics.get("before"),
        "after": metrics.get("after"),
        "steps": training.get("steps"),
        "train_loss": training.get("train_loss"),
    }


def _summary(
    spec: SearchSpec,
    trials: list[SearchTrial],
    best: Best,
    warm: dict[str, Any],
    retrained: bool,
) -> dict[str, Any]:
    counts = {state.value: sum(t.state is state for t in trials) for state in TrialState}
    return {
        "metric": spec.metric,
        "direction": DIRECTION,
        "trials": sum(t.state in FINISHED_STATES for t in trials),
        "completed": counts["complete"],
        "pruned": counts["pruned"],
        "failed": counts["failed"],
        "interrupted": counts["interrupted"],
        "best_trial": best.number,
        "best_value": best.value,
        "best_params": best.params,
        "space": spec.space.model_dump(exclude_none=True),
        "pruner": spec.pruner,
        "warm_start": warm or None,
        "retrained_best": retrained,
    }


def without_throughput_samples(metrics: dict[str, Any]) -> dict[str, Any]:
    """A trial's training phase includes its mid-training evaluations, so its throughput
    samples would make this host's training look slower than it is and skew the estimates of
    every later task: a trial's result records none (the rest of its performance report
    stays)."""
    performance = metrics.get("performance")
    throughput = performance.get("throughput") if isinstance(performance, dict) else None
    if not isinstance(throughput, dict) or "samples" not in throughput:
        return metrics
    kept = {key: value for key, value in throughput.items() if key != "samples"}
    return {**metrics, "performance": {**performance, "throughput": kept}}


def _remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
