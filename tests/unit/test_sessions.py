"""Pure transforms from search sessions to training and evaluation data."""

from __future__ import annotations

import pytest

from embtune.clickstream.sessions import (
    Example,
    ScoredPair,
    SearchSession,
    build_examples,
    build_pairs,
    click_confidence,
)
from embtune.clickstream.split import query_relevance


def session(
    session_id: str,
    results: str,
    clicks: str = "",
    query: str | None = None,
    irrelevant: bool = False,
) -> SearchSession:
    """Results and clicks as space-separated ids, to keep the cases readable."""
    return SearchSession(
        session_id=session_id,
        query=query or f"query {session_id}",
        results=tuple(results.split()),
        clicks=tuple(clicks.split()),
        irrelevant=irrelevant,
    )


def test_click_confidence_grows_with_rank_and_stays_bounded() -> None:
    values = [click_confidence(rank) for rank in range(1, 50)]
    assert values[0] == pytest.approx(0.5)
    assert values == sorted(values)
    assert all(0.5 <= value < 1.0 for value in values)
    assert click_confidence(None) == pytest.approx(0.5)


def test_clicked_item_is_paired_with_each_unclicked_item_shown_above_it() -> None:
    examples = build_examples([session("s", "a b c d", clicks="c")])
    weight = click_confidence(3)
    assert examples == [
        Example("query s", "c", "a", weight),
        Example("query s", "c", "b", weight),
    ]


def test_top_click_has_no_hard_negative() -> None:
    assert build_examples([session("s", "a b c", clicks="a")]) == [
        Example("query s", "a", None, click_confidence(1))
    ]


def test_other_clicked_items_are_never_negatives() -> None:
    examples = build_examples([session("s", "a b c", clicks="c a")])
    assert [(e.positive_id, e.negative_id) for e in examples] == [("c", "b"), ("a", None)]


def test_items_below_the_click_are_not_negatives() -> None:
    examples = build_examples([session("s", "a b c d", clicks="b")])
    assert {e.negative_id for e in examples} == {"a"}


def test_click_on_an_item_not_shown_is_a_positive_without_negatives() -> None:
    examples = build_examples([session("s", "a b", clicks="z")])
    assert examples == [Example("query s", "z", None, click_confidence(None))]


def test_irrelevant_and_unclicked_sessions_give_no_examples() -> None:
    sessions = [session("x", "a b", clicks="b", irrelevant=True), session("y", "a b")]
    assert build_examples(sessions) == []


def test_examples_do_not_depend_on_input_order() -> None:
    sessions = [session(f"s{i}", "a b c d", clicks="c a") for i in range(5)]
    assert build_examples(sessions) == build_examples(list(reversed(sessions)))


def test_pairs_grade_clicks_and_zero_the_skipped_items() -> None:
    pairs = build_pairs([session("s", "a b c d", clicks="c")])
    assert pairs == [
        ScoredPair("query s", "c", click_confidence(3)),
        ScoredPair("query s", "a", 0.0),
        ScoredPair("query s", "b", 0.0),
    ]


def test_irrelevant_session_scores_every_shown_result_zero() -> None:
    pairs = build_pairs([session("s", "a b c", clicks="b", irrelevant=True)])
    assert pairs == [ScoredPair("query s", object_id, 0.0) for object_id in "abc"]


def test_session_without_clicks_gives_no_pairs() -> None:
    assert build_pairs([session("s", "a b c")]) == []


def test_query_relevance_merges_a_query_and_skips_sessions_without_clicks() -> None:
    sessions = [
        session("s1", "a b c", clicks="b a", query="Shoes"),
        session("s2", "a b c", clicks="c", query="  shoes "),
        session("s3", "a b", query="boots"),
        session("s4", "a b", clicks="a", query="sandals", irrelevant=True),
    ]
    queries, relevant = query_relevance(sessions)
    assert queries == {"shoes": "Shoes"}
    assert relevant == {"shoes": {"a", "b", "c"}}
