"""The shown-list metric: hand-computed scores for plain IPS and the affine correction."""

from __future__ import annotations

import math

import pytest

from embtune.clickstream.counterfactual import (
    gain_at,
    relevance_estimates,
    session_score,
    shown_list_scores,
)
from embtune.clickstream.propensity import Propensities
from embtune.clickstream.sessions import SearchSession

G2 = 1 / math.log2(3)  # DCG gain of rank 2
G3 = 0.5  # DCG gain of rank 3


def hand_made(alpha: tuple[float, ...], beta: tuple[float, ...]) -> Propensities:
    theta = tuple(a / alpha[0] for a in alpha)
    return Propensities("estimated", "hand-made", "hand", theta, alpha, beta, alpha, beta)


def session(
    session_id: str, results: str, clicks: str = "", query: str = "red shoes", **kw: bool
) -> SearchSession:
    return SearchSession(session_id, query, tuple(results.split()), tuple(clicks.split()), **kw)


# ranks 1-3: a click at rank 1 is partly trust (beta_1 / alpha_1 = 0.4), deeper ones much less
AFFINE = hand_made((0.5, 0.25, 0.125), (0.2, 0.02, 0.0))
IPS = hand_made((0.5, 0.25, 0.125), (0.0, 0.0, 0.0))  # same examination, no trust bias


def test_gains() -> None:
    assert [gain_at(r, 3) for r in (1, 2, 3, 4)] == [1.0, pytest.approx(G2), 0.5, 0.0]
    assert [gain_at(r, 10, "reciprocal") for r in (1, 2, 4)] == [1.0, 0.5, 0.25]
    with pytest.raises(ValueError, match="gain"):
        gain_at(1, 10, "ndcg")  # type: ignore[arg-type]


def test_relevance_estimates_are_the_affine_correction_of_each_shown_item() -> None:
    estimates = relevance_estimates(session("s1", "a b c", "b"), AFFINE)
    # a: (0 - 0.2) / 0.5, b: (1 - 0.02) / 0.25, c: (0 - 0) / 0.125
    assert estimates == pytest.approx({"a": -0.4, "b": 3.92, "c": 0.0})
    assert relevance_estimates(session("s1", "a b c", "b"), IPS) == pytest.approx(
        {"a": 0.0, "b": 4.0, "c": 0.0}
    )


def test_ips_scores_by_hand_with_the_prior() -> None:
    prior = Propensities.prior(3)  # alpha = 1, 1/2, 1/3
    clicked_b = session("s1", "a b c", "b")
    assert session_score(clicked_b, ["b", "a", "c"], prior) == pytest.approx(2.0)
    assert session_score(clicked_b, ["a", "b", "c"], prior) == pytest.approx(2 * G2)
    assert session_score(clicked_b, ["a", "b", "c"], prior, gain="reciprocal") == pytest.approx(1)


def test_affine_scores_by_hand() -> None:
    clicked_b = session("s1", "a b c", "b")
    # b first: 3.92 * 1 + (-0.4) * G2 + 0 * G3
    assert session_score(clicked_b, ["b", "a", "c"], AFFINE) == pytest.approx(3.92 - 0.4 * G2)
    assert session_score(clicked_b, ["a", "b", "c"], AFFINE) == pytest.approx(-0.4 + 3.92 * G2)


def test_a_model_that_puts_the_clicked_item_first_scores_higher() -> None:
    clicked_c = session("s1", "a b c", "c")
    for propensities in (AFFINE, IPS, Propensities.prior(3)):
        first = session_score(clicked_c, ["c", "a", "b"], propensities)
        shown = session_score(clicked_c, ["a", "b", "c"], propensities)
        assert first > shown


def test_a_noise_click_at_rank_1_counts_less_with_the_trust_correction() -> None:
    """The source (a b c) against a model that moves the rank-1 click down (b a c)."""
    noise = session("s1", "a b c", "a")
    ips_lead = session_score(noise, ["a", "b", "c"], IPS) - session_score(
        noise, ["b", "a", "c"], IPS
    )
    affine_lead = session_score(noise, ["a", "b", "c"], AFFINE) - session_score(
        noise, ["b", "a", "c"], AFFINE
    )
    # IPS: a = 1 / 0.5 = 2; affine: a = 0.8 / 0.5 = 1.6, b = -0.02 / 0.25 = -0.08
    assert ips_lead == pytest.approx(2 * (1 - G2))
    assert affine_lead == pytest.approx((1.6 - 0.08 * G2) - (-0.08 + 1.6 * G2))
    assert affine_lead < ips_lead


def test_items_missing_from_the_order_follow_in_shown_order_and_unknown_ones_are_refused() -> None:
    clicked_c = session("s1", "a b c", "c")
    prior = Propensities.prior(3)
    assert session_score(clicked_c, ["c"], prior) == session_score(
        clicked_c, ["c", "a", "b"], prior
    )
    with pytest.raises(ValueError, match="did not show"):
        session_score(clicked_c, ["c", "z"], prior)


def test_items_shown_deeper_than_the_propensities_reach_are_not_candidates() -> None:
    deep = session("s1", "a b c d", "d")
    assert relevance_estimates(deep, Propensities.prior(3)).keys() == {"a", "b", "c"}
    assert session_score(deep, ["d", "a", "b", "c"], Propensities.prior(3)) == 0.0


def test_scores_are_averaged_per_normalised_query() -> None:
    sessions = [
        session("s1", "a b c", "b", query="Red Shoes"),
        session("s2", "a b c", "", query="red  shoes"),
        session("s3", "x y", "x", query="blue hat"),
    ]
    order = {"s1": ["b", "a", "c"], "s2": ["b", "a", "c"], "s3": ["x", "y"]}
    scores = shown_list_scores(sessions, order, Propensities.prior(3))
    assert scores == pytest.approx({"red shoes": (2.0 + 0.0) / 2, "blue hat": 1.0})


def test_irrelevant_marked_sessions_are_scored_like_any_silent_session() -> None:
    marked = session("s1", "a b c", irrelevant=True)
    silent = session("s1", "a b c")
    order = {"s1": ["c", "b", "a"]}
    assert shown_list_scores([marked], order, AFFINE) == shown_list_scores([silent], order, AFFINE)
    # -0.2/0.5 at shown rank 1 (now model rank 3), -0.02/0.25 at 2, 0 at 3
    assert shown_list_scores([marked], order, AFFINE)["red shoes"] == pytest.approx(
        -0.4 * G3 - 0.08 * G2
    )


def test_a_session_without_a_model_order_is_an_error() -> None:
    with pytest.raises(ValueError, match="no model order"):
        shown_list_scores([session("s1", "a b")], {}, Propensities.prior(3))
