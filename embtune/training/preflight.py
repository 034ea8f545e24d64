"""What a run would train on and roughly how long it would take, without loading a model.

The estimate comes from what the worker host measured on earlier runs of a model of this size
and precision setting (`embtune.training.throughput`); a host with no history falls back to the
fixed constants below. The API process answers preflight for every plugin, so this module imports
no torch. The run uses the same estimates to weigh its phases and for its ETA.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from embtune.domain.throughput import MeasuredRates
from embtune.training.data import ClickData, Prepared, prepare, refusal
from embtune.training.losses import LossStrategy
from embtune.training.params import LossKind, SentenceTransformerParams, TrainParams
from embtune.training.throughput import PhaseSeconds, Workload, measured_phases

# Fallback throughput, for a host with no history: 2 CPU cores with all-MiniLM-L6-v2 at batch
# 32 and max_seq_length 256 (the README's Performance section dates the measurement); time is
# assumed to grow linearly with max_seq_length (texts shorter than it cost less, so this errs
# high). A GPU is far faster; a CPU shared with other work can be several times slower.
TRAIN_EXAMPLES_PER_S = 4.3
ENCODE_DOCUMENTS_PER_S = 27.0
REFERENCE_SEQ_LENGTH = 256


def _length_scale(tokens: int) -> float:
    return tokens / REFERENCE_SEQ_LENGTH


def training_seconds(examples: int, params: TrainParams) -> float:
    """Estimated seconds to train on `examples` rows for `params.epochs` on a CPU."""
    return (
        params.epochs * examples / TRAIN_EXAMPLES_PER_S
        * _length_scale(params.training_seq_length)
    )


def encoding_seconds(documents: int, params: TrainParams) -> float:
    """Estimated seconds to encode `documents` texts on a CPU."""
    return documents / ENCODE_DOCUMENTS_PER_S * _length_scale(params.max_seq_length)


def constant_phases(
    prepared: Prepared, params: TrainParams, *, source_cached: bool
) -> PhaseSeconds:
    """The phases from the fixed constants (no history): the catalogue's encodings and training
    only (queries are short and few; loading and saving are left to the measurements)."""
    catalogue = encoding_seconds(len(prepared.catalogue), params)
    return PhaseSeconds(
        fixed=0.0,
        evaluate_source=0.0 if source_cached else catalogue,
        train=training_seconds(len(prepared.rows), params),
        evaluate_tuned=catalogue,
        basis="constants",
    )


def workload(prepared: Prepared, params: TrainParams) -> Workload:
    """What a run on `prepared` encodes and trains on, in estimated tokens."""
    return Workload.of(
        prepared.catalogue, prepared.evaluation_queries().values(), prepared.rows, params
    )


def estimate_phases(
    prepared: Prepared,
    params: SentenceTransformerParams,
    work: Workload,
    rates: MeasuredRates | None,
    *,
    source_cached: bool,
) -> PhaseSeconds:
    """From `rates` where the host measured both encoding and training, else the constants."""
    return measured_phases(work, rates, source_cached=source_cached) or constant_phases(
        prepared, params, source_cached=source_cached
    )


def source_is_cached(
    prepared: Prepared,
    params: TrainParams,
    source_dir: Path | None,
    cache_dir: Path | None,
    precisions: list[str],
) -> bool:
    """Whether the source model's catalogue vectors are in the embedding cache for any of the
    encoding precisions the worker may resolve to (then its "before" evaluation costs a read)."""
    if source_dir is None or cache_dir is None or not cache_dir.is_dir():
        return False
    from embtune.training.catalogue_cache import CatalogueCache

    for precision in precisions:
        cache = CatalogueCache.open(cache_dir, prepared.catalogue, params.max_seq_length, precision)
        if cache.has(cache.key_for(source_dir)):
            return True
    return False


def preflight(
    data: ClickData,
    params: SentenceTransformerParams,
    loss_kind: LossKind | LossStrategy,
    *,
    rates: MeasuredRates | None = None,
    source_dir: Path | None = None,
    cache_dir: Path | None = None,
) -> dict[str, Any]:
    """What a run would train on, roughly how long it would take, and whether it would be
    refused (with the same reason the run would give).

    `rates`: what the worker host measured before (None: the constants); `source_dir` and
    `cache_dir`: to see whether the source's catalogue vectors are cached (None: assumed not).
    """
    prepared = prepare(data, params, loss_kind)
    examples = len(prepared.rows)
    items = len(prepared.catalogue)
    precisions = (
        [rates.precision["encode"]] if rates and "encode" in rates.precision
        else ["fp32", "bf16", "fp16"]
    )
    cached = source_is_cached(prepared, params, source_dir, cache_dir, precisions)
    phases = estimate_phases(
        prepared, params, workload(prepared, params), rates, source_cached=cached
    )
    reason = refusal(prepared, params)
    estimate = {**phases.to_dict(), "source_vectors_cached": cached}
    if rates is not None:
        estimate["host"] = rates.host
        estimate["samples"] = dict(rates.samples)
        estimate["precision"] = dict(rates.precision)
    return {
        "sessions": prepared.sessions,
        "clicks": prepared.clicks,
        "examples": examples,
        "validation_sessions": prepared.validation_sessions,
        "clicked_items_without_text": prepared.clicked_items_without_text,
        "items": items,
        "estimated_seconds": round(phases.total, 1),
        "estimate": estimate,
        "would_refuse": reason is not None,
        "reason": reason,
    }
