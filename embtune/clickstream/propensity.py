"""How likely a user is to click an item at each rank, relevant or not, estimated from the clicks.

A click at rank k mixes three things: whether the user looked there (examination, theta_k),
whether the item is relevant (gamma_qd), and how much the user trusts the ranking (a relevant
examined item is clicked with eps+_k, an irrelevant one with eps-_k > 0: *trust bias*, Agarwal,
Wang, Li, Bendersky, Najork, "Addressing Trust Bias for Unbiased Learning-to-Rank", WWW 2019).
Together that is affine in relevance (Vardasbi, Oosterhuis, de Rijke, "When Inverse Propensity
Scoring does not Work: Affine Corrections for Unbiased Learning to Rank", CIKM 2020):

    P(click | rank k, q, d) = alpha_k * gamma_qd + beta_k,
    alpha_k = theta_k * (eps+_k - eps-_k),   beta_k = theta_k * eps-_k.

The parameters come from EM with each (query, item) pair's relevance as the latent variable,
shared by all sessions that showed the pair. Something must tell a rank effect from a relevance
effect:
- an item shown for the same query at different ranks (e.g. batches logged under different model
  versions) compares those ranks directly, its relevance being the same at both (intervention
  harvesting, Agarwal, Zaitsev, Wang, Li, Najork, Joachims, "Estimating Position Bias without
  Intrusive Interventions", WSDM 2019);
- an item only ever shown at one rank (the usual case: a query gets the same list from the same
  model) gets its prior relevance from a logistic regression on caller-given features, such as
  the source model's score, fitted in the M-step (regression-EM, Wang, Golbandi, Bendersky,
  Metzler, Najork, "Position Bias Estimation for Unbiased Learning to Rank in Personal Search",
  WSDM 2018). Features vary within a rank across queries, which is what separates the rank from
  relevance, so they should be comparable across queries: a raw cosine score that shifts from
  query to query says less about relevance than the rank does and biases the deep ranks; the
  score relative to the mean score of the query's shown list works better.
An item at one rank with no features says nothing about ranks and is left out.

Only theta_k * eps+_k and theta_k * eps-_k are identified, so `examination` is reported relative to
rank 1 under the usual assumption that eps+ does not depend on rank; the correction itself uses
alpha and beta, which need no such assumption. Pure numpy, no IO.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal, NamedTuple

import numpy as np

from embtune.clickstream.sessions import SearchSession
from embtune.clickstream.split import normalize_query

# alpha_k never falls below this share of alpha_1, so the correction never divides by ~0 at a
# rank where the estimate collapsed for lack of clicks.
ALPHA_FLOOR = 0.01
_EPS = 1e-9


class Observation(NamedTuple):
    """One shown item in one session: (normalised query, item, 1-based rank, clicked)."""

    query_key: str
    object_id: str
    rank: int
    clicked: bool


@dataclass(frozen=True)
class Propensities:
    """Per-rank click model; index 0 is rank 1. `source` says whether it was estimated.

    An estimate covers ranks 1 to the deepest rank with usable observations, which can be less
    than the `max_rank` asked for; the counterfactual metric then ignores items shown deeper.
    """

    source: Literal["estimated", "prior"]
    reason: str
    method: str
    examination: tuple[float, ...]  # theta_k, theta_1 = 1
    alpha: tuple[float, ...]  # click probability gained by relevance at rank k
    beta: tuple[float, ...]  # click probability of an irrelevant item at rank k
    eps_plus: tuple[float, ...]
    eps_minus: tuple[float, ...]
    observations: int = 0
    sessions: int = 0
    clicks: int = 0
    iterations: int = 0
    converged: bool = False

    @property
    def max_rank(self) -> int:
        return len(self.alpha)

    @classmethod
    def prior(cls, max_rank: int = 10, reason: str = "no estimate asked for") -> Propensities:
        """Examination 1/rank and no trust bias (alpha_k = 1/k, beta_k = 0): plain IPS with the
        classic position-based model, for when the clicks are too few to estimate anything."""
        if max_rank < 1:
            raise ValueError(f"max_rank must be at least 1, got {max_rank}")
        theta = tuple(1.0 / rank for rank in range(1, max_rank + 1))
        zeros = (0.0,) * max_rank
        return cls("prior", reason, "prior 1/rank", theta, theta, zeros, (1.0,) * max_rank, zeros)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "max_rank": self.max_rank} | {
            name: list(getattr(self, name))
            for name in ("examination", "alpha", "beta", "eps_plus", "eps_minus")
        }


def observations(sessions: Iterable[SearchSession], max_rank: int = 10) -> list[Observation]:
    """Every item shown at rank ≤ `max_rank`, with whether it was clicked; a duplicated result
    keeps its first rank, and a click on an item not shown has no rank and is left out."""
    found: list[Observation] = []
    for session in sorted(sessions, key=lambda s: s.session_id):
        key = normalize_query(session.query)
        clicked = set(session.clicks)
        seen: set[str] = set()
        for rank, object_id in enumerate(session.results[:max_rank], start=1):
            if object_id not in seen:
                seen.add(object_id)
                found.append(Observation(key, object_id, rank, object_id in clicked))
    return found


def estimate_propensities(
    sessions: Iterable[SearchSession],
    *,
    features: Mapping[tuple[str, str], Sequence[float]] | None = None,
    max_rank: int = 10,
    min_clicks: int = 100,
    max_iterations: int = 500,
    tolerance: float = 1e-5,
    monotone: bool = True,
) -> Propensities:
    """Trust-bias propensities by EM, or `Propensities.prior` with the reason when the data
    cannot support an estimate.

    `features` maps (query, object id) to a fixed-length vector describing the pair (e.g. the
    source model's cosine score, minus the mean score of the query's shown list); it is what
    identifies the ranks when each pair was shown at one rank only. Queries are matched after
    `normalize_query`. Converged means the per-rank click probabilities moved less than
    `tolerance` in the last iteration.

    `monotone` constrains both per-rank click probabilities (relevant and irrelevant) to be
    non-increasing in rank: users look less and trust less further down. Each M-step then takes
    the weighted isotonic regression of the per-rank rates (pool-adjacent-violators), which is the
    constrained maximum-likelihood update for binomial rates. Deep ranks get few clicks, and
    without it their noisy rates turn into large, wrong inverse weights. Turn it off for layouts
    where a lower slot is seen more (grids, a sticky last result).
    """
    if max_rank < 1:
        raise ValueError(f"max_rank must be at least 1, got {max_rank}")
    sessions = list(sessions)
    keyed = {(normalize_query(query), item): v for (query, item), v in (features or {}).items()}
    cells = _Cells.build(observations(sessions, max_rank), keyed)
    if cells is None or cells.clicks.sum() < min_clicks:
        clicks = 0 if cells is None else int(cells.clicks.sum())
        return Propensities.prior(
            max_rank,
            f"{clicks} usable clicks, at least {min_clicks} are needed to estimate position bias "
            "(an item must appear at two ranks for one query, or come with features)",
        )
    p_rel, p_irr, iterations, converged = _em(cells, max_iterations, tolerance, monotone)
    if p_rel[0] <= p_irr[0] + _EPS:
        return Propensities.prior(
            max_rank, "the clicks did not separate relevant from irrelevant items at rank 1"
        )
    alpha = np.maximum(p_rel - p_irr, ALPHA_FLOOR * (p_rel[0] - p_irr[0]))
    theta = np.clip(p_rel / p_rel[0], _EPS, 1.0)
    return Propensities(
        source="estimated",
        reason=f"estimated from {int(cells.clicks.sum())} clicks at ranks 1-{cells.ranks}",
        method=cells.method,
        examination=_floats(theta),
        alpha=_floats(alpha),
        beta=_floats(p_irr),
        eps_plus=_floats(np.full_like(theta, p_rel[0])),
        eps_minus=_floats(np.minimum(p_irr / theta, 1.0)),
        observations=int(cells.shown.sum()),
        sessions=len({s.session_id for s in sessions if s.results}),
        clicks=int(cells.clicks.sum()),
        iterations=iterations,
        converged=converged,
    )


def _floats(values: np.ndarray) -> tuple[float, ...]:
    return tuple(float(value) for value in values)


@dataclass(frozen=True)
class _Cells:
    """Observations pooled by (pair, rank): `shown` and `clicks` counts per cell."""

    pair: np.ndarray  # cell -> pair index
    rank: np.ndarray  # cell -> 0-based rank
    shown: np.ndarray
    clicks: np.ndarray
    own: np.ndarray  # pair -> has its own relevance parameter (seen at two ranks or more)
    design: np.ndarray | None  # pair -> standardised features with an intercept column
    featured: np.ndarray  # pair -> has features (the regression is fitted on these only)
    ranks: int
    method: str

    @classmethod
    def build(
        cls,
        found: list[Observation],
        features: Mapping[tuple[str, str], Sequence[float]] | None,
    ) -> _Cells | None:
        counts: dict[tuple[str, str], dict[int, list[int]]] = {}
        for obs in found:
            cell = counts.setdefault((obs.query_key, obs.object_id), {}).setdefault(
                obs.rank, [0, 0]
            )
            cell[0] += 1
            cell[1] += int(obs.clicked)
        features = features or {}
        # A pair at one rank with no features has a free relevance that explains its clicks
        # whatever the ranks' parameters are: no information, so it is left out.
        kept = [key for key, by_rank in counts.items() if len(by_rank) > 1 or key in features]
        if not kept:
            return None
        rows = [
            (index, rank - 1, shown, clicks)
            for index, key in enumerate(kept)
            for rank, (shown, clicks) in counts[key].items()
        ]
        pair, rank, shown, clicks = (np.array(column) for column in zip(*rows, strict=True))
        own = np.array([len(counts[key]) > 1 for key in kept])
        featured = np.array([key in features for key in kept])
        design = _design(kept, features) if featured.any() else None
        method = "EM: " + " + ".join(
            name
            for name, used in (
                ("intervention harvesting", own.any()),
                ("regression on features", design is not None and not own.all()),
            )
            if used
        )
        ranks = int(rank.max()) + 1
        return cls(pair, rank, shown, clicks, own, design, featured, ranks, method)


def _design(
    kept: list[tuple[str, str]], features: Mapping[tuple[str, str], Sequence[float]]
) -> np.ndarray | None:
    widths = {len(features[key]) for key in kept if key in features}
    if len(widths) != 1:
        raise ValueError(f"features must all have the same length, got lengths {sorted(widths)}")
    (width,) = widths
    raw = np.array([features.get(key, [np.nan] * width) for key in kept], dtype=float)
    if not np.isfinite(raw[~np.isnan(raw).all(axis=1)]).all():
        raise ValueError("features must be finite numbers")
    mean = np.nanmean(raw, axis=0)
    scale = np.nanstd(raw, axis=0)
    standard = (raw - mean) / np.where(scale > 0, scale, 1.0)
    # a pair without features (an own-parameter pair) gets a placeholder row and zero weight
    standard = np.nan_to_num(standard, nan=0.0)
    return np.column_stack([np.ones(len(kept)), standard])


def _em(
    cells: _Cells, max_iterations: int, tolerance: float, monotone: bool
) -> tuple[np.ndarray, np.ndarray, int, bool]:
    """EM with one latent relevance per (query, item) pair; returns per-rank P(click | relevant),
    P(click | irrelevant), the iterations run and whether it converged.

    The pair's relevance is shared by all its sessions (as in judged data; users' disagreement
    goes into eps+ and eps-), with a prior from the regression when the pair has features and
    the pooled share of relevant pairs otherwise. A free relevance per pair, fitted by maximum
    likelihood, would be an incidental parameter (Neyman & Scott, Econometrica 1948): with a
    handful of sessions per pair it biases the ranks' estimates however many pairs there are.
    """
    ranks = np.arange(1, cells.ranks + 1, dtype=float)
    p_rel = 0.9 / ranks  # start from the classic 1/rank examination, little trust bias
    p_irr = 0.05 / ranks
    pairs = len(cells.own)
    prior = np.full(pairs, 0.5)
    coef = None if cells.design is None else np.zeros(cells.design.shape[1])
    unclicked = cells.shown - cells.clicks
    for iteration in range(1, max_iterations + 1):
        # E-step: posterior relevance of each pair given all its clicks and skips
        a = np.clip(p_rel[cells.rank], _EPS, 1 - _EPS)
        b = np.clip(p_irr[cells.rank], _EPS, 1 - _EPS)
        log_rel = np.bincount(
            cells.pair, cells.clicks * np.log(a) + unclicked * np.log1p(-a), pairs
        )
        log_irr = np.bincount(
            cells.pair, cells.clicks * np.log(b) + unclicked * np.log1p(-b), pairs
        )
        odds = np.log(np.clip(prior, _EPS, 1 - _EPS)) - np.log1p(-np.clip(prior, _EPS, 1 - _EPS))
        relevant = _sigmoid(odds + log_rel - log_irr)
        # M-step: per-rank click probabilities given relevance, and the relevance prior
        r = relevant[cells.pair]
        shown_rel = np.bincount(cells.rank, r * cells.shown, cells.ranks)
        shown_irr = np.bincount(cells.rank, (1 - r) * cells.shown, cells.ranks)
        new_rel = np.bincount(cells.rank, r * cells.clicks, cells.ranks) / np.maximum(
            shown_rel, _EPS
        )
        new_irr = np.bincount(cells.rank, (1 - r) * cells.clicks, cells.ranks) / np.maximum(
            shown_irr, _EPS
        )
        if monotone:
            new_rel = _non_increasing(new_rel, shown_rel)
            new_irr = _non_increasing(new_irr, shown_irr)
        pooled = float(relevant[~cells.featured].mean()) if (~cells.featured).any() else 0.5
        if cells.design is not None and coef is not None:
            coef = _logistic(cells.design, relevant, cells.featured.astype(float), coef)
            prior = np.where(cells.featured, _sigmoid(cells.design @ coef), pooled)
        else:
            prior = np.full(pairs, pooled)
        change = max(np.abs(new_rel - p_rel).max(), np.abs(new_irr - p_irr).max())
        p_rel, p_irr = new_rel, new_irr
        if change < tolerance:
            return p_rel, p_irr, iteration, True
    return p_rel, p_irr, max_iterations, False


def _non_increasing(rates: np.ndarray, weights: np.ndarray) -> np.ndarray:
    from scipy.optimize import isotonic_regression

    fitted = isotonic_regression(rates, weights=np.maximum(weights, _EPS), increasing=False)
    return np.asarray(fitted.x)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -30.0, 30.0)))


def _logistic(
    design: np.ndarray, target: np.ndarray, weight: np.ndarray, coef: np.ndarray, steps: int = 3
) -> np.ndarray:
    """A few Newton (IRLS) steps of a weighted logistic regression on soft targets, warm-started
    from the last EM iteration; a tiny ridge keeps it finite on separable data."""
    ridge = 1e-6 * np.eye(len(coef))
    for _ in range(steps):
        p = _sigmoid(design @ coef)
        gradient = design.T @ (weight * (target - p)) - ridge @ coef
        hessian = (design * (weight * p * (1 - p))[:, None]).T @ design + ridge
        coef = coef + np.linalg.solve(hessian, gradient)
    return coef
