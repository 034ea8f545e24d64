"""End to end on a synthetic world: does the click-based verdict point the right way?

200 queries with 20 candidates each and known binary relevance; a mediocre source model (true
relevance plus noise) shows its top 10; users click as the demo's `PositionBiasedClickModel`
says (examination 1/rank, 0.95 / 0.03 click chances). Propensities are estimated on the training
queries (regression-EM on the source's score), and three rankings of the validation queries'
shown lists are judged against the source: an oracle must come out `better`, a damaged ranking
`worse`, and rankings exactly as good as the source `inconclusive`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np
import pytest

from embtune.clickstream.counterfactual import shown_list_scores
from embtune.clickstream.propensity import Propensities, estimate_propensities
from embtune.clickstream.sessions import SearchSession
from embtune.clickstream.split import split_by_query
from embtune.demo.click_model import PositionBiasedClickModel
from embtune.training.verdict import decide, paired_bootstrap

QUERIES, CANDIDATES, SHOWN, SESSIONS_PER_QUERY = 200, 20, 10, 6


class World:
    """Relevance, the source's scores and the sessions it produced."""

    def __init__(
        self, click: Callable[[str, list[str], set[str]], tuple[str, ...]], seed: int = 7
    ) -> None:
        rng = np.random.default_rng(seed)
        self.relevant: dict[str, set[str]] = {}
        self.score: dict[tuple[str, str], float] = {}
        self.features: dict[tuple[str, str], list[float]] = {}
        self.sessions: list[SearchSession] = []
        for q in range(QUERIES):
            query = f"query {q}"
            items = [f"q{q}-d{i}" for i in range(CANDIDATES)]
            self.relevant[query] = {d for d in items if rng.random() < 0.2}
            offset = rng.normal(0, 1)  # query-level score shift, as cosine scores have
            for d in items:
                signal = 1.0 if d in self.relevant[query] else 0.0
                self.score[(query, d)] = offset + signal + rng.normal(0, 1)
            shown = sorted(items, key=lambda d: -self.score[(query, d)])[:SHOWN]
            level = np.mean([self.score[(query, d)] for d in shown])
            self.features.update({(query, d): [self.score[(query, d)] - level] for d in shown})
            for s in range(SESSIONS_PER_QUERY):
                session_id = f"{q:03d}-{s}"
                self.sessions.append(
                    SearchSession(
                        session_id,
                        query,
                        tuple(shown),
                        click(session_id, shown, self.relevant[query]),
                    )
                )
        self.train, self.validation = split_by_query(self.sessions, 0.3, seed=0)

    @functools.cached_property
    def propensities(self) -> Propensities:
        """Regression-EM on the training side; the feature is the source's score relative to the
        mean of its shown list, because raw scores shift from query to query and a raw score
        then says less about relevance than its rank does, which biases the deep ranks."""
        return estimate_propensities(self.train, features=self.features)

    def orders(self, rank: Callable[[SearchSession], list[str]]) -> dict[str, list[str]]:
        return {s.session_id: rank(s) for s in self.validation}

    def oracle(self, s: SearchSession) -> list[str]:
        return sorted(s.results, key=lambda d: d not in self.relevant[s.query])  # stable

    def damaged(self, s: SearchSession) -> list[str]:
        return list(reversed(s.results))

    def as_good(self, s: SearchSession) -> list[str]:
        """Swap neighbours of equal relevance: a different ranking with the same true DCG."""
        order = list(s.results)
        for i in range(0, len(order) - 1, 2):
            if (order[i] in self.relevant[s.query]) == (order[i + 1] in self.relevant[s.query]):
                order[i], order[i + 1] = order[i + 1], order[i]
        return order

    def true_dcg(self, orders: dict[str, list[str]]) -> float:
        """Mean over validation sessions of DCG@10 with the true relevance, for reference."""
        return float(
            np.mean(
                [
                    sum(
                        1 / math.log2(r + 1)
                        for r, d in enumerate(orders[s.session_id], start=1)
                        if d in self.relevant[s.query]
                    )
                    for s in self.validation
                ]
            )
        )


def demo_clicks(session_id: str, shown: list[str], relevant: set[str]) -> tuple[str, ...]:
    return PositionBiasedClickModel(seed=3).simulate(session_id, shown, relevant).clicks


def trust_clicks(session_id: str, shown: list[str], relevant: set[str]) -> tuple[str, ...]:
    """Stronger trust bias than the demo: an irrelevant item is clicked more the higher it is
    (eps- = 0.3, 0.15, 0.1, 0.075, ...), as real users do; examination 1/rank, eps+ 0.95."""
    rng = np.random.default_rng(int(session_id.replace("-", "")))
    return tuple(
        d
        for k, d in enumerate(shown, start=1)
        if rng.random() < 1 / k and rng.random() < (0.95 if d in relevant else 0.3 / k)
    )


@pytest.fixture(scope="module")
def demo_world() -> World:
    return World(demo_clicks)


def verdict(
    world: World,
    model: Callable[[SearchSession], list[str]],
    p: Propensities,
    normalized: bool = False,
) -> tuple:
    source = shown_list_scores(
        world.validation, world.orders(lambda s: list(s.results)), p, normalized=normalized
    )
    other = shown_list_scores(world.validation, world.orders(model), p, normalized=normalized)
    queries = sorted(source)
    interval = paired_bootstrap([source[q] for q in queries], [other[q] for q in queries])
    return decide(interval, metric="DCG@10 on shown lists")


def test_the_estimate_is_used_not_the_prior(demo_world: World) -> None:
    estimate = demo_world.propensities
    assert estimate.source == "estimated", estimate.reason
    assert len({s.query for s in demo_world.validation}) >= 40


@pytest.mark.parametrize("normalized", [False, True])
def test_an_oracle_ranking_is_better_than_the_source(demo_world: World, normalized: bool) -> None:
    result, sentence = verdict(demo_world, demo_world.oracle, demo_world.propensities, normalized)
    assert result == "better", sentence


@pytest.mark.parametrize("normalized", [False, True])
def test_a_reversed_ranking_is_worse_than_the_source(demo_world: World, normalized: bool) -> None:
    result, sentence = verdict(demo_world, demo_world.damaged, demo_world.propensities, normalized)
    assert result == "worse", sentence


@pytest.mark.parametrize("normalized", [False, True])
def test_the_source_against_itself_is_inconclusive(demo_world: World, normalized: bool) -> None:
    source = lambda s: list(s.results)  # noqa: E731
    result, sentence = verdict(demo_world, source, demo_world.propensities, normalized)
    assert result == "inconclusive", sentence


@pytest.mark.parametrize("normalized", [False, True])
def test_an_equally_good_ranking_is_inconclusive(demo_world: World, normalized: bool) -> None:
    orders = demo_world.orders(demo_world.as_good)
    assert orders != demo_world.orders(lambda s: list(s.results))
    assert demo_world.true_dcg(orders) == pytest.approx(
        demo_world.true_dcg(demo_world.orders(lambda s: list(s.results)))
    )
    result, sentence = verdict(demo_world, demo_world.as_good, demo_world.propensities, normalized)
    assert result == "inconclusive", sentence


def test_report_affine_against_plain_ips() -> None:
    """Printed (run with -s to read it), asserted only for the oracle's sign: each correction's
    delta against the true one. When eps- is the same at every rank, as in the demo's click
    model, the affine estimate is plain IPS with the same examination rescaled by
    1 / (eps+ - eps-) (the beta/alpha shift is one constant that every ranking pays alike), so
    both give the same verdict; the correction matters when users trust the top ranks more, as in
    `trust_clicks`, where plain IPS counts the noise clicks on the source's top items as relevance
    and so favours the source."""
    lines = []
    for name, click in (("demo clicks", demo_clicks), ("strong trust bias", trust_clicks)):
        world = World(click)
        source = world.true_dcg(world.orders(lambda s: list(s.results)))
        for model in (world.oracle, world.damaged, world.as_good):
            truth = world.true_dcg(world.orders(model)) - source
            for label, p, normalized in (
                ("affine", world.propensities, False),
                ("affine, per-query nDCG", world.propensities, True),
                ("IPS 1/rank", Propensities.prior(), False),
            ):
                result, sentence = verdict(world, model, p, normalized)
                lines.append(f"{name}, {model.__name__}, true {truth:+.3f}, {label}: {sentence}")
                if model == world.oracle:
                    assert result == "better", sentence
    print("\n" + "\n".join(lines))
