"""Fine-tune a sentence-transformers model on click data with the library's own trainer.

The trainer is the library's, with two narrow overrides: no model-card callback (it would copy
users' queries into the card) and a progress callback that reports and stops the run. What the
model learns from (rows, loss, batching) is the chosen `LossStrategy`, see
`embtune.training.losses`.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from sentence_transformers import (
    SentenceTransformer,
    SentenceTransformerTrainer,
    SentenceTransformerTrainingArguments,
)
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_callback import PrinterCallback

from embtune.errors import TaskRefused, TaskStopped
from embtune.training.checkpoints import (
    Checkpoint,
    CheckpointCallback,
    adopt,
    resumed_max_steps,
)
from embtune.training.hooks import TrainingHooks
from embtune.training.losses import LossStrategy, loss_strategy
from embtune.training.params import LossKind, TrainParams
from embtune.training.precision import resolve_precision
from embtune.training.rows import Row, margin_rows, mnrl_rows

__all__ = [
    "ClickstreamTrainer",
    "LossKind",
    "ProgressCallback",
    "TrainOutcome",
    "TrainParams",
    "fine_tune",
    "margin_rows",
    "mnrl_rows",
    "training_fingerprint",
]

NEVER_STEPS = 2**31 - 1  # a save_steps no run reaches


@dataclass(frozen=True)
class TrainOutcome:
    model_dir: Path
    steps: int
    train_loss: float
    runtime_s: float
    rows: int
    precision: str = "fp32"  # what the optimizer steps ran in: fp32, bf16 or fp16 (mixed)
    save_s: float = 0.0  # writing the weights, apart from training
    # the optimizer step this run resumed from (a checkpoint of an earlier, interrupted run of the
    # same configuration); None: it started from the source weights
    resumed_from_step: int | None = None
    checkpoints_saved: int = 0  # checkpoints this run wrote (and marked complete)


class ClickstreamTrainer(SentenceTransformerTrainer):
    """The library's trainer without its model-card callback.

    That callback copies training rows (here: users' search queries) into the model card as
    widget examples and dataset samples, which `model.save` then writes to the model's README;
    a published model must not carry them. Overriding this hook, which the library documents as
    the place to drop the callback, also skips its `on_init_end`, which fills the card as soon as
    the trainer is built, so removing the callback afterwards would be too late.
    """

    def add_model_card_callback(self, default_args_dict: dict[str, Any]) -> None:
        return None


class ProgressCallback(TrainerCallback):
    """Reports progress at most every `min_interval_s` and stops the run when asked to.

    Cancellation is cooperative and checked after every optimizer step, so a canceled task
    stops within one step; `TaskStopped` is a BaseException, so nothing in the trainer can
    swallow it. Progress is reported from `on_log` (logging happens every step) because that is
    where the step's loss is known; the final step is always reported so a run ends at 100%.
    """

    def __init__(
        self,
        on_progress: Callable[[dict[str, Any]], None],
        should_stop: Callable[[], bool],
        min_interval_s: float = 1.0,
    ) -> None:
        self._on_progress = on_progress
        self._should_stop = should_stop
        self._min_interval_s = min_interval_s
        self._started = 0.0
        self._last_report: float | None = None

    def _check_stop(self) -> None:
        if self._should_stop():
            raise TaskStopped("training was canceled or taken over")

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self._started = time.monotonic()
        self._check_stop()

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self._check_stop()

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        if not logs or "loss" not in logs:
            return  # the end-of-training summary, not a step
        now = time.monotonic()
        step, total = state.global_step, max(state.max_steps, 1)
        due = self._last_report is None or now - self._last_report >= self._min_interval_s
        if not due and step < total:
            return
        self._last_report = now
        elapsed = now - self._started
        self._on_progress(
            {
                "step": step,
                "total_steps": total,
                "epoch": float(state.epoch or 0.0),
                "loss": float(logs["loss"]),
                "eta_s": elapsed / step * (total - step) if step else None,
                "fraction": min(step / total, 1.0),
            }
        )


def fine_tune(
    model: SentenceTransformer,
    train_dataset_rows: Sequence[Row],
    loss_kind: LossKind | LossStrategy,
    params: TrainParams,
    output_dir: Path,
    on_progress: Callable[[dict[str, Any]], None],
    should_stop: Callable[[], bool],
    *,
    hooks: TrainingHooks | None = None,
    on_resume: Callable[[int, int], None] | None = None,
) -> TrainOutcome:
    """Train `model` in place on the loss strategy's rows, with its loss and batches, then save it.

    Refuses (TaskRefused, never retried) when there are fewer than `params.min_examples` rows:
    a few clicks move the model more by noise than by signal. The same seed and rows give the
    same weights on the same hardware: the trainer seeds torch and the batch samplers.

    With a checkpoint directory in `hooks` and `checkpoint_every_steps` or `checkpoint_every_s`
    set, the trainer saves resumable checkpoints there, and a run that finds a complete one of
    the same configuration resumes from it (`on_resume(step, total_steps)` is told): weights,
    optimizer, scheduler, RNG states and the position in the seeded batch order, so it ends
    with the weights an uninterrupted run would have.
    """
    if len(train_dataset_rows) < params.min_examples:
        raise TaskRefused(
            f"only {len(train_dataset_rows)} training examples, "
            f"at least {params.min_examples} are needed"
        )
    hooks = hooks or TrainingHooks()
    strategy = loss_strategy(loss_kind)
    loss = strategy.loss(model)
    model.max_seq_length = params.training_seq_length
    device = model.device.type
    precision = resolve_precision(params.precision, device).train
    saving_checkpoints = hooks.checkpoint_dir is not None and (
        params.checkpoint_every_steps is not None or params.checkpoint_every_s is not None
    )
    resume: Checkpoint | None = None
    extra_callbacks: list[TrainerCallback] = []
    if saving_checkpoints:
        assert hooks.checkpoint_dir is not None
        fingerprint = training_fingerprint(model, train_dataset_rows, strategy, params, precision)
        resume = adopt(hooks.checkpoint_dir, fingerprint)
        checkpointing = CheckpointCallback(
            hooks.checkpoint_dir, hooks.checkpoint_keep, params.checkpoint_every_s
        )
        extra_callbacks.append(checkpointing)
    args = SentenceTransformerTrainingArguments(
        # the trainer writes only checkpoints into its output_dir; the model is saved below
        output_dir=str(hooks.checkpoint_dir if saving_checkpoints else output_dir),
        num_train_epochs=params.epochs,
        per_device_train_batch_size=params.batch_size,
        learning_rate=params.learning_rate,
        warmup_steps=params.warmup_ratio,  # a float below 1 is a ratio in transformers 5
        seed=params.seed,
        data_seed=params.seed,
        batch_sampler=strategy.batch_sampler(),
        eval_strategy="no",
        save_strategy="steps" if saving_checkpoints else "no",
        # time-based only: the callback asks for each save, the step count never comes due
        save_steps=params.checkpoint_every_steps or NEVER_STEPS,
        save_only_model=False,  # optimizer, scheduler and RNG states too: needed to resume
        save_total_limit=None,  # `CheckpointCallback` prunes, only after a save is complete
        logging_strategy="steps",
        logging_steps=1,  # the progress callback reads each step's loss from the logs
        report_to="none",
        disable_tqdm=True,
        # Mixed precision: weights stay fp32, forward passes autocast. On CPU the trainer wants
        # `use_cpu` to accept bf16 (`auto` picks it where the CPU has native bf16).
        fp16=precision == "fp16",
        bf16=precision == "bf16",
        use_cpu=device == "cpu" and precision == "bf16",
        dataloader_num_workers=0,
        dataloader_pin_memory=model.device.type == "cuda",
    )
    trainer = ClickstreamTrainer(
        model=model,
        args=args,
        train_dataset=strategy.train_dataset(train_dataset_rows),
        loss=loss,
        callbacks=[ProgressCallback(on_progress, should_stop), *extra_callbacks, *hooks.callbacks],
    )
    trainer.remove_callback(PrinterCallback)  # it would print every step's logs to stdout
    if resume is not None and on_resume is not None:
        on_resume(resume.step, resumed_max_steps(resume) or resume.step)
    try:
        output = trainer.train(resume_from_checkpoint=str(resume.path) if resume else None)
    finally:
        model.max_seq_length = params.max_seq_length  # what evaluation and serving use
    saving = time.monotonic()
    output_dir.mkdir(parents=True, exist_ok=True)
    model.save(str(output_dir))
    return TrainOutcome(
        model_dir=output_dir,
        steps=output.global_step,
        train_loss=float(output.training_loss),
        runtime_s=float(output.metrics.get("train_runtime", 0.0)),
        rows=len(train_dataset_rows),
        precision=precision,
        save_s=time.monotonic() - saving,
        resumed_from_step=resume.step if resume is not None else None,
        checkpoints_saved=checkpointing.saves if saving_checkpoints else 0,
    )


def training_fingerprint(
    model: SentenceTransformer,
    rows: Sequence[Row],
    strategy: LossStrategy,
    params: TrainParams,
    precision: str,
) -> str:
    """What a checkpoint must have been trained with to be resumed from: every param that
    changes the training (not the checkpoint cadence, not evaluation), the loss, the precision,
    the rows in their order and the source weights (a sample of every tensor: hashing a large
    model's every byte would cost seconds per run)."""
    digest = hashlib.sha256()
    chosen = params.model_dump(
        include=set(TrainParams.model_fields) - {"checkpoint_every_steps", "checkpoint_every_s"}
    )
    digest.update(json.dumps(
        {"params": chosen, "loss": type(strategy).__name__, "precision": precision},
        sort_keys=True, default=str,
    ).encode())
    for row in rows:
        digest.update(json.dumps(row, sort_keys=True, default=str).encode())
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            flat = tensor.detach().reshape(-1)
            digest.update(name.encode())
            digest.update(str(tuple(tensor.shape)).encode())
            sample = flat[:: max(flat.numel() // 256, 1)][:256]
            digest.update(sample.to("cpu", torch.float32).numpy().tobytes())
    return digest.hexdigest()
