"""Validation by query: no query on both sides, stable under order and growth."""

from __future__ import annotations

import random

import pytest

from embtune.clickstream.sessions import SearchSession
from embtune.clickstream.split import normalize_query, split_by_query


def make_sessions(queries: int, per_query: int, start: int = 0) -> list[SearchSession]:
    spellings = ["{q}", "  {Q} ", "{q}\t", "{Q}"]  # the same query as different users type it
    return [
        SearchSession(
            session_id=f"s{start + index:05d}-{repeat}",
            query=spellings[repeat % len(spellings)].format(
                q=f"red shoes {index}", Q=f"RED  Shoes {index}"
            ),
            results=("a", "b"),
            clicks=("a",),
        )
        for index in range(queries)
        for repeat in range(per_query)
    ]


def test_normalize_query_folds_case_width_and_whitespace() -> None:
    assert normalize_query("  Red\t\tSHOES \n") == "red shoes"
    assert normalize_query("\uff32\uff25\uff24 shoes") == "red shoes"  # full-width RED (NFKC)
    assert normalize_query("Straße") == normalize_query("STRASSE")  # casefold, not lower
    assert normalize_query("") == ""


def test_no_normalised_query_is_on_both_sides() -> None:
    train, validation = split_by_query(make_sessions(300, 4), 0.2, seed=7)
    train_keys = {normalize_query(s.query) for s in train}
    validation_keys = {normalize_query(s.query) for s in validation}
    assert train_keys and validation_keys
    assert not train_keys & validation_keys


def test_both_sides_are_sorted_by_session_id_and_cover_every_session() -> None:
    sessions = make_sessions(100, 3)
    train, validation = split_by_query(sessions, 0.3, seed=1)
    assert train == sorted(train, key=lambda s: s.session_id)
    assert validation == sorted(validation, key=lambda s: s.session_id)
    assert sorted(train + validation, key=lambda s: s.session_id) == sorted(
        sessions, key=lambda s: s.session_id
    )


def test_split_does_not_depend_on_input_order() -> None:
    sessions = make_sessions(200, 2)
    shuffled = list(sessions)
    random.Random(3).shuffle(shuffled)
    assert split_by_query(sessions, 0.2, seed=5) == split_by_query(shuffled, 0.2, seed=5)


def test_adding_sessions_keeps_every_query_on_its_side() -> None:
    old = make_sessions(200, 2)
    grown = old + make_sessions(200, 2, start=200) + make_sessions(50, 1)  # new and repeated
    _, before = split_by_query(old, 0.2, seed=5)
    _, after = split_by_query(grown, 0.2, seed=5)
    before_keys = {normalize_query(s.query) for s in before}
    after_keys = {normalize_query(s.query) for s in after}
    old_keys = {normalize_query(s.query) for s in old}
    assert after_keys & old_keys == before_keys


def test_fraction_of_queries_is_roughly_respected() -> None:
    """2000 queries at 0.2: the count is binomial, sd = sqrt(2000 * 0.2 * 0.8) ≈ 18, so ±60
    (over 3 sd) fails only for a broken hash."""
    _, validation = split_by_query(make_sessions(2000, 1), 0.2, seed=11)
    assert abs(len(validation) - 400) < 60


def test_extreme_fractions_put_everything_on_one_side() -> None:
    sessions = make_sessions(50, 2)
    assert split_by_query(sessions, 0.0, seed=0)[1] == []
    assert split_by_query(sessions, 1.0, seed=0)[0] == []


def test_the_seed_changes_the_split() -> None:
    sessions = make_sessions(200, 1)
    assert split_by_query(sessions, 0.5, seed=0) != split_by_query(sessions, 0.5, seed=1)


@pytest.mark.parametrize("fraction", [-0.1, 1.5])
def test_fraction_outside_unit_interval_is_refused(fraction: float) -> None:
    with pytest.raises(ValueError, match="validation_fraction"):
        split_by_query(make_sessions(3, 1), fraction, seed=0)
