"""What a run would train on and roughly how long it would take, without loading a model.

The API process answers preflight for every plugin, so this module imports no torch. The run
uses the same duration estimates to weigh its phases on the progress bar.
"""

from __future__ import annotations

from typing import Any

from embtune.training.data import ClickData, prepare, refusal
from embtune.training.losses import LossStrategy
from embtune.training.params import LossKind, SentenceTransformerParams, TrainParams

# Throughput on 2 CPU cores with all-MiniLM-L6-v2 at batch 32 and max_seq_length 256 (the
# README's Performance section dates the measurement); time is assumed to grow linearly with
# max_seq_length (texts shorter than it cost less, so this errs high). A GPU is far faster; a
# CPU shared with other work can be several times slower.
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


def preflight(
    data: ClickData, params: SentenceTransformerParams, loss_kind: LossKind | LossStrategy
) -> dict[str, Any]:
    """What a run would train on, roughly how long it would take on CPU, and whether it would be
    refused (with the same reason the run would give)."""
    prepared = prepare(data, params, loss_kind)
    examples = len(prepared.rows)
    items = len(prepared.catalogue)
    # The catalogue is encoded twice (source and tuned model) unless the source model's vectors
    # are cached, which preflight does not look up; queries are short and few.
    seconds = 2 * encoding_seconds(items, params) + training_seconds(examples, params)
    reason = refusal(prepared, params)
    return {
        "sessions": prepared.sessions,
        "clicks": prepared.clicks,
        "examples": examples,
        "validation_sessions": prepared.validation_sessions,
        "clicked_items_without_text": prepared.clicked_items_without_text,
        "items": items,
        "estimated_seconds": round(seconds, 1),
        "would_refuse": reason is not None,
        "reason": reason,
    }
