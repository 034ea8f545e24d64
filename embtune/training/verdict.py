"""Is the tuned model better, worse, or can the data not tell? A paired bootstrap over queries.

Both models are scored on the same queries, so the evidence is the per-query differences
(after - before); resampling those keeps the pairing, which removes the between-query variance
that dwarfs the effect (a paired test). The query is the unit because sessions of one query are
correlated. No torch; scipy is imported where it is used.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

Verdict = Literal["better", "worse", "inconclusive"]


@dataclass(frozen=True)
class Interval:
    """Mean difference (after - before) over `n` queries with its bootstrap confidence interval.

    `method` says how the interval was made: "BCa", "percentile" (BCa could not be computed),
    "point" (every difference equal, so every resample is too) or "none" (fewer than two queries:
    nothing to resample, low = high = delta).
    """

    delta: float
    low: float
    high: float
    n: int
    confidence: float
    method: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def paired_bootstrap(
    before: Sequence[float],
    after: Sequence[float],
    *,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> Interval:
    """Bootstrap interval of the mean per-query difference, `after[i] - before[i]`.

    BCa (Efron, "Better Bootstrap Confidence Intervals", JASA 1987) rather than percentile:
    per-query differences of click metrics are skewed (most queries barely move, a few carry large
    inverse-propensity weights), and BCa corrects the percentile interval for skew and bias,
    being second-order accurate where the percentile one is first-order. Seeded, so a rerun gives
    the same interval. With every difference equal the interval is that point; with fewer than
    two queries there is nothing to resample and `decide` calls it too few.
    """
    import numpy as np
    from scipy import stats

    if len(before) != len(after):
        raise ValueError(f"before and after differ in length: {len(before)} != {len(after)}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    differences = np.asarray(after, dtype=float) - np.asarray(before, dtype=float)
    if not np.isfinite(differences).all():
        raise ValueError("scores must be finite numbers")
    n = len(differences)
    if n == 0:
        return Interval(0.0, 0.0, 0.0, 0, confidence, "none")
    delta = float(differences.mean())
    if n < 2:
        return Interval(delta, delta, delta, n, confidence, "none")
    if np.ptp(differences) <= 1e-12 * max(1.0, abs(delta)):
        return Interval(delta, delta, delta, n, confidence, "point")
    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():
            # BCa warns and answers NaN when the resamples are too alike to estimate its
            # acceleration; the percentile interval is the fallback then
            warnings.simplefilter("ignore")
            result = stats.bootstrap(
                (differences,),
                np.mean,
                n_resamples=resamples,
                confidence_level=confidence,
                method=method,
                rng=np.random.default_rng(seed),
            )
        low, high = (float(value) for value in result.confidence_interval)
        if math.isfinite(low) and math.isfinite(high):
            return Interval(delta, min(low, delta), max(high, delta), n, confidence, method)
    return Interval(delta, delta, delta, n, confidence, "point")


def decide(
    interval: Interval, *, min_queries: int = 20, metric: str = "score"
) -> tuple[Verdict, str]:
    """`better` only when the whole interval is above 0, `worse` only when it is below 0,
    otherwise (or with fewer than `min_queries` queries, or two) `inconclusive`; with one sentence
    a person can read, naming `metric`.

    Requiring the interval to exclude 0 is what keeps a wrong-sign decisive verdict rare (about
    (1 - confidence) / 2 of the time when the models are truly equal).
    """
    figures = (
        f"{metric} {interval.delta:+.3f} [{interval.low:+.3f}, {interval.high:+.3f}] "
        f"over {interval.n} {'query' if interval.n == 1 else 'queries'}"
    )
    needed = max(min_queries, 2)
    if interval.n < needed:
        count = (
            "no queries"
            if interval.n == 0
            else f"only {interval.n} " + ("query" if interval.n == 1 else "queries")
        )
        return "inconclusive", f"{count} ({needed} needed): too few to decide"
    if interval.low > 0:
        return "better", f"{figures}: better"
    if interval.high < 0:
        return "worse", f"{figures}: worse"
    level = f"{interval.confidence * 100:g}%"
    return "inconclusive", f"{figures}; the {level} interval includes 0: inconclusive"
