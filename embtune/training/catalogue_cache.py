"""The run's view of the embedding cache: one catalogue, one sequence length, one precision.

A run asks two things of the cache: the key of a model's catalogue vectors (a content hash of its
weight files plus what changes the vectors), and whether those vectors are stored. Without a
cache directory, or for a model whose files cannot be read, keys are None and nothing is cached.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from embtune.training.embedding_cache import CacheKey, EmbeddingCache


@dataclass
class CatalogueCache:
    """The run's view of the embedding cache: one catalogue, one length, one precision."""

    store: EmbeddingCache | None
    max_seq_length: int
    precision: str
    texts_sha256: str | None
    items: int
    key_s: float = 0.0  # time spent fingerprinting models and hashing the catalogue

    @classmethod
    def open(
        cls, root: Path | None, catalogue: Mapping[str, str], max_seq_length: int, precision: str
    ) -> CatalogueCache:
        from embtune.training.embedding_cache import EmbeddingCache, texts_sha256

        if root is None:
            return cls(None, max_seq_length, precision, None, len(catalogue))
        started = time.monotonic()
        digest = texts_sha256(catalogue.values())
        return cls(
            EmbeddingCache(root),
            max_seq_length,
            precision,
            digest,
            len(catalogue),
            time.monotonic() - started,
        )

    def key_for(self, model_dir: Path) -> CacheKey | None:
        if self.store is None or self.texts_sha256 is None:
            return None
        from embtune.training.embedding_cache import CacheKey, fingerprint_model_dir

        started = time.monotonic()
        try:
            fingerprint = fingerprint_model_dir(model_dir)
        except OSError:  # an unreadable file: this model goes uncached, the run goes on
            return None
        finally:
            self.key_s += time.monotonic() - started
        return CacheKey(
            fingerprint, self.max_seq_length, self.precision, self.texts_sha256, self.items
        )

    def has(self, key: CacheKey | None) -> bool:
        return self.store is not None and key is not None and self.store.contains(key)
