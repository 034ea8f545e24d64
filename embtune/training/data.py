"""What a run trains and evaluates on, and why a run on it would be refused; pure, no torch.

Preflight and the run compute both the same way, here, so preflight's figures and reason are the
run's. The data comes through `ClickData`, two read methods any training-data object has (the
plugins' `TrainingData` is one), so this package needs nothing from the layers above it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Protocol

from embtune.clickstream.sessions import SearchSession, relevance, split_sessions
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

    def figures(self) -> str:
        return (
            f"{self.sessions} sessions, {self.clicks} clicks, {len(self.rows)} training examples, "
            f"{self.validation_sessions} validation sessions, "
            f"{self.clicked_items_without_text} clicked items with no text"
        )


def prepare(
    data: ClickData, params: SentenceTransformerParams, loss: LossKind | LossStrategy
) -> Prepared:
    """Split the sessions, build the loss's rows from the training side and the judged queries
    from the validation side."""
    sessions = data.sessions()
    catalogue = data.item_texts()
    train, validation = split_sessions(sessions, params.validation_fraction, params.seed)
    rows = loss_strategy(loss).rows(train, catalogue)
    clicked = {object_id for session in sessions for object_id in session.clicks}
    queries, relevant = relevance(validation)
    # A click on an item the catalogue lacks cannot be retrieved by any model; judging only
    # catalogued items keeps such gaps from diluting both sides of the comparison.
    relevant = {
        query_id: found
        for query_id, ids in relevant.items()
        if (found := {object_id for object_id in ids if object_id in catalogue})
    }
    evaluated = sample_queries(list(relevant), params.eval_max_queries, params.seed)
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
    )


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
    if not prepared.queries:
        return (
            "no validation session has a click on a catalogued item, so the tuned model could not "
            f"be compared with the source model ({prepared.figures()})"
        )
    return None
