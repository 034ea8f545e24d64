"""Retrieval quality of a model on held-out sessions, and a per-query before/after comparison."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator
from sentence_transformers.util import cos_sim

METRIC_NAMES = ("ndcg@10", "mrr@10", "recall@10", "recall@100")
MAX_RANK = 100  # ranks beyond this are reported as None


@dataclass(frozen=True)
class RetrievalReport:
    """Flat metrics (keys in METRIC_NAMES, primary `ndcg@10`) and, per query id, the 1-based rank
    of its first relevant item (None when outside the top MAX_RANK)."""

    metrics: dict[str, float]
    ranks: dict[str, int | None]

    primary_metric: ClassVar[str] = "ndcg@10"


class _RankRecordingEvaluator(InformationRetrievalEvaluator):
    """Keeps the per-query first-relevant rank from the same top-k lists the metrics use.

    `compute_metrics` is the one hook that sees every query's retrieved list; hooking it there,
    instead of re-scoring, costs no second encode of the corpus and cannot disagree with the
    metrics on ties (it sorts exactly like the parent).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.first_relevant_ranks: dict[str, int | None] = {}

    def compute_metrics(self, queries_result_list: list[Any]) -> dict[str, Any]:
        for query_itr, hits in enumerate(queries_result_list):
            query_id = self.queries_ids[query_itr]
            relevant = self.relevant_docs[query_id]
            ordered = sorted(hits, key=lambda hit: (-hit["score"], hit["corpus_id"]))
            self.first_relevant_ranks[query_id] = next(
                (
                    rank
                    for rank, hit in enumerate(ordered[:MAX_RANK], start=1)
                    if hit["corpus_id"] in relevant
                ),
                None,
            )
        return super().compute_metrics(queries_result_list)


def evaluate_retrieval(
    model: SentenceTransformer,
    queries: dict[str, str],
    corpus: dict[str, str],
    relevant: dict[str, set[str]],
    batch_size: int = 64,
) -> RetrievalReport:
    """Rank the whole corpus for each query by cosine similarity and score the clicked items.

    Queries without relevant items are skipped (the evaluator would divide by their absence).
    """
    judged = {qid: text for qid, text in queries.items() if relevant.get(qid)}
    if not judged:
        raise ValueError("no query has a relevant item; nothing to evaluate")
    if not corpus:
        raise ValueError("the corpus is empty; nothing to retrieve")
    evaluator = _RankRecordingEvaluator(
        queries=judged,
        corpus=corpus,
        relevant_docs=relevant,
        mrr_at_k=[10],
        ndcg_at_k=[10],
        accuracy_at_k=[10],
        precision_recall_at_k=[10, MAX_RANK],
        map_at_k=[MAX_RANK],
        batch_size=batch_size,
        show_progress_bar=False,
        write_csv=False,
        score_functions={"cosine": cos_sim},
        main_score_function="cosine",
    )
    # compute_all_metrics rather than __call__: same numbers, without writing CSV files or
    # stamping evaluation results into the model's card.
    scores = evaluator.compute_all_metrics(model)["cosine"]
    metrics = {
        "ndcg@10": float(scores["ndcg@k"][10]),
        "mrr@10": float(scores["mrr@k"][10]),
        "recall@10": float(scores["recall@k"][10]),
        "recall@100": float(scores["recall@k"][MAX_RANK]),
    }
    return RetrievalReport(metrics=metrics, ranks=dict(evaluator.first_relevant_ranks))


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
