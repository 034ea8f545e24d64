"""The study rebuilt from recorded trials: resume, pruning, warm start, trial values."""

from __future__ import annotations

from datetime import UTC, datetime

import optuna
import pytest

from embtune.domain.search_trials import SearchTrial, TrialState
from embtune.schemas.search import SearchSpec
from embtune.services.search_study import (
    StudyReporter,
    build_study,
    distributions,
    trial_value,
    warm_params,
)
from embtune.training.trial import TrialPruned

SPEC = SearchSpec.model_validate({
    "trials": 4,
    "startup_trials": 1,
    "space": {"learning_rate": {"type": "float", "low": 1e-5, "high": 3e-4, "log": True},
              "epochs": {"type": "int", "low": 1, "high": 2}},
})


def _trial(number: int, state: TrialState, value: float | None,
           intermediate: list[list[float]]) -> SearchTrial:
    return SearchTrial("t", number, state, {"learning_rate": 1e-4, "epochs": 1}, value,
                       intermediate, None, None, datetime.now(UTC), None)


def test_recorded_trials_are_back_in_the_study_with_their_states() -> None:
    recorded = [
        _trial(0, TrialState.complete, 0.7, [[50, 0.6], [100, 0.7]]),
        _trial(1, TrialState.pruned, 0.2, [[50, 0.2]]),
        _trial(2, TrialState.interrupted, None, []),
    ]
    study = build_study(SPEC, 0, recorded)
    states = [t.state for t in study.trials]
    assert states == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED,
                      optuna.trial.TrialState.FAIL]
    assert study.best_value == 0.7 and study.trials[1].intermediate_values == {50: 0.2}
    assert study.ask(distributions(SPEC)).number == 3


def test_a_trial_behind_the_median_is_pruned_and_one_ahead_is_not() -> None:
    study = build_study(SPEC, 0, [_trial(0, TrialState.complete, 0.7, [[50, 0.6], [100, 0.7]])])
    ahead = StudyReporter(study.ask(distributions(SPEC)), "ndcg@10", 2, 10, 0)
    ahead.report(50, 0.65)
    study.tell(ahead.trial, 0.8)
    behind = StudyReporter(study.ask(distributions(SPEC)), "ndcg@10", 2, 10, 0)
    with pytest.raises(TrialPruned) as pruned:
        behind.report(50, 0.1)
    assert pruned.value.step == 50 and behind.intermediate == [[50, 0.1]]


def test_no_pruner_never_prunes() -> None:
    spec = SPEC.model_copy(update={"pruner": "none"})
    study = build_study(spec, 0, [_trial(0, TrialState.complete, 0.7, [[50, 0.6]])])
    StudyReporter(study.ask(distributions(spec)), "ndcg@10", 2, 10, 0).report(50, 0.0)


def test_warm_start_takes_the_parents_best_params_clipped_to_the_space() -> None:
    parent = {"search": {"best_params": {"learning_rate": 1e-3, "epochs": 2, "batch_size": 8}}}
    assert warm_params(SPEC, parent) == {"learning_rate": 3e-4, "epochs": 2}
    assert warm_params(SPEC, {"verdict": {}}) == {} and warm_params(SPEC, None) == {}
    study = build_study(SPEC, 0, [])
    study.enqueue_trial(warm_params(SPEC, parent))
    assert study.ask(distributions(SPEC)).params == {"learning_rate": 3e-4, "epochs": 2}


def test_a_resumed_study_does_not_draw_the_first_trials_params_again() -> None:
    first = build_study(SPEC, 7, []).ask(distributions(SPEC)).params
    recorded = [SearchTrial("t", 0, TrialState.complete, first, 0.5, [], None, None,
                            datetime.now(UTC), None)]
    assert build_study(SPEC, 7, recorded).ask(distributions(SPEC)).params != first


def test_trial_value_reads_the_judged_set_then_the_clicks() -> None:
    clicks = {"clicks": {"full_catalogue": {"after": {"ndcg@10": 0.4}},
                         "shown_lists": {"after": 1.5}}}
    assert trial_value(clicks, "ndcg@10") == 0.4
    assert trial_value(clicks, "click_dcg@10") == 1.5
    judged = {**clicks, "judged": {"after": {"ndcg@10": 0.9, "mrr@10": 0.8}}}
    assert trial_value(judged, "ndcg@10") == 0.9 and trial_value(judged, "mrr@10") == 0.8
    assert trial_value({}, "ndcg@10") is None
