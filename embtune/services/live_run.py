"""The state one run shares between its plugin thread and its monitor thread: the latest
progress, phase messages not yet written, and the loss curve the dashboard draws."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from embtune.domain.tasks import Progress, TaskStatus

LOSS_HISTORY_POINTS = 200


@dataclass
class LiveRun:
    """Mutable state shared by the plugin thread and the monitor thread of one run."""

    task_id: str
    message_id: str
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Held from `take` until the taken messages are committed, so the final transaction never
    # overtakes a heart-beat that holds the last phase messages (they would be lost).
    writing: threading.Lock = field(default_factory=threading.Lock)
    progress: Progress | None = None
    dirty: bool = False
    new_messages: list[str] = field(default_factory=list)
    last_message: str = ""
    loss_history: list[list[float]] = field(default_factory=list)

    def report(self, *, step: int, total_steps: int, message: str = "", **extra: Any) -> None:
        fraction = min(1.0, step / total_steps) if total_steps else 0.0
        with self.lock:
            if isinstance(extra.get("loss"), int | float):
                self._record_loss(float(extra.get("train_step", step)), float(extra["loss"]))
            if self.loss_history:
                extra["loss_history"] = list(self.loss_history)
            self.progress = Progress(fraction, step, total_steps, message, dict(extra))
            self.dirty = True
            if message and message != self.last_message:
                self.new_messages.append(message)
                self.last_message = message

    def _record_loss(self, step: float, loss: float) -> None:
        """Keep the loss curve for the dashboard bounded: past the cap, halve the resolution."""
        if self.loss_history and self.loss_history[-1][0] == step:
            self.loss_history[-1][1] = loss
            return
        self.loss_history.append([step, loss])
        if len(self.loss_history) > LOSS_HISTORY_POINTS:
            self.loss_history = self.loss_history[::2] + (
                [self.loss_history[-1]] if len(self.loss_history) % 2 == 0 else []
            )

    def take(self) -> tuple[Progress | None, list[str]]:
        with self.lock:
            if not self.dirty:
                return None, []
            progress, messages = self.progress, self.new_messages
            self.dirty, self.new_messages = False, []
            return progress, messages


def final_progress(live: LiveRun, message: str) -> dict[str, Any]:
    progress = live.progress or Progress()
    if message == TaskStatus.done.value:
        total = progress.total_steps or progress.step
        return Progress(1.0, total, total, message, progress.extra).to_dict()
    return Progress(progress.fraction, progress.step, progress.total_steps, message,
                    progress.extra).to_dict()
