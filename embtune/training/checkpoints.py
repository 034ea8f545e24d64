"""A task's training checkpoints on disk: which are complete, which to resume from, which to drop.

The trainer writes `checkpoint-<step>/` (weights, optimizer, scheduler, RNG states, trainer
state with the data position) under the task's checkpoint directory. A kill can land in the
middle of that, so a checkpoint counts only once `COMPLETE` is in it: written after every other
file, through a temporary name and `os.replace`, so the marker is there whole or not at all.
`fingerprint.json` beside the checkpoints names the training configuration they belong to
(params, data, source weights); checkpoints of another configuration (a task restarted with new
params) are deleted, never resumed from.

`CheckpointCallback` asks the trainer to save every N seconds (the trainer's own `save_steps`
does every N steps), marks each save complete and keeps the newest `keep` complete ones. The
trainer's own rotation (`save_total_limit`) is not used: it runs before the marker is written
and counts unmarked leftovers, so with `keep=1` it would delete the only complete checkpoint
before the new one is complete.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

PREFIX = "checkpoint-"  # what transformers names its checkpoint folders
COMPLETE = "COMPLETE"
FINGERPRINT = "fingerprint.json"


@dataclass(frozen=True)
class Checkpoint:
    step: int
    path: Path
    complete: bool


def _step_of(path: Path) -> int | None:
    name = path.name
    if not name.startswith(PREFIX) or not name[len(PREFIX):].isdigit():
        return None
    return int(name[len(PREFIX):])


def list_checkpoints(root: Path) -> list[Checkpoint]:
    """Every checkpoint folder under `root`, oldest step first."""
    try:
        entries = list(root.iterdir())
    except OSError:
        return []
    found = []
    for path in entries:
        step = _step_of(path)
        if step is not None and path.is_dir():
            found.append(Checkpoint(step, path, (path / COMPLETE).is_file()))
    return sorted(found, key=lambda c: c.step)


def last_complete(root: Path) -> Checkpoint | None:
    """The checkpoint to resume from: the highest step whose marker was written."""
    complete = [c for c in list_checkpoints(root) if c.complete]
    return complete[-1] if complete else None


def _write_atomically(path: Path, text: str) -> None:
    """Write, flush to disk, then rename over `path`: a reader sees the old file or the whole new
    one, after a kill or a power cut alike."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _sync_tree(path: Path) -> None:
    """Flush a checkpoint's files to disk before it is marked complete: after a power cut the
    marker must not vouch for files still in the page cache."""
    for file in path.rglob("*"):
        if file.is_file():
            fd = os.open(file, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def mark_complete(path: Path, step: int) -> None:
    """Declare a checkpoint the trainer has finished writing resumable."""
    _sync_tree(path)
    _write_atomically(path / COMPLETE, json.dumps({"step": step}))


def prune(root: Path, keep: int) -> list[Path]:
    """Keep the newest `keep` complete checkpoints; delete older complete ones and any
    incomplete one below the newest complete (a save cut short). The newest complete checkpoint
    is never deleted, whatever `keep` says."""
    found = list_checkpoints(root)
    complete = [c for c in found if c.complete]
    if not complete:
        return []
    kept = {c.path for c in complete[-max(keep, 1):]}
    newest = complete[-1].step
    removed = [
        c.path for c in found
        if c.path not in kept and (c.complete or c.step < newest)
    ]
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    return removed


def adopt(root: Path, fingerprint: str) -> Checkpoint | None:
    """Make `root` this configuration's checkpoint directory and return what to resume from.

    Checkpoints of another configuration (or of none recorded) and incomplete ones (a save cut
    short by a kill) are deleted first, so the trainer starts clean or from a complete one."""
    root.mkdir(parents=True, exist_ok=True)
    marker = root / FINGERPRINT
    try:
        recorded = json.loads(marker.read_text(encoding="utf-8")).get("fingerprint")
    except (OSError, ValueError, AttributeError):
        recorded = None
    for checkpoint in list_checkpoints(root):
        if recorded != fingerprint or not checkpoint.complete:
            shutil.rmtree(checkpoint.path, ignore_errors=True)
    if recorded != fingerprint:
        _write_atomically(marker, json.dumps({"fingerprint": fingerprint}))
    return last_complete(root)


def delete_all(root: Path) -> None:
    shutil.rmtree(root, ignore_errors=True)


def resumed_max_steps(checkpoint: Checkpoint) -> int | None:
    """The run's total optimizer steps as the checkpoint's trainer state recorded them."""
    try:
        state = json.loads((checkpoint.path / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    value = state.get("max_steps") if isinstance(state, dict) else None
    return int(value) if isinstance(value, int) else None


class CheckpointCallback(TrainerCallback):
    """Saves every `every_s` seconds as well as the trainer's every `save_steps`, marks each save
    complete and prunes to the newest `keep`.

    The run's last step is never saved: the final model is saved apart, and the task's
    checkpoints are deleted once it is done, so that save would be wasted time.
    """

    def __init__(self, root: Path, keep: int, every_s: float | None = None) -> None:
        self.root = root
        self.keep = keep
        self.every_s = every_s
        self.saves = 0
        self._last_save = time.monotonic()

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self._last_save = time.monotonic()

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self.every_s is not None and time.monotonic() - self._last_save >= self.every_s:
            control.should_save = True
        if state.global_step >= state.max_steps:
            control.should_save = False

    def on_save(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        mark_complete(self.root / f"{PREFIX}{state.global_step}", state.global_step)
        prune(self.root, self.keep)
        self.saves += 1
        self._last_save = time.monotonic()
