"""Score a model on the lists users were shown, with clicks corrected for position and trust.

Judging a tuned model by "the clicked items are the relevant ones, find them in the whole
catalogue" favours the model that produced the clicks: an item the source model never showed was
never clicked, so whatever the tuned model finds there counts as a miss. Here every model
re-ranks only the items shown in a session, so both rank the same candidates and the source's
choice of candidates helps neither. The click on each shown item is turned into an unbiased
relevance estimate with the affine correction of Vardasbi, Oosterhuis and de Rijke (CIKM 2020),

    rhat_d = (clicked_d - beta_k) / alpha_k,   k = the rank d was shown at,

whose expectation is the item's relevance under the trust-bias click model (`propensity`). With
beta = 0 it is plain inverse propensity scoring, clicked / theta_k (Joachims, Swaminathan,
Schnabel, "Unbiased Learning-to-Rank with Biased Feedback", WSDM 2017), which takes every noise
click at the top at face value. A session's score is sum_d rhat_d * gain(model's rank of d), so
its expectation is the model's DCG on the shown items with true relevance.

What it cannot see: a relevant item the source never showed (or showed below `max_rank`). A
tuned model that would surface it gets no credit; the metric compares orderings of the source's
candidates, not recall over the catalogue. That is what a judged evaluation set is for.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

from embtune.clickstream.propensity import Propensities
from embtune.clickstream.sessions import SearchSession
from embtune.clickstream.split import normalize_query

Gain = Literal["dcg", "reciprocal"]


def gain_at(rank: int, k: int, gain: Gain = "dcg") -> float:
    """The weight of model rank `rank` (1-based): 1/log2(rank+1) for DCG@k, 1/rank for the
    reciprocal-rank style; 0 below k."""
    if rank > k:
        return 0.0
    if gain == "dcg":
        return 1.0 / math.log2(rank + 1)
    if gain == "reciprocal":
        return 1.0 / rank
    raise ValueError(f"gain must be 'dcg' or 'reciprocal', got {gain!r}")


def relevance_estimates(session: SearchSession, propensities: Propensities) -> dict[str, float]:
    """rhat for each item shown at a rank the propensities cover, in shown order.

    Unclicked items count too (rhat = -beta_k / alpha_k): leaving them out would drop the term
    that cancels the noise clicks on average. A duplicated result keeps its first rank.
    """
    clicked = set(session.clicks)
    estimates: dict[str, float] = {}
    for rank, object_id in enumerate(session.results[: propensities.max_rank], start=1):
        if object_id in estimates:
            continue
        alpha, beta = propensities.alpha[rank - 1], propensities.beta[rank - 1]
        estimates[object_id] = ((object_id in clicked) - beta) / alpha
    return estimates


def session_score(
    session: SearchSession,
    order: Sequence[str],
    propensities: Propensities,
    *,
    k: int = 10,
    gain: Gain = "dcg",
) -> float:
    """sum over the shown items of rhat * gain(rank in `order`).

    `order` is the model's ranking of the session's shown items. An id in it that the session
    did not show is an error (the caller ranked the wrong candidates); shown items deeper than
    the propensities reach are ignored; shown items missing from `order` (e.g. no text to encode)
    go after the ordered ones in shown order, the same for every model given the same catalogue.
    """
    estimates = relevance_estimates(session, propensities)
    shown = set(session.results)
    unknown = [object_id for object_id in order if object_id not in shown]
    if unknown:
        raise ValueError(
            f"order for session {session.session_id!r} ranks items it did not show: {unknown[:5]}"
        )
    ranked = [object_id for object_id in dict.fromkeys(order) if object_id in estimates]
    placed = set(ranked)
    ranked += [object_id for object_id in estimates if object_id not in placed]
    return sum(
        estimates[object_id] * gain_at(rank, k, gain)
        for rank, object_id in enumerate(ranked, start=1)
    )


def ideal_score(
    session: SearchSession, propensities: Propensities, *, k: int = 10, gain: Gain = "dcg"
) -> float:
    """The best score any order of the session's shown items could get: its positive relevance
    estimates, largest first (the ideal DCG of nDCG)."""
    estimates = relevance_estimates(session, propensities)
    best = sorted((value for value in estimates.values() if value > 0), reverse=True)
    return sum(value * gain_at(rank, k, gain) for rank, value in enumerate(best, start=1))


def shown_list_scores(
    sessions: Iterable[SearchSession],
    order: Mapping[str, Sequence[str]],
    propensities: Propensities,
    *,
    k: int = 10,
    gain: Gain = "dcg",
    normalized: bool = False,
) -> dict[str, float]:
    """{normalised query: mean session score} over the sessions, for one model; with
    `normalized`, {query: sum of its sessions' scores / sum of their ideal scores} instead, for
    the queries that have an ideal above 0 (a click somewhere).

    Normalised per query, the metric is an nDCG of the shown lists: bounded, so one click deep in
    a list (weight 1/alpha_k, tens at rank 10) no longer dominates the mean, and a query's
    before/after difference keeps the sign of the unnormalised one (the normaliser is the same
    for every model). But it is not unbiased: queries without a click drop out, and each query is
    divided by its own clicks' weight, so queries whose relevant item was shown deep (rarely
    clicked, heavily weighted when clicked) count for less than they should — a lean toward
    the model that produced the lists. Decide on the unnormalised mean; show this beside it.

    Sessions of one query share the shown list and the users' intent, so they are not
    independent evidence; the query is the unit a verdict resamples (`training.verdict`).
    Sessions the user marked as having nothing relevant are scored like any session without a
    click: their rhat = -beta/alpha is what keeps the estimate unbiased. Scoring them as 0
    instead ("nothing relevant") would look more faithful, but the mark is only given when
    nothing was clicked, so the remaining unmarked sessions would keep their noise clicks
    without the silent sessions that balance them. Every session needs an entry in `order`
    (a session with no results has nothing to score and is skipped).
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    gain_at(1, k, gain)  # validate the gain name even when there is no session
    per_query: dict[str, list[float]] = defaultdict(list)
    ideals: dict[str, float] = defaultdict(float)
    for session in sorted(sessions, key=lambda s: s.session_id):
        if not session.results:
            continue
        if session.session_id not in order:
            raise ValueError(f"no model order for session {session.session_id!r}")
        score = session_score(session, order[session.session_id], propensities, k=k, gain=gain)
        query = normalize_query(session.query)
        per_query[query].append(score)
        if normalized:
            ideals[query] += ideal_score(session, propensities, k=k, gain=gain)
    if normalized:
        return {
            query: sum(scores) / ideals[query]
            for query, scores in sorted(per_query.items())
            if ideals[query] > 0
        }
    return {query: sum(scores) / len(scores) for query, scores in sorted(per_query.items())}
