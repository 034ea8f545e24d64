"""The before/after report and the one verdict a run ends with.

Both models rank the catalogue once each (`rank_catalogue`, for every evaluation query at once);
everything here is computed from those two rankings, nothing is encoded again:

- **judged** (when the task has an evaluation set): graded NDCG@10, MRR@10, Recall@10/100 of
  the set's queries over the whole catalogue. The truth, so it decides the verdict.
- **clicks, shown lists**: each model re-ranks the items users were shown in the held-out
  queries' sessions; clicks become relevance estimates corrected for position and trust bias,
  with propensities estimated from this clickstream (`embtune.clickstream.counterfactual`,
  `embtune.clickstream.propensity`). Both models rank the same candidates, so the source
  model's choice of what to show helps neither. It decides the verdict without a judged set.
- **clicks, full catalogue**: held-out clicked items as the relevant ones over the whole
  catalogue — today's figure, kept for reference and labelled for what it is: it favours the
  source model, whose results were the only ones users could click.

Each delta gets a paired bootstrap interval over queries (`embtune.training.verdict`), and the
verdict is `better` / `worse` only when its interval excludes zero.
"""

from __future__ import annotations

from typing import Any

import torch

from embtune.clickstream.counterfactual import shown_list_scores
from embtune.clickstream.propensity import Propensities, estimate_propensities
from embtune.clickstream.sessions import SearchSession
from embtune.clickstream.split import normalize_query
from embtune.training.data import SHOWN_RANKS, Prepared
from embtune.training.evaluation import CatalogueRanking, score_ranking
from embtune.training.ir_metrics import METRIC_NAMES, RetrievalReport, compare_reports
from embtune.training.verdict import Interval, decide, paired_bootstrap

# Decided on: DCG@10 of the shown lists with debiased clicks as relevance (unbiased for the mean
# DCG per query); its per-query normalised nDCG is reported beside it.
CLICK_METRIC = "click_dcg@10"
CLICK_NDCG_METRIC = "click_ndcg@10"
FULL_CATALOGUE_NOTE = (
    "favours the source model: users could only click what it showed them, so its successes "
    "are the relevant items here"
)


def judge(prepared: Prepared, before: CatalogueRanking, after: CatalogueRanking, seed: int
          ) -> dict[str, Any]:
    """The report's parts: `verdict`, `judged` (with a set), `clicks`, and the headline
    `before` / `after` / `delta` / `per_query` (judged figures with a set, else the clicks')."""
    report: dict[str, Any] = {}
    clicks: dict[str, Any] = {"split": "query"}
    full = _full_catalogue(prepared, before, after, seed)
    if full is not None:
        clicks["full_catalogue"] = full
    shown = _shown_lists(prepared, before, after, seed)
    if shown is not None:
        _check_against_catalogue(shown, full)
        clicks["shown_lists"] = shown
    report["clicks"] = clicks
    judged = _judged(prepared, before, after, seed)
    if judged is not None:
        report["judged"] = judged
        headline = judged
    else:
        headline = full
    if headline is not None:
        for key in ("before", "after", "delta", "per_query"):
            report[key] = headline[key]
    report["verdict"] = _verdict(judged, shown)
    return _strip_private(report)


# -- judged set --------------------------------------------------------------------------------
def _judged(
    prepared: Prepared, before: CatalogueRanking, after: CatalogueRanking, seed: int
) -> dict[str, Any] | None:
    judged = prepared.judged
    if judged is None or not judged.queries:
        return None
    ids = [f"j:{key}" for key in judged.queries]
    relevant = {f"j:{key}": found for key, found in judged.relevant().items()}
    grades = {f"j:{key}": graded for key, graded in judged.grades.items()}
    reports = [score_ranking(r, ids, relevant, grades) for r in (before, after)]
    summary = _comparison(*reports, dict(judged.queries), "j:", seed)
    summary["verdict"], summary["reason"] = decide(
        summary["_interval"], metric=f"judged NDCG@10 on {judged.name!r}"
    )
    summary["evaluation_set"] = {"id": judged.id, "name": judged.name}
    summary["queries"] = len(ids)
    summary["queries_without_catalogued_items"] = prepared.judged_dropped
    return summary


# -- clicks over the whole catalogue ----------------------------------------------------------
def _full_catalogue(
    prepared: Prepared, before: CatalogueRanking, after: CatalogueRanking, seed: int
) -> dict[str, Any] | None:
    if not prepared.queries:
        return None
    ids = [f"c:{key}" for key in prepared.queries]
    relevant = {f"c:{key}": found for key, found in prepared.relevant.items()}
    reports = [score_ranking(r, ids, relevant) for r in (before, after)]
    summary = _comparison(*reports, dict(prepared.queries), "c:", seed)
    summary["queries"] = len(ids)
    summary["note"] = FULL_CATALOGUE_NOTE
    return summary


def _comparison(
    before: RetrievalReport,
    after: RetrievalReport,
    texts: dict[str, str],
    prefix: str,
    seed: int,
) -> dict[str, Any]:
    """before / after / delta / ci95 per metric and the per-query comparison, keyed without
    the evaluation's internal prefix."""
    keys = sorted(before.per_query)
    intervals = {
        name: paired_bootstrap(
            [before.per_query[key][name] for key in keys],
            [after.per_query[key][name] for key in keys],
            seed=seed,
        )
        for name in METRIC_NAMES
    }
    plain = [_unprefixed(report, prefix) for report in (before, after)]
    return {
        "before": before.metrics,
        "after": after.metrics,
        "delta": {name: after.metrics[name] - value for name, value in before.metrics.items()},
        "ci95": {name: [interval.low, interval.high] for name, interval in intervals.items()},
        "per_query": compare_reports(*plain, texts),
        "_interval": intervals["ndcg@10"],
    }


def _unprefixed(report: RetrievalReport, prefix: str) -> RetrievalReport:
    cut = len(prefix)
    return RetrievalReport(
        report.metrics, {key[cut:]: rank for key, rank in report.ranks.items()}
    )


# -- clicks on the shown lists ----------------------------------------------------------------
def _shown_lists(
    prepared: Prepared, before: CatalogueRanking, after: CatalogueRanking, seed: int
) -> dict[str, Any] | None:
    if not prepared.shown_sessions:
        return None
    propensities = estimate_propensities(
        prepared.propensity_sessions,
        features=_source_scores(prepared.propensity_sessions, before),
        max_rank=SHOWN_RANKS,
    )
    orders = [_orders(prepared.shown_sessions, ranking) for ranking in (before, after)]

    def compare(normalized: bool) -> tuple[dict[str, float], dict[str, float], Interval]:
        scores = [
            shown_list_scores(
                prepared.shown_sessions, order, propensities, k=SHOWN_RANKS, normalized=normalized
            )
            for order in orders
        ]
        keys = sorted(scores[0])
        interval = paired_bootstrap(
            [scores[0][key] for key in keys], [scores[1][key] for key in keys], seed=seed
        )
        return scores[0], scores[1], interval

    source, tuned, interval = compare(normalized=False)
    verdict, reason = decide(interval, metric="debiased click DCG@10 on shown lists")
    ndcg_source, ndcg_tuned, ndcg_interval = compare(normalized=True)
    return {
        "verdict": verdict,
        "reason": reason,
        "metric": CLICK_METRIC,
        "before": _mean(source.values()),
        "after": _mean(tuned.values()),
        "delta": interval.delta,
        "ci95": [interval.low, interval.high],
        "queries": interval.n,
        "sessions": len(prepared.shown_sessions),
        # normalised per query: bounded, but only queries with a click count and each is divided
        # by its own clicks' weight, which under-weights the queries whose relevant item the
        # source showed deep (rarely clicked, so often dropped): a lean toward the source, so it
        # is shown, never decided on
        "ndcg": {
            "metric": CLICK_NDCG_METRIC,
            "before": _mean(ndcg_source.values()),
            "after": _mean(ndcg_tuned.values()),
            "delta": ndcg_interval.delta,
            "ci95": [ndcg_interval.low, ndcg_interval.high],
            "queries": ndcg_interval.n,
        },
        "propensities": _propensity_summary(propensities),
        "_interval": interval,
    }


def _check_against_catalogue(shown: dict[str, Any], full: dict[str, Any] | None) -> None:
    """A `better` on the shown lists stands only if the whole catalogue does not say the
    opposite decisively.

    Re-ranking the shown lists cannot see a model that ranks them well among themselves but
    buries them under the rest of the catalogue (a collapsed model does, and it can still order
    ten candidates). The full-catalogue click figure sees that, but favours the source model, so
    it may only withdraw a `better`, never make a `worse`."""
    if shown["verdict"] != "better" or full is None:
        return
    low, high = full["ci95"]["ndcg@10"]
    if high < 0:
        shown["verdict"] = "inconclusive"
        shown["reason"] += (
            f"; but over the whole catalogue the held-out clicked items rank decisively lower "
            f"(click NDCG@10 [{low:+.3f}, {high:+.3f}]): inconclusive, a judged set decides"
        )


def _similarities(session: SearchSession, ranking: CatalogueRanking) -> dict[str, float]:
    """Cosine of the session's query with each of its shown, catalogued items."""
    shown = [
        object_id
        for object_id in dict.fromkeys(session.results[:SHOWN_RANKS])
        if object_id in ranking.kept
    ]
    if not shown:
        return {}
    query = ranking.query_vectors[f"t:{session.query}"]
    values = torch.stack([ranking.kept[object_id] for object_id in shown]) @ query
    return dict(zip(shown, values.tolist(), strict=True))


def _orders(sessions: list[SearchSession], ranking: CatalogueRanking) -> dict[str, list[str]]:
    """Each session's shown items as this model ranks them: by cosine, ties by object id.

    Not ties in shown order: that is the source model's order, and a model that collapsed
    (every item alike) would be handed the source's ranking and look as good as it."""
    orders: dict[str, list[str]] = {}
    for session in sessions:
        similarity = _similarities(session, ranking)
        orders[session.session_id] = sorted(similarity, key=lambda o: (-similarity[o], o))
    return orders


def _source_scores(
    sessions: list[SearchSession], ranking: CatalogueRanking
) -> dict[tuple[str, str], list[float]]:
    """The source model's cosine per (query, shown item), less the mean over that shown list:
    the relevance feature that lets regression-EM tell position from relevance when each pair
    was shown at one rank only. Centred per list because raw cosines are not comparable across
    queries (a vague query scores every item low), which biases the deep ranks' estimates."""
    features: dict[tuple[str, str], list[float]] = {}
    for session in sessions:
        key = normalize_query(session.query)
        similarity = _similarities(session, ranking)
        if not similarity:
            continue
        mean = sum(similarity.values()) / len(similarity)
        for object_id, value in similarity.items():
            features[(key, object_id)] = [value - mean]
    return features


def _propensity_summary(propensities: Propensities) -> dict[str, Any]:
    summary = propensities.to_dict()
    return {
        key: [round(v, 4) for v in value] if isinstance(value, list) else value
        for key, value in summary.items()
    }


# -- verdict -----------------------------------------------------------------------------------
def _verdict(judged: dict[str, Any] | None, shown: dict[str, Any] | None) -> dict[str, Any]:
    """Judged NDCG@10 when a set was given, else the debiased click metric (each part carries
    its own verdict; this picks the one that decides)."""
    if judged is not None:
        part = judged
        basis, metric = "judged", "ndcg@10"
        before, after = part["before"]["ndcg@10"], part["after"]["ndcg@10"]
        evaluation_set = part["evaluation_set"]
    elif shown is not None:
        part = shown
        basis, metric = "clicks", CLICK_METRIC
        before, after = shown["before"], shown["after"]
        evaluation_set = None
    else:
        return {
            "verdict": "inconclusive",
            "basis": "none",
            "metric": None,
            "reason": "neither a judged set nor held-out sessions with shown results: "
            "nothing to decide on",
        }
    interval: Interval = part["_interval"]
    return {
        "verdict": part["verdict"],
        "basis": basis,
        "metric": metric,
        "before": before,
        "after": after,
        "delta": interval.delta,
        "ci95": [interval.low, interval.high],
        "queries": interval.n,
        "evaluation_set": evaluation_set,
        "reason": part["reason"],
    }


def _strip_private(report: dict[str, Any]) -> dict[str, Any]:
    """The report without the intervals kept for the verdict (not JSON)."""
    for part in (report.get("judged"), report.get("clicks", {}).get("full_catalogue"),
                 report.get("clicks", {}).get("shown_lists")):
        if isinstance(part, dict):
            part.pop("_interval", None)
    return report


def _mean(values: Any) -> float:
    values = list(values)
    return sum(values) / len(values) if values else 0.0
