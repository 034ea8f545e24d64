"""One trial of a task's hyperparameter search, as recorded."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any


class TrialState(StrEnum):
    running = "running"
    complete = "complete"  # trained to the end; `value` is its metric
    pruned = "pruned"  # stopped by the pruner; `intermediate` says where
    failed = "failed"  # its params were refused or its run raised
    interrupted = "interrupted"  # the run stopped during it; a re-queued study runs it again


# The trials that count toward `search.trials`: an interrupted one is run again.
FINISHED_STATES = (TrialState.complete, TrialState.pruned, TrialState.failed)


@dataclass(frozen=True)
class SearchTrial:
    task_id: str
    number: int
    state: TrialState
    params: dict[str, Any]
    value: float | None
    intermediate: list[list[float]]  # [step, value] pairs, steps in hundredths of an epoch
    metrics: dict[str, Any] | None
    detail: str | None
    started_at: datetime
    finished_at: datetime | None

    @property
    def pruned_at(self) -> int | None:
        if self.state is not TrialState.pruned or not self.intermediate:
            return None
        return int(self.intermediate[-1][0])
