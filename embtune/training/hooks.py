"""What the task lifecycle adds to a run's training loop besides progress and cancel: where its
checkpoints live (so a re-queued run resumes instead of starting over) and extra trainer
callbacks (a search trial's evaluation and pruning).

A plain value the runner builds and the plugin passes through untouched to the trainer, so the
methods need not know about either feature.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from embtune.training.trial import TrialReporter


@dataclass(frozen=True)
class TrainingHooks:
    # The task's checkpoint directory (outside the run's staging area, which every way out of a
    # run deletes); None: the run keeps no checkpoints and cannot resume.
    checkpoint_dir: Path | None = None
    # Complete checkpoints kept while the run goes on (the newest; settings.checkpoint_keep).
    checkpoint_keep: int = 2
    # Further `transformers.TrainerCallback`s for the training loop (typed Any: this module is
    # imported where torch is not).
    callbacks: Sequence[Any] = ()
    # A search trial's reporter: the run evaluates mid-training and reports to it, and it raises
    # `TrialPruned` when the study's pruner stops the trial; None: not a trial.
    trial: TrialReporter | None = None
