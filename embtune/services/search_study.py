"""A task's Optuna study, rebuilt from the trials recorded in our own table.

The study lives in memory for one run: at the start of a (re-)run every recorded trial is added
back with its state, params and the values the pruner saw, so the sampler and the pruner go on
from where the last run stopped. Keeping the record in `search_trials` rather than in Optuna's
RDB storage keeps one schema under our migrations on SQLite and PostgreSQL, one engine, and
trial rows that are written under the same ownership guard as everything else a run writes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from embtune.domain.search_trials import SearchTrial, TrialState
from embtune.schemas.search import Categorical, FloatRange, ParamRange, SearchSpec
from embtune.training.trial import TrialPruned

DIRECTION = "maximize"  # every search metric is higher-is-better
STEPS_PER_EPOCH = 100  # reported steps are hundredths of an epoch (embtune.training.trial_eval)
_STATES = {
    TrialState.complete: optuna.trial.TrialState.COMPLETE,
    TrialState.pruned: optuna.trial.TrialState.PRUNED,
}


def distributions(spec: SearchSpec) -> dict[str, BaseDistribution]:
    return {name: _distribution(spread) for name, spread in spec.space.ranges().items()}


def _distribution(spread: ParamRange) -> BaseDistribution:
    if isinstance(spread, Categorical):
        return CategoricalDistribution(spread.choices)
    if isinstance(spread, FloatRange):
        return FloatDistribution(spread.low, spread.high, log=spread.log)
    return IntDistribution(spread.low, spread.high, log=spread.log)


def build_study(spec: SearchSpec, seed: int, recorded: Iterable[SearchTrial]) -> optuna.Study:
    """An in-memory study holding every recorded trial, with a TPE sampler seeded by the task's
    seed and how many trials were recorded (a resumed study does not draw its first trials'
    params again) and the spec's pruner."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    recorded = list(recorded)
    startup = max(1, min(10, spec.trials // 3))
    study = optuna.create_study(
        direction=DIRECTION,
        sampler=optuna.samplers.TPESampler(seed=seed + len(recorded), n_startup_trials=startup),
        pruner=_pruner(spec),
    )
    spaces = distributions(spec)
    for trial in recorded:
        study.add_trial(_frozen(trial, spaces))
    return study


def _pruner(spec: SearchSpec) -> optuna.pruners.BasePruner:
    if spec.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=spec.startup_trials)
    if spec.pruner == "successive_halving":
        first = max(1, STEPS_PER_EPOCH // spec.evaluations_per_epoch)
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=first, reduction_factor=3)
    return optuna.pruners.NopPruner()


def _frozen(
    trial: SearchTrial, spaces: Mapping[str, BaseDistribution]
) -> optuna.trial.FrozenTrial:
    state = _STATES.get(trial.state, optuna.trial.TrialState.FAIL)
    params = {k: v for k, v in trial.params.items() if k in spaces}
    complete = state is optuna.trial.TrialState.COMPLETE and trial.value is not None
    return optuna.trial.create_trial(
        state=state if complete or state is not optuna.trial.TrialState.COMPLETE
        else optuna.trial.TrialState.FAIL,
        value=trial.value if complete else None,
        params=params,
        distributions={k: spaces[k] for k in params},
        intermediate_values={int(step): float(value) for step, value in trial.intermediate},
    )


def warm_params(spec: SearchSpec, source_metrics: Mapping[str, Any] | None) -> dict[str, Any]:
    """The source model's search's best params (when it was tuned by one), clipped to this
    space: the first trial starts where the last iteration's search ended."""
    best = ((source_metrics or {}).get("search") or {}).get("best_params") or {}
    warm: dict[str, Any] = {}
    for name, spread in spec.space.ranges().items():
        value = best.get(name)
        if value is None or isinstance(value, bool):
            continue
        if isinstance(spread, Categorical):
            if value in spread.choices:
                warm[name] = value
        elif isinstance(value, int | float):
            clipped = min(max(value, spread.low), spread.high)
            warm[name] = float(clipped) if isinstance(spread, FloatRange) else round(clipped)
    return warm


def trial_value(metrics: Mapping[str, Any], metric: str) -> float | None:
    """A finished run's value of the search metric: retrieval metrics from the judged set when
    there is one, else from held-out clicks over the catalogue; click_dcg@10 from the shown
    lists. None when the run could not compute it."""
    if metric == "click_dcg@10":
        found = ((metrics.get("clicks") or {}).get("shown_lists") or {}).get("after")
    else:
        part = metrics.get("judged") or (metrics.get("clicks") or {}).get("full_catalogue") or {}
        found = (part.get("after") or {}).get(metric)
    return float(found) if isinstance(found, int | float) else None


@dataclass
class StudyReporter:
    """One trial's reporter (`embtune.training.trial.TrialReporter`): records the values the run
    reports and asks the study's pruner after each."""

    trial: optuna.Trial
    metric: str
    evaluations_per_epoch: int
    eval_queries: int
    seed: int
    intermediate: list[list[float]] = field(default_factory=list)

    def report(self, step: int, value: float) -> None:
        self.intermediate.append([step, value])
        self.trial.report(value, step)
        if self.trial.should_prune():
            raise TrialPruned(step, value)
