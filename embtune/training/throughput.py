"""How long a run's phases should take, from what this host measured before — and what a run
measured, so the next estimate can use it.

Work is counted in *estimated tokens* (`estimated_tokens`: characters / 4 plus the two special
tokens, capped at the sequence length), the same function on both sides, so a rate measured on
one catalogue predicts another of longer or shorter texts. A host with no history for the model's
size and precision setting falls back to fixed CPU constants (`embtune.training.preflight`).
Imports no torch: the API process answers preflight with it.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from math import prod
from pathlib import Path
from typing import Any

from embtune.domain.throughput import MeasuredRates, SampleKind, ThroughputSample
from embtune.training.params import TrainParams

CHARS_PER_TOKEN = 4  # English word pieces average about four characters
SPECIAL_TOKENS = 2  # [CLS] and [SEP]


def estimated_tokens(text: str, limit: int) -> int:
    return min(limit, SPECIAL_TOKENS + -(-len(text) // CHARS_PER_TOKEN))


def texts_tokens(texts: Iterable[str], limit: int) -> int:
    return sum(estimated_tokens(text, limit) for text in texts)


def rows_tokens(rows: Iterable[Mapping[str, Any]], limit: int) -> int:
    """Every text of every training row (anchor, positive, negative…) is one encoder pass."""
    return sum(
        estimated_tokens(value, limit)
        for row in rows
        for value in row.values()
        if isinstance(value, str)
    )


@dataclass(frozen=True)
class Workload:
    """What a run will encode and train on, in estimated tokens."""

    catalogue_tokens: int
    query_tokens: int
    train_tokens: int  # all epochs

    @classmethod
    def of(
        cls,
        catalogue: Mapping[str, str],
        queries: Iterable[str],
        rows: list[dict[str, Any]],
        params: TrainParams,
    ) -> Workload:
        return cls(
            texts_tokens(catalogue.values(), params.max_seq_length),
            texts_tokens(queries, params.max_seq_length),
            params.epochs * rows_tokens(rows, params.training_seq_length),
        )


@dataclass(frozen=True)
class PhaseSeconds:
    """Estimated seconds of each phase of a run, and what they were estimated from."""

    fixed: float  # load, examples, save
    evaluate_source: float
    train: float
    evaluate_tuned: float
    basis: str  # "measured" or "constants"

    @property
    def total(self) -> float:
        return self.fixed + self.evaluate_source + self.train + self.evaluate_tuned

    def to_dict(self) -> dict[str, Any]:
        return {
            "basis": self.basis,
            "fixed_s": round(self.fixed, 1),
            "evaluate_source_s": round(self.evaluate_source, 1),
            "train_s": round(self.train, 1),
            "evaluate_tuned_s": round(self.evaluate_tuned, 1),
        }


def measured_phases(
    work: Workload, rates: MeasuredRates | None, *, source_cached: bool
) -> PhaseSeconds | None:
    """The phases from `rates`, or None where the host has not measured both encoding and
    training for this model size and precision setting."""
    if rates is None or not rates.encode_tokens_per_s or not rates.train_tokens_per_s:
        return None
    encode_all = (work.catalogue_tokens + work.query_tokens) / rates.encode_tokens_per_s
    encode_queries = work.query_tokens / rates.encode_tokens_per_s
    return PhaseSeconds(
        fixed=rates.fixed_s or 0.0,
        evaluate_source=encode_queries if source_cached else encode_all,
        train=work.train_tokens / rates.train_tokens_per_s,
        evaluate_tuned=encode_all,
        basis="measured",
    )


# Shorter phases time mostly Python and kernel-launch overhead. The shop catalogue's encoding at
# 32 tokens takes a few tenths of a second on a CPU and is still a real rate for workloads its size.
MIN_SAMPLE_S = 0.05


def run_samples(
    *,
    work: Workload,
    encoded_catalogue: bool,
    seconds: Mapping[str, float],
    model_params: int,
    params: TrainParams,
    precision: Mapping[str, str],
) -> list[dict[str, Any]]:
    """What a finished run measured, as JSON-safe samples for `metrics.performance`.

    The tuned model's evaluation is the encoding sample (it always encodes: a freshly trained
    model is in no cache); the source's is one too when it was not a cache hit. A phase under
    MIN_SAMPLE_S gives no sample: its time is mostly per-call overhead, not throughput.
    """
    def sample(kind: SampleKind, units: float, took: float, resolved: str, seq: int) -> dict:
        batch = params.batch_size if kind is SampleKind.train else params.eval_batch_size
        measured = ThroughputSample(
            kind, float(units), round(took, 3), model_params, params.precision, resolved,
            precision["device"], seq, batch,
        )
        return {**asdict(measured), "kind": kind.value}

    samples = []
    encoded = work.catalogue_tokens + work.query_tokens
    tuned = seconds.get("evaluate_tuned", 0.0)
    if tuned >= MIN_SAMPLE_S:
        samples.append(sample(SampleKind.encode, encoded, tuned, precision["encode"],
                              params.max_seq_length))
    source = seconds.get("evaluate_source", 0.0)
    if encoded_catalogue and source >= MIN_SAMPLE_S:
        samples.append(sample(SampleKind.encode, encoded, source, precision["encode"],
                              params.max_seq_length))
    train = seconds.get("train", 0.0)
    if train >= MIN_SAMPLE_S:
        samples.append(sample(SampleKind.train, work.train_tokens, train, precision["train"],
                              params.training_seq_length))
    fixed = sum(seconds.get(name, 0.0) for name in ("load", "examples", "save"))
    samples.append(sample(SampleKind.fixed, 1, fixed, precision["train"], params.max_seq_length))
    return samples


def sample_from_dict(raw: Mapping[str, Any]) -> ThroughputSample:
    """A sample read back from `metrics.performance.throughput.samples`."""
    return ThroughputSample(
        SampleKind(raw["kind"]), float(raw["units"]), float(raw["seconds"]),
        int(raw["model_params"]), str(raw["requested_precision"]), str(raw["precision"]),
        str(raw["device"]), int(raw["seq_length"]), int(raw["batch_size"]),
    )


# Floating-point tensors are parameters; integer ones are buffers (BERT's position ids).
_FLOAT_DTYPES = {"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2"}


def model_params_of(model_dir: Path) -> int | None:
    """Parameters of a sentence-transformers model directory, read from its safetensors headers
    (a JSON table of every tensor's shape at the head of each file) without loading weights or
    torch; None where the model is not stored as safetensors or a header is unreadable."""
    files = sorted(model_dir.rglob("*.safetensors"))
    if not files:
        return None
    total = 0
    try:
        for path in files:
            with path.open("rb") as handle:
                (length,) = struct.unpack("<Q", handle.read(8))
                if length > 100_000_000:
                    return None
                header = json.loads(handle.read(length))
            total += sum(
                prod(entry["shape"]) for name, entry in header.items()
                if name != "__metadata__" and entry.get("dtype") in _FLOAT_DTYPES
            )
    except (OSError, ValueError, KeyError, TypeError, struct.error):
        return None
    return total
