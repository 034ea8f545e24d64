"""Retrieval metrics from ranked hits, and a per-query before/after comparison; numpy only.

Binary relevance reproduces `InformationRetrievalEvaluator.compute_metrics` operation for
operation (tested against it). Graded relevance (a judged evaluation set's grades) uses the grade
as the gain of NDCG, the linear gain of TREC's `ndcg_cut` and BEIR, so a grade-1-only set scores
exactly as binary relevance.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np

METRIC_NAMES = ("ndcg@10", "mrr@10", "recall@10", "recall@100")
MAX_RANK = 100  # ranks beyond this are reported as None

CorpusCacheStatus = Literal["hit", "stored", "miss", "off"]


@dataclass(frozen=True)
class RetrievalReport:
    """Flat metrics (keys in METRIC_NAMES, primary `ndcg@10`), per query id the 1-based rank of
    its first relevant item (None when outside the top MAX_RANK), and per query id its own value
    of each metric (what a paired bootstrap resamples).

    `corpus_cache` says where the catalogue's vectors came from: `hit` (read from the cache),
    `stored` (encoded and cached), `miss` (encoded; caching failed) or `off` (no cache given).
    """

    metrics: dict[str, float]
    ranks: dict[str, int | None]
    corpus_cache: CorpusCacheStatus = "off"
    timings_s: dict[str, float] = field(default_factory=dict, compare=False)
    per_query: dict[str, dict[str, float]] = field(default_factory=dict, compare=False)

    primary_metric: ClassVar[str] = "ndcg@10"


def _dcg_at_k(relevances: list[int], k: int) -> Any:
    # The evaluator's formula, operation for operation, so the floats agree to the last bit.
    dcg: Any = 0
    for position in range(min(len(relevances), k)):
        dcg += relevances[position] / np.log2(position + 2)
    return dcg


def retrieval_metrics(
    query_ids: list[str],
    hits: list[list[str]],
    relevant: dict[str, set[str]],
    grades: dict[str, dict[str, int]] | None = None,
) -> tuple[dict[str, float], dict[str, int | None], dict[str, dict[str, float]]]:
    """METRIC_NAMES, first-relevant ranks and per-query values from each query's ranked corpus
    ids (best first). Without `grades`, computed as `InformationRetrievalEvaluator` computes
    them; with them, NDCG's gain is the item's grade (items of `relevant` missing from `grades`
    count 1)."""
    ndcg: list[Any] = []
    recall: dict[int, list[float]] = {10: [], MAX_RANK: []}
    reciprocal_sum: Any = 0
    ranks: dict[str, int | None] = {}
    per_query: dict[str, dict[str, float]] = {}
    for query_id, ranked in zip(query_ids, hits, strict=True):
        wanted = relevant[query_id]
        found = {
            k: sum(1 for object_id in ranked[:k] if object_id in wanted) / len(wanted)
            for k in recall
        }
        for k, values in recall.items():
            values.append(found[k])
        first = next(
            (place for place, object_id in enumerate(ranked[:MAX_RANK], 1) if object_id in wanted),
            None,
        )
        ranks[query_id] = first
        reciprocal = 1.0 / first if first is not None and first <= 10 else 0.0
        reciprocal_sum += reciprocal
        if grades is None:
            predicted = [1 if object_id in wanted else 0 for object_id in ranked[:10]]
            ideal = [1] * len(wanted)
        else:
            graded = grades.get(query_id, {})
            gain = {object_id: graded.get(object_id, 1) for object_id in wanted}
            predicted = [gain.get(object_id, 0) for object_id in ranked[:10]]
            ideal = sorted(gain.values(), reverse=True)
        value = _dcg_at_k(predicted, 10) / _dcg_at_k(ideal, 10)
        ndcg.append(value)
        per_query[query_id] = {
            "ndcg@10": float(value),
            "mrr@10": reciprocal,
            "recall@10": found[10],
            "recall@100": found[MAX_RANK],
        }
    metrics = {
        "ndcg@10": float(np.mean(ndcg)),
        "mrr@10": float(reciprocal_sum / len(query_ids)),
        "recall@10": float(np.mean(recall[10])),
        "recall@100": float(np.mean(recall[MAX_RANK])),
    }
    return metrics, ranks, per_query


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
