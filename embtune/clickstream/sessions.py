"""Search sessions in, training and evaluation data out; pure functions, no IO.

Clicks are relative judgements: a click says the clicked item beat the unclicked items the user
read past to reach it, not that every unclicked item is irrelevant. Hence hard negatives are only
the unclicked items shown *above* a click (Joachims' "skip-above" rule), and a click counts as
stronger evidence the further down the list it happened (see `click_confidence`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class SearchSession:
    """One search: the query, the results in shown order (rank 1 first) and the clicks on them."""

    session_id: str
    query: str
    results: tuple[str, ...]
    clicks: tuple[str, ...]  # deduplicated, in click order
    irrelevant: bool = False  # marked as having no relevant result at all


@dataclass(frozen=True)
class Example:
    """A (query, clicked item, skipped-above item) triplet; no negative when none was skipped."""

    query: str
    positive_id: str
    negative_id: str | None
    weight: float


@dataclass(frozen=True)
class ScoredPair:
    """A graded (query, item) judgement in [0, 1] for pairwise/score-based losses."""

    query: str
    object_id: str
    score: float


# The weakest click (rank 1, where nearly everyone looks) still counts this much.
_MIN_CLICK_CONFIDENCE = 0.5


def click_confidence(rank: int | None) -> float:
    """How much a click at `rank` (1-based) says about relevance, in [0.5, 1).

    `1 - 0.5 / log2(rank + 1)`: the DCG discount `1 / log2(rank + 1)` stands in for the chance the
    user examined that position. Clicks at the top are partly position bias (everyone looks there),
    so they weigh least (rank 1: 0.50, rank 2: 0.68, rank 3: 0.75, rank 10: 0.86); a click deep in
    the list survived skipping the items above it. It is a bounded inverse-propensity weight: the
    raw `1 / propensity` would let one deep click dominate a batch. An unknown rank (a click on an
    item not in `results`) gets the minimum, as nothing was skipped to reach it.
    """
    if rank is None or rank < 1:
        return _MIN_CLICK_CONFIDENCE
    return 1.0 - _MIN_CLICK_CONFIDENCE / math.log2(rank + 1)


def _ordered(sessions: Iterable[SearchSession]) -> list[SearchSession]:
    # Outputs must not depend on the order storage happens to return sessions in.
    return sorted(sessions, key=lambda s: s.session_id)


def _ranks(session: SearchSession) -> dict[str, int]:
    """1-based rank of each shown item; a duplicated result keeps its first (highest) position."""
    ranks: dict[str, int] = {}
    for index, object_id in enumerate(session.results, start=1):
        ranks.setdefault(object_id, index)
    return ranks


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def build_examples(sessions: Iterable[SearchSession]) -> list[Example]:
    """Triplets for contrastive training: each click paired with each unclicked item above it.

    Irrelevant sessions give no positives, so nothing here; `build_pairs` uses them. Order: by
    session id, then click order, then rank of the negative.
    """
    examples: list[Example] = []
    for session in _ordered(sessions):
        if session.irrelevant:
            continue
        ranks = _ranks(session)
        clicked = set(session.clicks)
        for positive_id in _unique(session.clicks):
            rank = ranks.get(positive_id)
            weight = click_confidence(rank)
            skipped = [
                object_id
                for object_id in ranks
                if rank is not None and ranks[object_id] < rank and object_id not in clicked
            ]
            if not skipped:
                examples.append(Example(session.query, positive_id, None, weight))
            examples.extend(
                Example(session.query, positive_id, negative_id, weight) for negative_id in skipped
            )
    return examples


def build_pairs(sessions: Iterable[SearchSession]) -> list[ScoredPair]:
    """Graded pairs: click → `click_confidence(rank)`, skipped above a click → 0.0, every result of
    an irrelevant session → 0.0.

    Unclicked items below the deepest click get no pair: the user probably never read them.
    One pair per (session, item); repeated searches repeat their pairs, so frequent queries weigh
    more, as they do in the traffic being optimised. Order: by session id, then clicks in click
    order, then zero pairs in rank order.
    """
    pairs: list[ScoredPair] = []
    for session in _ordered(sessions):
        ranks = _ranks(session)
        if session.irrelevant:
            pairs.extend(ScoredPair(session.query, object_id, 0.0) for object_id in ranks)
            continue
        clicked = _unique(session.clicks)
        if not clicked:
            continue
        pairs.extend(
            ScoredPair(session.query, object_id, click_confidence(ranks.get(object_id)))
            for object_id in clicked
        )
        deepest = max((ranks[object_id] for object_id in clicked if object_id in ranks), default=0)
        pairs.extend(
            ScoredPair(session.query, object_id, 0.0)
            for object_id, rank in ranks.items()
            if rank < deepest and object_id not in session.clicks
        )
    return pairs
