"""The paired bootstrap and the verdict on cases whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from embtune.training.verdict import Interval, decide, paired_bootstrap


@pytest.mark.parametrize(("difference", "verdict"), [(0.25, "better"), (-0.1, "worse")])
def test_constant_differences_collapse_the_interval_to_the_constant(
    difference: float, verdict: str
) -> None:
    before = [0.1 * i for i in range(30)]
    interval = paired_bootstrap(before, [b + difference for b in before])
    assert (interval.low, interval.delta, interval.high) == pytest.approx((difference,) * 3)
    assert interval.method == "point"
    assert decide(interval)[0] == verdict


def test_normal_differences_give_the_textbook_interval() -> None:
    """Mean 0.1, sd 0.5, n = 400: the interval should be close to mean ± 1.96 sd / sqrt(n)
    (±0.049); its half-width is checked within 15 %, its centre at the sample mean."""
    differences = np.random.default_rng(42).normal(0.1, 0.5, 400)
    interval = paired_bootstrap(np.zeros(400), differences, resamples=2000, seed=1)
    half_width = 1.96 * differences.std(ddof=1) / np.sqrt(400)
    assert interval.delta == pytest.approx(differences.mean())
    assert (interval.high - interval.low) / 2 == pytest.approx(half_width, rel=0.15)
    assert interval.low == pytest.approx(differences.mean() - half_width, abs=0.15 * half_width)
    assert interval.n == 400 and interval.confidence == 0.95 and interval.method == "BCa"


def test_pairing_removes_the_between_query_spread() -> None:
    """Scores that vary a lot between queries but improve every query a little: decisive."""
    before = np.random.default_rng(0).uniform(0, 1, 50)
    after = before + np.random.default_rng(1).uniform(0.01, 0.03, 50)
    verdict, sentence = decide(paired_bootstrap(before, after), metric="NDCG@10")
    assert verdict == "better"
    assert sentence.startswith("NDCG@10 +0.0") and sentence.endswith("over 50 queries: better")


def test_symmetric_zero_mean_differences_are_inconclusive() -> None:
    differences = [0.3, -0.3] * 30
    verdict, sentence = decide(paired_bootstrap([0.0] * 60, differences))
    assert verdict == "inconclusive"
    assert "the 95% interval includes 0" in sentence


def test_fewer_queries_than_the_minimum_are_too_few_to_decide() -> None:
    interval = paired_bootstrap([0.0] * 7, [1.0] * 7)
    assert interval.low > 0  # decisive on its face, yet too few queries
    assert decide(interval) == ("inconclusive", "only 7 queries (20 needed): too few to decide")
    assert decide(interval, min_queries=5)[0] == "better"


@pytest.mark.parametrize("n", [0, 1])
def test_degenerate_inputs_do_not_crash(n: int) -> None:
    interval = paired_bootstrap([0.0] * n, [0.5] * n)
    assert interval.n == n and interval.low == interval.high == interval.delta
    verdict, sentence = decide(interval, min_queries=1)
    assert verdict == "inconclusive" and "too few to decide" in sentence


def test_the_same_seed_gives_the_same_interval() -> None:
    differences = np.random.default_rng(3).normal(0.0, 1.0, 100)
    assert paired_bootstrap([0.0] * 100, differences, seed=5) == paired_bootstrap(
        [0.0] * 100, differences, seed=5
    )


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="length"):
        paired_bootstrap([1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="finite"):
        paired_bootstrap([1.0, float("nan")], [1.0, 2.0])
    with pytest.raises(ValueError, match="confidence"):
        paired_bootstrap([1.0], [1.0], confidence=95)


def test_interval_serialises_to_plain_json_types() -> None:
    interval = Interval(0.1, 0.05, 0.15, 40, 0.95, "BCa")
    assert interval.to_dict() == {
        "delta": 0.1,
        "low": 0.05,
        "high": 0.15,
        "n": 40,
        "confidence": 0.95,
        "method": "BCa",
    }
