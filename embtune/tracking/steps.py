"""What a training loop logged at each optimizer step, kept for the experiment tracker.

A plain value (no torch, no transformers) so the runner can hold one for a run in a process
that never trains; the trainer callback that fills it lives in `step_callback`.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

# The trainer's log keys kept per step, under the names the tracker shows them by.
STEP_KEYS = {"loss": "train_loss", "learning_rate": "learning_rate", "grad_norm": "grad_norm"}


@dataclass(frozen=True)
class StepValue:
    key: str
    value: float
    step: int
    timestamp_ms: int


class StepHistory:
    """Every step's loss (and learning rate, gradient norm) in the order they were logged."""

    def __init__(self) -> None:
        self._points: list[StepValue] = []
        self._lock = threading.Lock()  # filled by the training thread, read after the run

    def record(self, step: int, logs: dict[str, float]) -> None:
        """Keep the known keys of one step's logs; the end-of-training summary (no `loss`)
        is not a step and is skipped."""
        if "loss" not in logs:
            return
        now = int(time.time() * 1000)
        with self._lock:
            for key, name in STEP_KEYS.items():
                value = logs.get(key)
                if isinstance(value, int | float) and value == value:  # not NaN
                    self._points.append(StepValue(name, float(value), step, now))

    def restart(self) -> None:
        """Forget what was kept: a run that trains more than once (a search's trials, then
        the final training) is tracked with the loss of the training that made its model."""
        with self._lock:
            self._points.clear()

    @property
    def points(self) -> list[StepValue]:
        with self._lock:
            return list(self._points)
