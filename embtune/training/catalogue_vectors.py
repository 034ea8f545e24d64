"""A model's vectors for catalogue items, block by block: read from the embedding cache where a
task already encoded this very catalogue with this model, encoded otherwise.

A reindex right after a task finds the tuned model's catalogue vectors in the cache (the task's
"after" evaluation stored them, keyed by the model's content hash, its sequence length, the
precision and the catalogue's texts) and only reads them. A full encode stores its vectors the
same way, so the next reindex of the model reuses them. Vectors are L2-normalised float32.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sentence_transformers import SentenceTransformer

from embtune.training.embedding_cache import CacheKey, EmbeddingCache
from embtune.training.evaluation import DEFAULT_ENCODE_ITEMS, encode_texts, length_order
from embtune.training.precision import Resolved

Block = tuple[list[str], np.ndarray]


@dataclass
class VectorStats:
    encoded: int = 0
    reused: int = 0
    cache: str = "off"  # hit | stored | miss | off
    encode_s: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)


def cache_key(
    cache: EmbeddingCache | None,
    model_dir: Path,
    model: SentenceTransformer,
    precision: Resolved,
    texts: list[str],
) -> CacheKey | None:
    """The key a task's evaluation used for these vectors (see `training.catalogue_cache`)."""
    if cache is None:
        return None
    from embtune.training.embedding_cache import fingerprint_model_dir

    try:
        fingerprint = fingerprint_model_dir(model_dir)
    except OSError:
        return None
    return CacheKey.for_catalogue(fingerprint, model.max_seq_length, precision, texts)


def catalogue_blocks(
    model: SentenceTransformer,
    ids: list[str],
    texts: list[str],
    *,
    precision: Resolved,
    stats: VectorStats,
    cache: EmbeddingCache | None = None,
    key: CacheKey | None = None,
    batch_size: int = 64,
    encode_items: int = DEFAULT_ENCODE_ITEMS,
    check: Callable[[], None] = lambda: None,
) -> Iterator[Block]:
    """(ids, vectors) blocks covering every item once, longest text first: from the cache
    entry for `key` when it verifies, else encoded (and stored under `key`). `check` runs
    between blocks and may raise to stop."""
    order = length_order(texts)
    entry = cache.lookup(key) if cache is not None and key is not None else None
    if entry is not None:
        with entry:
            start = 0
            for rows in entry.chunks(encode_items):
                check()
                block_ids = [ids[row] for row in order[start : start + rows.shape[0]]]
                start += rows.shape[0]
                stats.reused += rows.shape[0]
                yield block_ids, rows
        stats.cache = "hit"
        return
    if cache is not None and key is not None:
        with cache.writer(key) as writer:
            for block in _encoded(model, ids, texts, order, precision, stats, batch_size,
                                  encode_items, check):
                writer.append(block[1])
                yield block
            stats.cache = "stored" if writer.commit() else "miss"
        return
    yield from _encoded(model, ids, texts, order, precision, stats, batch_size, encode_items,
                        check)


def encode_blocks(
    model: SentenceTransformer,
    ids: list[str],
    texts: list[str],
    *,
    precision: Resolved,
    stats: VectorStats,
    batch_size: int = 64,
    encode_items: int = DEFAULT_ENCODE_ITEMS,
    check: Callable[[], None] = lambda: None,
) -> Iterator[Block]:
    """Encode just these items (an incremental reindex's added and changed ones)."""
    yield from _encoded(model, ids, texts, length_order(texts), precision, stats, batch_size,
                        encode_items, check)


def _encoded(
    model: SentenceTransformer,
    ids: list[str],
    texts: list[str],
    order: list[int],
    precision: Resolved,
    stats: VectorStats,
    batch_size: int,
    encode_items: int,
    check: Callable[[], None],
) -> Iterator[Block]:
    # whole batches per piece: the batches one encode of everything would make
    piece = max(1, -(-encode_items // batch_size)) * batch_size
    for start in range(0, len(order), piece):
        check()
        rows = order[start : start + piece]
        started = time.monotonic()
        vectors = encode_texts(
            model, [texts[row] for row in rows], batch_size=batch_size, precision=precision
        )
        stats.encode_s += time.monotonic() - started
        stats.encoded += len(rows)
        yield [ids[row] for row in rows], vectors.cpu().numpy().astype(np.float32, copy=False)
