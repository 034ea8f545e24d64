"""What workers measured about their own speed, and the rates an estimate is made from.

A run reports, per phase, how much work it did (estimated tokens encoded or trained on) and how
long it took; the worker keeps those as samples under its host's name. Rates are in estimated
tokens per second rather than documents or examples per second, so a history measured on one
catalogue still predicts a catalogue of longer or shorter texts (the estimate is the same
function on both sides: `embtune.training.throughput.estimated_tokens`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class SampleKind(StrEnum):
    encode = "encode"  # catalogue and query encoding, in evaluation: units are tokens
    train = "train"  # training passes, all epochs: units are tokens
    fixed = "fixed"  # load model, build examples, save: units 1, seconds per run


@dataclass(frozen=True)
class ThroughputSample:
    """One figure from one run."""

    kind: SampleKind
    units: float
    seconds: float
    model_params: int
    requested_precision: str
    precision: str
    device: str
    seq_length: int
    batch_size: int

    @property
    def rate(self) -> float:
        return self.units / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class MeasuredRates:
    """What one host recently achieved for one model size and precision setting: the median of
    its latest samples of each kind (None where it has none of that kind)."""

    host: str
    model_params: int
    requested_precision: str
    encode_tokens_per_s: float | None = None
    train_tokens_per_s: float | None = None
    fixed_s: float | None = None
    samples: dict[str, int] = field(default_factory=dict)
    precision: dict[str, str] = field(default_factory=dict)  # resolved, by kind
    device: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
