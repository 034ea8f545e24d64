"""A model's ranking of the whole catalogue for a set of queries, and the retrieval metrics of it.

Exact cosine search over the whole catalogue in bounded memory, so evaluation scales to 100k+
items: the catalogue is encoded in pieces of `encode_items` (or read from the embedding cache),
scored against all queries in blocks of `chunk_items` rows, and a running top-`MAX_RANK` per
query is kept with `torch.topk`. No queries x catalogue matrix larger than one block exists, and
neither do the whole catalogue's embeddings (a miss streams them into the cache file as they are
made).

The ranking is the one sentence-transformers' `InformationRetrievalEvaluator` produces — score
descending, ties broken by ascending corpus id, boundary ties at the top-k cut handled the same
way — and the metrics use its formulas, so figures and ranks equal the evaluator's on the same
embeddings (tested against it). Queries go through `encode_query` and items through
`encode_document`, as in the evaluator, so models with query/document prompts work the same.
The vectors of the items a caller names (`keep`: those users were shown) are kept as their
blocks stream past, so re-ranking shown lists needs no second encoding.

Batching: `SentenceTransformer.encode` sorts each call's inputs by length (characters, longest
first; see `_inference` in sentence-transformers 6) so a batch pads to similar lengths. Here the
whole catalogue is put in that order first and encoded in pieces of whole batches, so the batches
are the ones a single encode of the catalogue would make, while progress and cancellation are
seen after every piece. Token counts would sort better but need a second tokenization;
characters are a close proxy. Each text is tokenized once, inside encode; with the cache, a task
encodes (and tokenizes) the catalogue only once — for the tuned model — because the source
model's vectors are read back.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from sentence_transformers import SentenceTransformer
from torch.nn import functional

from embtune.training.embedding_cache import (
    CachedEmbeddings,
    CacheKey,
    EmbeddingCache,
    EmbeddingWriter,
)
from embtune.training.ir_metrics import (
    MAX_RANK,
    CorpusCacheStatus,
    RetrievalReport,
    retrieval_metrics,
)
from embtune.training.precision import Resolved, autocast
from embtune.training.topk import RunningTopK

# Items scored per block: 1000 queries x 16384 items x 4 B = 64 MB of scores. Large blocks keep
# the per-block merge (a dozen small tensor ops) negligible even on a contended CPU.
DEFAULT_CHUNK_ITEMS = 16384
# Items encoded per piece: how often progress is reported and cancellation seen (a CPU encodes
# 1024 documents of 256 tokens in about 40 s).
DEFAULT_ENCODE_ITEMS = 1024


@dataclass(frozen=True)
class CatalogueRanking:
    """Each query's top MAX_RANK catalogue ids (best first), the query vectors, and the vectors
    of the items the caller asked to keep (for scoring shown lists without encoding them again).
    Vectors are L2-normalised float32 on the CPU."""

    hits: dict[str, list[str]]
    query_vectors: dict[str, torch.Tensor]
    kept: dict[str, torch.Tensor]
    corpus_cache: CorpusCacheStatus = "off"
    timings_s: dict[str, float] = field(default_factory=dict, compare=False)


def encode_texts(
    model: SentenceTransformer,
    texts: list[str],
    *,
    batch_size: int = 64,
    precision: Resolved = "fp32",
    documents: bool = True,
) -> torch.Tensor:
    """L2-normalised float32 embeddings on the model's device, encoded under `precision`."""
    encode = model.encode_document if documents else model.encode_query
    with autocast(precision, model.device.type):
        embeddings = encode(
            texts, batch_size=batch_size, convert_to_tensor=True, show_progress_bar=False
        )
    # Normalised like `cos_sim` does, once, so a dot product is the evaluator's cosine.
    return functional.normalize(embeddings.float(), p=2, dim=1)


def length_order(texts: list[str]) -> list[int]:
    """Row order for encoding: longest text first (characters, the proxy `encode` sorts by),
    ties in catalogue order. Derived from the texts alone, so cached rows need no index."""
    return sorted(range(len(texts)), key=lambda row: (-len(texts[row]), row))


def evaluate_retrieval(
    model: SentenceTransformer,
    queries: dict[str, str],
    corpus: dict[str, str],
    relevant: dict[str, set[str]],
    batch_size: int = 64,
    *,
    grades: dict[str, dict[str, int]] | None = None,
    **options: Any,
) -> RetrievalReport:
    """Rank the whole corpus for each query by cosine similarity and score the relevant items
    (graded NDCG when `grades` are given). Queries without relevant items are skipped (nothing
    to find). `options` are `rank_catalogue`'s."""
    judged = {qid: text for qid, text in queries.items() if relevant.get(qid)}
    if not judged:
        raise ValueError("no query has a relevant item; nothing to evaluate")
    ranking = rank_catalogue(model, judged, corpus, batch_size, **options)
    return score_ranking(ranking, list(judged), relevant, grades)


def score_ranking(
    ranking: CatalogueRanking,
    query_ids: list[str],
    relevant: dict[str, set[str]],
    grades: dict[str, dict[str, int]] | None = None,
) -> RetrievalReport:
    """The metrics of `query_ids` (each with a relevant item) from a ranking that covers them."""
    metrics, ranks, per_query = retrieval_metrics(
        query_ids, [ranking.hits[query_id] for query_id in query_ids], relevant, grades
    )
    return RetrievalReport(
        metrics,
        ranks,
        corpus_cache=ranking.corpus_cache,
        timings_s=ranking.timings_s,
        per_query=per_query,
    )


def rank_catalogue(
    model: SentenceTransformer,
    queries: dict[str, str],
    corpus: dict[str, str],
    batch_size: int = 64,
    *,
    keep: Collection[str] = (),
    precision: Resolved = "fp32",
    cache: EmbeddingCache | None = None,
    cache_key: CacheKey | None = None,
    chunk_items: int = DEFAULT_CHUNK_ITEMS,
    encode_items: int = DEFAULT_ENCODE_ITEMS,
    on_progress: Callable[[float], None] | None = None,
) -> CatalogueRanking:
    """Rank the whole corpus for each query by cosine similarity, keeping the vectors of the
    corpus ids in `keep` as their blocks stream past.

    With `cache` and `cache_key` (which must describe this model, `corpus` in this order, its
    max_seq_length and `precision`), the corpus vectors are read from the cache when present
    and stored when not. `on_progress(fraction)` is called after each encoded piece of
    `encode_items` (or block read from the cache); it may raise to stop the evaluation.
    """
    if not queries:
        raise ValueError("no query to rank the catalogue for")
    if not corpus:
        raise ValueError("the corpus is empty; nothing to retrieve")
    if cache_key is not None and cache_key.items != len(corpus):
        raise ValueError(f"cache key is for {cache_key.items} items, corpus has {len(corpus)}")
    timings: dict[str, float] = {}
    started = time.monotonic()
    query_ids = list(queries)
    query_vectors = encode_texts(
        model, list(queries.values()), batch_size=batch_size, precision=precision, documents=False
    )
    timings["encode_queries"] = time.monotonic() - started

    ids = list(corpus)
    texts = [corpus[object_id] for object_id in ids]
    # Rows are encoded, cached and scored longest text first; `keys` maps each row to its id's
    # position in ascending id order, the evaluator's tie-break.
    encode_order = length_order(texts)
    id_order = sorted(range(len(ids)), key=ids.__getitem__)
    id_rank = torch.empty(len(ids), dtype=torch.long)
    id_rank[torch.tensor(id_order, dtype=torch.long)] = torch.arange(len(ids))
    keys = id_rank[torch.tensor(encode_order, dtype=torch.long)].to(query_vectors.device)
    # Whole batches per piece: the batches are then those of one encode over the whole corpus.
    piece = max(1, -(-encode_items // batch_size)) * batch_size
    block = max(chunk_items, 1)

    def report(done: int) -> None:
        if on_progress is not None:
            on_progress(done / len(ids))

    kept_rows = {row for row, object_id in enumerate(ids) if object_id in keep} if keep else set()
    kept: dict[str, torch.Tensor] = {}

    def rank(blocks: Iterator[torch.Tensor]) -> RunningTopK:
        kept.clear()
        top = RunningTopK(len(query_ids), MAX_RANK, len(ids), query_vectors.device)
        start = 0
        for vectors in blocks:
            end = start + vectors.shape[0]
            top.add(query_vectors @ vectors.to(query_vectors.device).T, keys[start:end])
            if kept_rows:
                for offset, row in enumerate(encode_order[start:end]):
                    if row in kept_rows:
                        kept[ids[row]] = vectors[offset].detach().float().cpu().clone()
            start = end
        if start != len(ids):
            raise OSError(f"got vectors for {start} of {len(ids)} items")
        return top

    def cached(entry: CachedEmbeddings) -> Iterator[torch.Tensor]:
        done = 0
        for rows in entry.chunks(block):
            done += rows.shape[0]
            yield torch.from_numpy(rows)
            report(done)

    def encoded(writer: EmbeddingWriter | None) -> Iterator[torch.Tensor]:
        pieces: list[torch.Tensor] = []
        buffered = 0
        for start in range(0, len(ids), piece):
            vectors = encode_texts(
                model,
                [texts[row] for row in encode_order[start : start + piece]],
                batch_size=batch_size,
                precision=precision,
            )
            if writer is not None:
                writer.append(vectors.cpu().numpy())
            pieces.append(vectors)
            buffered += vectors.shape[0]
            report(start + vectors.shape[0])
            if buffered >= block:
                yield torch.cat(pieces)
                pieces, buffered = [], 0
        if pieces:
            yield torch.cat(pieces)

    started = time.monotonic()
    status: CorpusCacheStatus = "off"
    top: RunningTopK | None = None
    entry = cache.lookup(cache_key) if cache is not None and cache_key is not None else None
    if entry is not None:
        with entry:
            try:
                top = rank(cached(entry))
                status = "hit"
            except OSError:  # replaced or truncated under our feet: encode instead
                top = None
    if top is None and cache is not None and cache_key is not None:
        with cache.writer(cache_key) as writer:
            top = rank(encoded(writer))
            status = "stored" if writer.commit() else "miss"
    elif top is None:
        top = rank(encoded(None))
    timings["corpus"] = time.monotonic() - started

    sorted_ids = [ids[position] for position in id_order]
    hits = {
        query_id: [sorted_ids[key] for key in row]
        for query_id, row in zip(query_ids, top.ranked().cpu().tolist(), strict=True)
    }
    query_cpu = query_vectors.float().cpu()
    return CatalogueRanking(
        hits=hits,
        query_vectors={query_id: query_cpu[n] for n, query_id in enumerate(query_ids)},
        kept=dict(kept),
        corpus_cache=status,
        timings_s=timings,
    )


