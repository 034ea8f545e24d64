"""What a search trial's run reports to its study, and how the study stops it.

No torch here: the plugins (imported by the API process) and the search service name these.
"""

from __future__ import annotations

from typing import Protocol


class TrialPruned(BaseException):
    """The study's pruner stopped this trial: its validation value fell behind the others'.

    A BaseException, like `TaskStopped` and for the same reason: raised from a trainer callback,
    it must unwind through the HF trainer and accelerate, which catch `Exception` in places."""

    def __init__(self, step: int, value: float) -> None:
        super().__init__(f"pruned at step {step} (value {value:.4f})")
        self.step = step
        self.value = value


class TrialReporter(Protocol):
    """The study's side of one trial. Steps are hundredths of an epoch, so trials of any batch
    size or length report at comparable points."""

    # the validation metric reported mid-training (a name of `ir_metrics.METRIC_NAMES`)
    metric: str
    evaluations_per_epoch: int
    eval_queries: int
    seed: int

    def report(self, step: int, value: float) -> None:
        """Record a mid-training value; raises `TrialPruned` when the pruner says so."""
        ...
