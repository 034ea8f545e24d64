"""How source models are loaded for training and evaluation; offline only."""

from __future__ import annotations

import os

from sentence_transformers import SentenceTransformer

from embtune.artifacts import resolve_source


def pick_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_model(source: str, max_seq_length: int, device: str | None = None) -> SentenceTransformer:
    """Load a model source (`builtin:<alias>` or an absolute local directory), never touching
    the network.

    Sources resolve through `embtune.artifacts.resolve_source`, the same check the API applies
    when a model is registered. Hub names are refused on purpose: workers run without internet,
    and a name that silently resolves to a cached download would make results depend on the
    machine.
    """
    path = resolve_source(source)  # ValueError says why a source cannot be used
    # Set before loading: a model config that names a remote tokenizer or module would otherwise
    # try the hub and hang on a machine without internet.
    os.environ["HF_HUB_OFFLINE"] = "1"
    model = SentenceTransformer(str(path), device=device or pick_device(), local_files_only=True)
    model.max_seq_length = max_seq_length
    return model
