"""How source models are loaded for training and evaluation; offline only."""

from __future__ import annotations

import os

from sentence_transformers import SentenceTransformer

from embtune.artifacts import resolve_source


def silence_library_progress() -> None:
    """Turn off the progress bars transformers and the hub draw on stderr ("Loading weights",
    "Writing model shards", downloads). embtune reports its own progress (task record, CLI bar,
    dashboard); theirs would interleave with the CLI's live bar and fill worker logs with
    carriage-return noise. Process-wide and idempotent."""
    from huggingface_hub.utils import disable_progress_bars
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    disable_progress_bars()


def pick_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_model(
    source: str, max_seq_length: int | None, device: str | None = None
) -> SentenceTransformer:
    """Load a model source (`builtin:<alias>` or an absolute local directory), never touching
    the network; `max_seq_length` None keeps the length the model was saved with (a tuned
    iteration is saved with the length it was trained and evaluated at).

    Sources resolve through `embtune.artifacts.resolve_source`, the same check the API applies
    when a model is registered. Hub names are refused on purpose: workers run without internet,
    and a name that silently resolves to a cached download would make results depend on the
    machine.
    """
    path = resolve_source(source)  # ValueError says why a source cannot be used
    # Set before loading: a model config that names a remote tokenizer or module would otherwise
    # try the hub and hang on a machine without internet.
    os.environ["HF_HUB_OFFLINE"] = "1"
    silence_library_progress()
    model = SentenceTransformer(str(path), device=device or pick_device(), local_files_only=True)
    if max_seq_length is not None:  # None: the length the model was saved with
        model.max_seq_length = max_seq_length
    return model
