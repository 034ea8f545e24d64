"""Trust-bias propensities recovered from simulated clicks whose true model is known.

Truth (the demo's click model): examination theta_k = 1/k, a relevant examined item is clicked
with eps+ = 0.95, an irrelevant one with eps- = 0.03, so beta_k / alpha_k = 0.03 / 0.92 ≈ 0.033
at every rank.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from embtune.clickstream.propensity import (
    ALPHA_FLOOR,
    Propensities,
    estimate_propensities,
    observations,
)
from embtune.clickstream.sessions import SearchSession

EPS_PLUS, EPS_MINUS = 0.95, 0.03
TRUE_THETA = np.array([1 / k for k in range(1, 11)])
TRUE_TRUST = EPS_MINUS / (EPS_PLUS - EPS_MINUS)  # beta_k / alpha_k


def clicks(rng: np.random.Generator, order: list[str], relevant: dict[str, bool]) -> tuple:
    return tuple(
        item
        for rank, item in enumerate(order, start=1)
        if rng.random() < 1 / rank and rng.random() < (EPS_PLUS if relevant[item] else EPS_MINUS)
    )


def randomised_rankings(queries: int = 500, sessions: int = 8) -> list[SearchSession]:
    """Every session shows the query's 10 candidates in a fresh random order: interventions."""
    rng = np.random.default_rng(0)
    found = []
    for q in range(queries):
        relevant = {f"d{i}": bool(rng.random() < 0.3) for i in range(10)}
        for s in range(sessions):
            order = [str(item) for item in rng.permutation(list(relevant))]
            found.append(
                SearchSession(f"q{q}-{s}", f"query {q}", tuple(order), clicks(rng, order, relevant))
            )
    return found


def fixed_rankings(queries: int = 800, sessions: int = 5):
    """Each query always shows the same list, ranked by a noisy score that is also the feature;
    relevance ~ Bernoulli(sigmoid(2 * score - 1)), so the regression is well specified."""
    rng = np.random.default_rng(1)
    found, features = [], {}
    for q in range(queries):
        offset = rng.normal(0, 1)  # queries differ in score level: what separates rank from score
        score = {f"d{i}": rng.normal(offset, 1.5) for i in range(10)}
        relevant = {d: bool(rng.random() < 1 / (1 + math.exp(1 - 2 * x))) for d, x in score.items()}
        order = sorted(score, key=lambda d: -score[d])
        features.update({(f"query {q}", d): [x] for d, x in score.items()})
        for s in range(sessions):
            found.append(
                SearchSession(f"q{q}-{s}", f"Query {q}", tuple(order), clicks(rng, order, relevant))
            )
    return found, features


def test_interventions_recover_examination_and_trust_bias() -> None:
    """Tolerances, about 3 standard errors of the click counts (500 queries x 8 sessions): rank 5
    gets ~240 relevant clicks, so theta_5 / theta_1 has a relative error near 7 %; hence 20 % at
    ranks 1-5 and 40 % at 6-10 (~100 relevant clicks each). beta / alpha rests on ~40 noise
    clicks per rank: ±0.04 per rank at 1-5, and ±0.015 for its mean over the ranks."""
    estimate = estimate_propensities(randomised_rankings())
    assert estimate.source == "estimated" and estimate.converged
    assert "intervention harvesting" in estimate.method
    theta = np.array(estimate.examination)
    assert theta[0] == 1.0
    np.testing.assert_allclose(theta[:5], TRUE_THETA[:5], rtol=0.20)
    np.testing.assert_allclose(theta[5:], TRUE_THETA[5:], rtol=0.40)
    trust = np.array(estimate.beta) / np.array(estimate.alpha)
    np.testing.assert_allclose(trust[:5], TRUE_TRUST, atol=0.04)
    assert trust.mean() == pytest.approx(TRUE_TRUST, abs=0.015)


def test_fixed_rankings_with_a_relevance_feature_recover_examination_and_trust_bias() -> None:
    """Regression-EM: a pair is only ever shown at one rank, the feature identifies the ranks.
    Tolerances are wider than with interventions because relevance must be inferred through the
    regression (800 queries x 5 sessions): 20 % for theta at ranks 1-5, 50 % at 6-10, ±0.06 per
    rank and ±0.02 on average for beta / alpha."""
    sessions, features = fixed_rankings()
    estimate = estimate_propensities(sessions, features=features)
    assert estimate.source == "estimated" and estimate.converged
    assert estimate.method == "EM: regression on features"
    theta = np.array(estimate.examination)
    np.testing.assert_allclose(theta[:5], TRUE_THETA[:5], rtol=0.20)
    np.testing.assert_allclose(theta[5:], TRUE_THETA[5:], rtol=0.50)
    trust = np.array(estimate.beta) / np.array(estimate.alpha)
    np.testing.assert_allclose(trust[:5], TRUE_TRUST, atol=0.06)
    assert trust.mean() == pytest.approx(TRUE_TRUST, abs=0.02)


def test_fixed_rankings_without_features_fall_back_to_the_prior() -> None:
    """Without interventions or features rank and relevance cannot be told apart."""
    sessions, _ = fixed_rankings(queries=100, sessions=3)
    estimate = estimate_propensities(sessions)
    assert estimate.source == "prior" and "0 usable clicks" in estimate.reason


def test_too_few_clicks_fall_back_to_the_prior_with_the_reason() -> None:
    estimate = estimate_propensities(randomised_rankings(queries=5, sessions=2), max_rank=10)
    assert estimate.source == "prior"
    assert "at least 100 are needed" in estimate.reason
    assert estimate == Propensities.prior(10, estimate.reason)


def test_prior_is_one_over_rank_without_trust_bias() -> None:
    prior = Propensities.prior(4)
    assert prior.examination == prior.alpha == (1.0, 0.5, 1 / 3, 0.25)
    assert prior.beta == (0.0,) * 4 and prior.max_rank == 4
    with pytest.raises(ValueError, match="max_rank"):
        Propensities.prior(0)


def test_alpha_never_falls_below_the_floor() -> None:
    """Ranks 3-4 only ever show irrelevant items: alpha there would be ~0, the floor holds it."""
    rng = np.random.default_rng(2)
    sessions = []
    for q in range(300):
        relevant = {f"g{q}": True, f"b{q}": False, f"j{q}": False, f"k{q}": False}
        for s in range(6):
            top = [f"g{q}", f"b{q}"] if rng.random() < 0.5 else [f"b{q}", f"g{q}"]
            order = top + ([f"j{q}", f"k{q}"] if rng.random() < 0.5 else [f"k{q}", f"j{q}"])
            sessions.append(
                SearchSession(f"{q}-{s}", f"q{q}", tuple(order), clicks(rng, order, relevant))
            )
    estimate = estimate_propensities(sessions, max_rank=4)
    assert estimate.source == "estimated" and estimate.max_rank == 4
    assert min(estimate.alpha[2:]) >= ALPHA_FLOOR * estimate.alpha[0] * (1 - 1e-9)


def test_ranks_without_usable_observations_are_cut_off_and_said() -> None:
    """A rank that only ever shows single-rank items without features cannot be estimated."""
    deep = [
        SearchSession(s.session_id, s.query, (*s.results[:3], f"fixed-{s.query}"), s.clicks)
        for s in randomised_rankings(queries=100, sessions=4)
    ]
    estimate = estimate_propensities(deep, max_rank=4, min_clicks=10)
    assert estimate.max_rank == 3 and "ranks 1-3" in estimate.reason


def test_observations_skip_duplicates_and_deep_ranks() -> None:
    session = SearchSession("s", "Q", ("a", "b", "a", "c"), ("c", "zz"))
    assert [(o.object_id, o.rank, o.clicked) for o in observations([session], max_rank=3)] == [
        ("a", 1, False),
        ("b", 2, False),
    ]


def test_features_of_different_lengths_are_refused() -> None:
    sessions = [SearchSession("s", "q", ("a", "b"), ("a",))]
    with pytest.raises(ValueError, match="same length"):
        estimate_propensities(sessions, features={("q", "a"): [1.0], ("q", "b"): [1.0, 2.0]})


def test_to_dict_is_json_serialisable() -> None:
    sessions, features = fixed_rankings(queries=200, sessions=2)
    document = estimate_propensities(sessions, features=features).to_dict()
    assert json.loads(json.dumps(document))["max_rank"] == 10
    assert isinstance(document["alpha"], list) and document["source"] == "estimated"
