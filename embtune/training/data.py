"""What a run trains and evaluates on, and why a run on it would be refused; pure, no torch.

Preflight and the run compute both the same way, here, so preflight's figures and reason are the
run's. The data comes through `ClickData`, two read methods any training-data object has (the
plugins' `TrainingData` is one), so this package needs nothing from the layers above it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Protocol

from embtune.clickstream.sessions import SearchSession
from embtune.clickstream.split import normalize_query, query_relevance, split_by_query
from embtune.domain.evaluation_sets import JudgedSet
from embtune.training.losses import LossStrategy, loss_strategy
from embtune.training.params import LossKind, SentenceTransformerParams, TrainParams


class ClickData(Protocol):
    """Read access to a batch's search sessions and the item catalogue."""

    def sessions(self) -> list[SearchSession]: ...

    def item_texts(self) -> dict[str, str]: ...


@dataclass(frozen=True)
class Prepared:
    """What a run would train and evaluate on; computed the same way by preflight and the run."""

    sessions: int
    clicks: int
    clicked_items_without_text: int
    train_sessions: int
    validation_sessions: int
    rows: list[dict[str, Any]]
    catalogue: dict[str, str]
    queries: dict[str, str]  # evaluated validation queries (a clicked, catalogued item each)
    relevant: dict[str, set[str]]
    validation_queries_total: int  # all validation queries with a clicked, catalogued item
    # validation sessions whose shown lists both models re-rank (the debiased click metric)
    shown_sessions: list[SearchSession] = field(default_factory=list)
    # the sessions position bias is estimated from (train and validation alike: it is the
    # page's property, not a model's)
    propensity_sessions: list[SearchSession] = field(default_factory=list)
    judged: JudgedSet | None = None  # limited to catalogued items
    judged_dropped: int = 0  # judged queries left out: none of their relevant items is catalogued

    def evaluation_queries(self) -> dict[str, str]:
        """Every text a model is asked to rank the catalogue for, keyed by what it serves:
        `c:` held-out click sessions, `t:` shown-list query texts, `j:` judged queries."""
        queries = {f"c:{key}": text for key, text in self.queries.items()}
        for session in (*self.shown_sessions, *self.propensity_sessions):
            queries[f"t:{session.query}"] = session.query
        if self.judged is not None:
            queries.update({f"j:{key}": text for key, text in self.judged.queries.items()})
        return queries

    def shown_items(self) -> set[str]:
        """The catalogued items of the shown lists, whose vectors the shown-list metric and
        the propensity features need."""
        return {
            object_id
            for session in (*self.shown_sessions, *self.propensity_sessions)
            for object_id in session.results[:SHOWN_RANKS]
            if object_id in self.catalogue
        }

    def figures(self) -> str:
        return (
            f"{self.sessions} sessions, {self.clicks} clicks, {len(self.rows)} training examples, "
            f"{self.validation_sessions} validation sessions, "
            f"{self.clicked_items_without_text} clicked items with no text"
        )


# Ranks of a shown list that the click metric and the position-bias estimate look at.
SHOWN_RANKS = 10
# Sessions the position bias is estimated from at most (seeded sample): beyond this the estimate
# no longer moves, while the items whose vectors are kept for it keep growing.
PROPENSITY_MAX_SESSIONS = 20_000


def prepare(
    data: ClickData,
    params: SentenceTransformerParams,
    loss: LossKind | LossStrategy,
    judged: JudgedSet | None = None,
) -> Prepared:
    """Split the sessions by query, build the loss's rows from the training side and the
    evaluation inputs from the validation side (and from `judged`, when given).

    Split by query, not by session: a query on both sides would let the tuned model be judged
    on queries it was trained on."""
    sessions = data.sessions()
    catalogue = data.item_texts()
    train, validation = split_by_query(sessions, params.validation_fraction, params.seed)
    rows = loss_strategy(loss).rows(train, catalogue)
    clicked = {object_id for session in sessions for object_id in session.clicks}
    queries, relevant = query_relevance(validation)
    # A click on an item the catalogue lacks cannot be retrieved by any model; judging only
    # catalogued items keeps such gaps from diluting both sides of the comparison.
    relevant = {
        query_id: found
        for query_id, ids in relevant.items()
        if (found := {object_id for object_id in ids if object_id in catalogue})
    }
    evaluated = sample_queries(list(relevant), params.eval_max_queries, params.seed)
    shown_keys = set(
        sample_queries(
            sorted({normalize_query(s.query) for s in validation if s.results}),
            params.eval_max_queries,
            params.seed,
        )
    )
    with_results = [session for session in sessions if session.results]
    propensity_sessions = sorted(
        random.Random(params.seed).sample(
            with_results, min(len(with_results), PROPENSITY_MAX_SESSIONS)
        ),
        key=lambda session: session.session_id,
    )
    judged_in_catalogue, judged_dropped = _judged_in_catalogue(judged, catalogue)
    return Prepared(
        sessions=len(sessions),
        clicks=sum(len(session.clicks) for session in sessions),
        clicked_items_without_text=len(clicked - catalogue.keys()),
        train_sessions=len(train),
        validation_sessions=len(validation),
        rows=rows,
        catalogue=catalogue,
        queries={query_id: queries[query_id] for query_id in evaluated},
        relevant={query_id: relevant[query_id] for query_id in evaluated},
        validation_queries_total=len(relevant),
        shown_sessions=[
            s for s in validation if s.results and normalize_query(s.query) in shown_keys
        ],
        propensity_sessions=propensity_sessions,
        judged=judged_in_catalogue,
        judged_dropped=judged_dropped,
    )


def _judged_in_catalogue(
    judged: JudgedSet | None, catalogue: dict[str, str]
) -> tuple[JudgedSet | None, int]:
    """The set without judgements on items the catalogue no longer holds (no model can find
    them, so they would only lower both sides alike), and how many queries that emptied."""
    if judged is None:
        return None, 0
    grades = {
        query_id: kept
        for query_id, items in judged.grades.items()
        if (kept := {o: g for o, g in items.items() if o in catalogue})
        and any(g > 0 for g in kept.values())
    }
    queries = {query_id: text for query_id, text in judged.queries.items() if query_id in grades}
    limited = JudgedSet(judged.id, judged.name, queries, grades)
    return limited, len(judged.queries) - len(queries)


def sample_queries(query_ids: list[str], limit: int, seed: int) -> list[str]:
    """At most `limit` of `query_ids`, in their original order; the same ids and seed give the
    same sample, so a restarted task is judged on the same queries.

    Evaluation cost grows with the queries only a little (they are short, and the catalogue is
    encoded once whatever their number), but per-query bookkeeping and the score matrices grow
    with them; 1000 queries put the standard error of nDCG@10 near 0.01.
    """
    if len(query_ids) <= limit:
        return list(query_ids)
    chosen = set(random.Random(seed).sample(sorted(query_ids), limit))
    return [query_id for query_id in query_ids if query_id in chosen]


def refusal(prepared: Prepared, params: TrainParams) -> str | None:
    """Why a run on this data would be refused, or None; the same answer for preflight and run."""
    if prepared.sessions == 0:
        return "no search sessions to train on"
    if len(prepared.rows) < params.min_examples:
        return (
            f"too few training examples: {len(prepared.rows)}, at least {params.min_examples} "
            f"are needed ({prepared.figures()})"
        )
    if prepared.judged is not None and not prepared.judged.queries:
        return (
            f"evaluation set {prepared.judged.name!r} has no query with a relevant item in the "
            "catalogue, so the tuned model could not be judged on it"
        )
    if not prepared.queries and prepared.judged is None:
        return (
            "no validation session has a click on a catalogued item, so the tuned model could not "
            f"be compared with the source model ({prepared.figures()})"
        )
    return None
