"""Retrieval quality of a model on held-out sessions, and a per-query before/after comparison.

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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from sentence_transformers import SentenceTransformer
from torch.nn import functional

from embtune.training.embedding_cache import (
    CachedEmbeddings,
    CacheKey,
    EmbeddingCache,
    EmbeddingWriter,
)
from embtune.training.precision import Resolved, autocast

METRIC_NAMES = ("ndcg@10", "mrr@10", "recall@10", "recall@100")
MAX_RANK = 100  # ranks beyond this are reported as None
# Items scored per block: 1000 queries x 16384 items x 4 B = 64 MB of scores. Large blocks keep
# the per-block merge (a dozen small tensor ops) negligible even on a contended CPU.
DEFAULT_CHUNK_ITEMS = 16384
# Items encoded per piece: how often progress is reported and cancellation seen (a CPU encodes
# 1024 documents of 256 tokens in about 40 s).
DEFAULT_ENCODE_ITEMS = 1024

CorpusCacheStatus = Literal["hit", "stored", "miss", "off"]


@dataclass(frozen=True)
class RetrievalReport:
    """Flat metrics (keys in METRIC_NAMES, primary `ndcg@10`) and, per query id, the 1-based rank
    of its first relevant item (None when outside the top MAX_RANK).

    `corpus_cache` says where the catalogue's vectors came from: `hit` (read from the cache),
    `stored` (encoded and cached), `miss` (encoded; caching failed) or `off` (no cache given).
    """

    metrics: dict[str, float]
    ranks: dict[str, int | None]
    corpus_cache: CorpusCacheStatus = "off"
    timings_s: dict[str, float] = field(default_factory=dict, compare=False)

    primary_metric: ClassVar[str] = "ndcg@10"


class RunningTopK:
    """The best `k` corpus rows per query under the order (score descending, key ascending),
    updated one chunk of scores at a time.

    `keys` are the rows' positions in the ascending order of their corpus ids, so ties break
    exactly as the evaluator breaks them; they must be unique and below `key_space`. Each update
    keeps the best `k` *set* (cheap: one `topk` over the chunk, one over 2k candidates); the
    order is settled once, by `ranked`.
    """

    def __init__(self, queries: int, k: int, key_space: int, device: torch.device) -> None:
        self.k = k
        self.key_space = key_space
        self.scores = torch.empty((queries, 0), device=device)
        self.keys = torch.empty((queries, 0), dtype=torch.long, device=device)

    def add(self, scores: torch.Tensor, keys: torch.Tensor) -> None:
        """Merge a (queries x rows) block of scores; `keys` holds the rows' keys."""
        values, chosen = self._best(scores, keys)
        merged_scores = torch.cat([self.scores, values], dim=1)
        merged_keys = torch.cat([self.keys, chosen], dim=1)
        self.scores, self.keys = self._best(merged_scores, merged_keys)

    def ranked(self) -> torch.Tensor:
        """Each query's keys, best first: by score, then by key."""
        by_key = self.keys.argsort(dim=1)
        scores, keys = self.scores.gather(1, by_key), self.keys.gather(1, by_key)
        order = torch.sort(scores, dim=1, descending=True, stable=True).indices
        return keys.gather(1, order)

    def _best(
        self, scores: torch.Tensor, keys: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The best-k set of each row under (-score, key); `keys` per column (1-D) or per cell."""
        per_cell = keys.dim() == 2
        k = self.k
        if scores.shape[1] <= k:
            return scores, keys if per_cell else keys.expand(scores.shape[0], -1)
        # One more than k, sorted: equal k-th and (k+1)-th scores mean a tie at the cut, which
        # topk resolves arbitrarily; those rows are reselected by key (the evaluator's trick:
        # everything above the cut first, then the tied rows with the lowest keys).
        values, index = torch.topk(scores, k + 1, dim=1, largest=True, sorted=True)
        tied_rows = (values[:, k - 1] == values[:, k]).nonzero().squeeze(1)
        values, index = values[:, :k], index[:, :k]
        chosen = keys.gather(1, index) if per_cell else keys[index]
        if tied_rows.numel():
            tied, cut = scores[tied_rows], values[tied_rows, k - 1 :]
            row_keys = keys[tied_rows] if per_cell else keys.expand_as(tied)
            order_keys = torch.where(tied > cut, row_keys, 2 * self.key_space)
            order_keys = torch.where(tied == cut, row_keys + self.key_space, order_keys)
            picked = order_keys.topk(k, dim=1, largest=False).indices
            values[tied_rows] = tied.gather(1, picked)
            chosen[tied_rows] = row_keys.gather(1, picked)
        return values, chosen


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
    precision: Resolved = "fp32",
    cache: EmbeddingCache | None = None,
    cache_key: CacheKey | None = None,
    chunk_items: int = DEFAULT_CHUNK_ITEMS,
    encode_items: int = DEFAULT_ENCODE_ITEMS,
    on_progress: Callable[[float], None] | None = None,
) -> RetrievalReport:
    """Rank the whole corpus for each query by cosine similarity and score the relevant items.

    Queries without relevant items are skipped (nothing to find). With `cache` and `cache_key`
    (which must describe this model, `corpus` in this order, its max_seq_length and
    `precision`), the corpus vectors are read from the cache when present and stored when not.
    `on_progress(fraction)` is called after each encoded piece of `encode_items` (or block read
    from the cache); it may raise to stop the evaluation.
    """
    judged = {qid: text for qid, text in queries.items() if relevant.get(qid)}
    if not judged:
        raise ValueError("no query has a relevant item; nothing to evaluate")
    if not corpus:
        raise ValueError("the corpus is empty; nothing to retrieve")
    if cache_key is not None and cache_key.items != len(corpus):
        raise ValueError(f"cache key is for {cache_key.items} items, corpus has {len(corpus)}")
    timings: dict[str, float] = {}
    started = time.monotonic()
    query_ids = list(judged)
    query_vectors = encode_texts(
        model, list(judged.values()), batch_size=batch_size, precision=precision, documents=False
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

    def rank(blocks: Iterator[torch.Tensor]) -> RunningTopK:
        top = RunningTopK(len(query_ids), MAX_RANK, len(ids), query_vectors.device)
        start = 0
        for vectors in blocks:
            end = start + vectors.shape[0]
            top.add(query_vectors @ vectors.to(query_vectors.device).T, keys[start:end])
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
    hits = [[sorted_ids[key] for key in row] for row in top.ranked().cpu().tolist()]
    metrics, ranks = retrieval_metrics(query_ids, hits, relevant)
    return RetrievalReport(metrics, ranks, corpus_cache=status, timings_s=timings)


def _dcg_at_k(relevances: list[int], k: int) -> Any:
    # The evaluator's formula, operation for operation, so the floats agree to the last bit.
    dcg: Any = 0
    for position in range(min(len(relevances), k)):
        dcg += relevances[position] / np.log2(position + 2)
    return dcg


def retrieval_metrics(
    query_ids: list[str], hits: list[list[str]], relevant: dict[str, set[str]]
) -> tuple[dict[str, float], dict[str, int | None]]:
    """METRIC_NAMES and first-relevant ranks from each query's ranked corpus ids (best first),
    computed as `InformationRetrievalEvaluator.compute_metrics` computes them."""
    ndcg: list[Any] = []
    recall: dict[int, list[float]] = {10: [], MAX_RANK: []}
    reciprocal_sum: Any = 0
    ranks: dict[str, int | None] = {}
    for query_id, ranked in zip(query_ids, hits, strict=True):
        wanted = relevant[query_id]
        for k, values in recall.items():
            values.append(sum(1 for object_id in ranked[:k] if object_id in wanted) / len(wanted))
        first = next(
            (place for place, object_id in enumerate(ranked[:MAX_RANK], 1) if object_id in wanted),
            None,
        )
        ranks[query_id] = first
        if first is not None and first <= 10:
            reciprocal_sum += 1.0 / first
        predicted = [1 if object_id in wanted else 0 for object_id in ranked[:10]]
        ndcg.append(_dcg_at_k(predicted, 10) / _dcg_at_k([1] * len(wanted), 10))
    metrics = {
        "ndcg@10": float(np.mean(ndcg)),
        "mrr@10": float(reciprocal_sum / len(query_ids)),
        "recall@10": float(np.mean(recall[10])),
        "recall@100": float(np.mean(recall[MAX_RANK])),
    }
    return metrics, ranks


def _reciprocal(rank: int | None) -> float:
    return 0.0 if rank is None else 1.0 / rank


def _is_better(rank: int | None, other: int | None) -> bool:
    """Whether `rank` beats `other`; a missing rank loses to any rank."""
    if rank is None:
        return False
    return other is None or rank < other


def compare_reports(
    before: RetrievalReport,
    after: RetrievalReport,
    queries: dict[str, str],
    worst: int = 10,
) -> dict[str, Any]:
    """Count queries whose first relevant item moved up, down or stayed, and list the worst drops.

    Regressions are ordered by lost reciprocal rank (1/before - 1/after), so a fall from 1 to 5
    outranks a fall from 50 to out-of-list: the first is what users notice. Only queries present
    in both reports are compared.
    """
    better = worse = same = 0
    regressions: list[tuple[float, str, int | None, int | None]] = []
    for query_id in sorted(before.ranks.keys() & after.ranks.keys()):
        rank_before, rank_after = before.ranks[query_id], after.ranks[query_id]
        if _is_better(rank_after, rank_before):
            better += 1
        elif _is_better(rank_before, rank_after):
            worse += 1
            loss = _reciprocal(rank_before) - _reciprocal(rank_after)
            regressions.append((loss, query_id, rank_before, rank_after))
        else:
            same += 1
    regressions.sort(key=lambda item: (-item[0], item[1]))
    return {
        "better": better,
        "worse": worse,
        "same": same,
        "worst_regressions": [
            {
                "query_id": query_id,
                "query": queries.get(query_id, ""),
                "rank_before": rank_before,
                "rank_after": rank_after,
            }
            for _, query_id, rank_before, rank_after in regressions[:worst]
        ],
    }
