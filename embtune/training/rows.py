"""Training rows for the sentence-transformers losses, from clickstream evidence; pure, no torch.

Kept apart from `trainer.py` so preflight can count the rows a run would train on without
importing torch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from embtune.clickstream.sessions import Example, ScoredPair

Row = Mapping[str, Any]


def mnrl_rows(examples: Iterable[Example], item_texts: Mapping[str, str]) -> list[dict[str, Any]]:
    """(anchor, positive, negative) rows; `negative` None where the session skipped nothing.

    A positive whose text is unknown is dropped; an unknown negative degrades its row to a pair.
    Identical rows are kept once, since repeating them only re-weights the same evidence.
    """
    rows: dict[tuple[str, str, str | None], dict[str, Any]] = {}
    for example in examples:
        positive = item_texts.get(example.positive_id)
        if positive is None:
            continue
        negative = item_texts.get(example.negative_id) if example.negative_id else None
        key = (example.query, positive, negative)
        rows.setdefault(key, {"anchor": example.query, "positive": positive, "negative": negative})
    return list(rows.values())


def margin_rows(pairs: Iterable[ScoredPair], item_texts: Mapping[str, str]) -> list[dict[str, Any]]:
    """(sentence1, sentence2, score) rows for CoSENT; pairs with an unknown item are dropped."""
    return [
        {"sentence1": pair.query, "sentence2": item_texts[pair.object_id], "score": pair.score}
        for pair in pairs
        if pair.object_id in item_texts
    ]
