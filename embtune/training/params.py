"""Hyper-parameters of the click-based methods, importable without torch.

Kept apart from `trainer.py` because the API process validates params and runs preflight for
every plugin, and must not pay for importing torch to do so.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

LossKind = Literal["mnrl", "click_margin"]
# `auto`: bf16 or fp16 on a GPU, bf16 *encoding* on a CPU with native bf16, fp32 otherwise (see
# `embtune.training.precision`).
PrecisionName = Literal["auto", "fp32", "bf16", "fp16"]


class TrainParams(BaseModel):
    """Hyper-parameters shared by the click-based methods; ranges reject values that cannot work."""

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(3, ge=1, le=50)
    batch_size: int = Field(32, ge=2, le=512)
    learning_rate: float = Field(3e-5, ge=1e-7, le=1e-2)
    warmup_ratio: float = Field(0.1, ge=0.0, le=0.5)
    max_seq_length: int = Field(256, ge=16, le=512)
    train_max_seq_length: int | None = Field(
        None,
        ge=16,
        le=512,
        description="Tokens of each text that training sees (default: max_seq_length). "
        "Shorter trains faster; evaluation and the saved model keep max_seq_length.",
    )
    seed: int = Field(42, ge=0, le=2**32 - 1)  # numpy's seed range
    validation_fraction: float = Field(0.2, ge=0.05, le=0.5)
    min_examples: int = Field(8, ge=1)
    precision: PrecisionName = Field(
        "auto", description="Floating-point precision of encoding and training."
    )
    checkpoint_every_steps: int | None = Field(
        None,
        ge=1,
        le=1_000_000,
        description="Save a training checkpoint (weights, optimizer, scheduler, RNG and data "
        "position) every this many optimizer steps; a re-queued run resumes from the last one.",
    )
    checkpoint_every_s: float | None = Field(
        None,
        ge=10,
        le=7 * 24 * 3600,
        description="Save a training checkpoint when this many seconds passed since the last "
        "one (checked after each step); with checkpoint_every_steps, whichever comes first.",
    )

    @model_validator(mode="after")
    def _train_length_within_max(self) -> TrainParams:
        if self.train_max_seq_length is not None and (
            self.train_max_seq_length > self.max_seq_length
        ):
            raise ValueError(
                f"train_max_seq_length ({self.train_max_seq_length}) must not exceed "
                f"max_seq_length ({self.max_seq_length})"
            )
        return self

    @property
    def training_seq_length(self) -> int:
        return self.train_max_seq_length or self.max_seq_length


class SentenceTransformerParams(TrainParams):
    """The shared training hyper-parameters, plus how the source and tuned models are evaluated."""

    eval_batch_size: int = Field(64, ge=1, le=1024)
    eval_max_queries: int = Field(
        1000,
        ge=1,
        le=1_000_000,
        description="Validation queries evaluated at most; more are sampled (seeded by `seed`).",
    )
