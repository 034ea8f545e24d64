"""The trainer callback that fills a run's `StepHistory` (imports transformers: load it only
where a run trains)."""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from embtune.tracking.steps import StepHistory


class StepHistoryCallback(TrainerCallback):
    """Records each logged step (the trainer logs every step: `logging_steps=1`) of the run's
    last training loop."""

    def __init__(self, history: StepHistory) -> None:
        self.history = history

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self.history.restart()

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        if logs:
            self.history.record(state.global_step, logs)
