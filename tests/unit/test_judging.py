"""The run's report from two hand-made catalogue rankings: which evidence decides the verdict,
graded NDCG, and what the report says when there is nothing to decide on."""

from __future__ import annotations

import math

import pytest
import torch

from embtune.clickstream.sessions import SearchSession
from embtune.domain.evaluation_sets import JudgedSet
from embtune.training.data import Prepared
from embtune.training.evaluation import CatalogueRanking
from embtune.training.ir_metrics import retrieval_metrics
from embtune.training.judging import CLICK_METRIC, judge

QUERIES = [f"query {n}" for n in range(30)]
SHOWN = 5  # items shown per session; the clicked one is shown at rank 4
CLICKED_AT = 4


def items(query: str) -> list[str]:
    return [f"{query}/item-{rank}" for rank in range(1, SHOWN + 1)]


def clicked(query: str) -> str:
    return items(query)[CLICKED_AT - 1]


def sessions() -> list[SearchSession]:
    return [
        SearchSession(f"{query}/s{n}", query, tuple(items(query)), (clicked(query),))
        for query in QUERIES
        for n in range(2)
    ]


def prepared(judged: JudgedSet | None = None, with_clicks: bool = True) -> Prepared:
    shown = sessions() if with_clicks else []
    catalogue = {object_id: object_id for query in QUERIES for object_id in items(query)}
    return Prepared(
        sessions=len(shown), clicks=len(shown), clicked_items_without_text=0,
        train_sessions=0, validation_sessions=len(shown), rows=[], catalogue=catalogue,
        queries={}, relevant={}, validation_queries_total=0,
        shown_sessions=shown, propensity_sessions=shown, judged=judged,
    )


def ranking(clicked_first: bool, judged: JudgedSet | None = None) -> CatalogueRanking:
    """A model that puts each query's clicked item first (or its rank-1 item first), both in its
    shown-list order and in the catalogue ranking of the judged queries."""
    up, down = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    kept: dict[str, torch.Tensor] = {}
    for query in QUERIES:
        favourite = clicked(query) if clicked_first else items(query)[0]
        for object_id in items(query):
            kept[object_id] = up if object_id == favourite else down
    hits: dict[str, list[str]] = {}
    if judged is not None:
        for query_id in judged.queries:
            answer = next(iter(judged.grades[query_id]))
            others = [f"filler-{n}" for n in range(4)]
            hits[f"j:{query_id}"] = [answer, *others] if clicked_first else [*others, answer]
    vectors = {f"t:{query}": up for query in QUERIES}
    return CatalogueRanking(hits=hits, query_vectors=vectors, kept=kept)


def judged_set() -> JudgedSet:
    queries = {f"j{n}": QUERIES[n] for n in range(25)}
    grades = {f"j{n}": {clicked(QUERIES[n]): 1} for n in range(25)}
    return JudgedSet("set-1", "golden", queries, grades)


def test_a_judged_set_decides_the_verdict_and_is_the_headline() -> None:
    golden = judged_set()
    report = judge(prepared(golden), ranking(False, golden), ranking(True, golden), seed=0)
    verdict = report["verdict"]
    assert verdict["basis"] == "judged" and verdict["verdict"] == "better"
    assert verdict["evaluation_set"] == {"id": "set-1", "name": "golden"}
    # before: the answer at rank 5 of the hits in every query; after: at rank 1
    expected = 1 - 1 / math.log2(6)
    assert verdict["delta"] == pytest.approx(expected)
    assert verdict["ci95"] == pytest.approx([expected, expected])  # every query moved alike
    assert verdict["queries"] == 25
    assert report["before"] == report["judged"]["before"]
    assert report["judged"]["per_query"]["better"] == 25
    # the clicks still get their own verdict, for comparison
    assert report["clicks"]["shown_lists"]["verdict"] == "better"
    assert "_interval" not in str(report)


def test_without_a_judged_set_the_debiased_clicks_decide() -> None:
    report = judge(prepared(), ranking(False), ranking(True), seed=0)
    verdict = report["verdict"]
    assert verdict["basis"] == "clicks" and verdict["metric"] == CLICK_METRIC
    assert verdict["verdict"] == "better" and verdict["ci95"][0] > 0
    assert verdict["queries"] == len(QUERIES)
    shown = report["clicks"]["shown_lists"]
    assert shown["sessions"] == 2 * len(QUERIES)
    # 60 clicks are too few to estimate position bias: the 1/rank prior, said so
    assert shown["propensities"]["source"] == "prior"
    # plain IPS with 1/rank: a click at rank 4 weighs 4; moved from place 4 to place 1
    assert shown["delta"] == pytest.approx(4 * (1 - 1 / math.log2(5)))
    # normalised per query (reported, not decided on)
    assert shown["ndcg"]["delta"] == pytest.approx(1 - 1 / math.log2(5))
    assert "judged" not in report


def test_the_same_model_on_both_sides_is_inconclusive() -> None:
    report = judge(prepared(), ranking(True), ranking(True), seed=0)
    assert report["verdict"]["verdict"] == "inconclusive"
    assert report["verdict"]["delta"] == 0


def test_a_worse_model_is_worse_on_clicks() -> None:
    report = judge(prepared(), ranking(True), ranking(False), seed=0)
    assert report["verdict"]["verdict"] == "worse"


def test_with_nothing_to_decide_on_the_verdict_says_so() -> None:
    report = judge(prepared(with_clicks=False), ranking(False), ranking(True), seed=0)
    assert report["verdict"]["verdict"] == "inconclusive"
    assert report["verdict"]["basis"] == "none"
    assert "nothing to decide on" in report["verdict"]["reason"]


def test_graded_ndcg_uses_the_grade_as_gain() -> None:
    relevant = {"q": {"a", "b"}}
    grades = {"q": {"a": 3, "b": 1}}
    metrics, ranks, per_query = retrieval_metrics(["q"], [["b", "x", "a"]], relevant, grades)
    dcg = 1 / math.log2(2) + 3 / math.log2(4)
    ideal = 3 / math.log2(2) + 1 / math.log2(3)
    assert metrics["ndcg@10"] == pytest.approx(dcg / ideal)
    assert per_query["q"]["ndcg@10"] == pytest.approx(dcg / ideal)
    assert ranks == {"q": 1}
    # binary relevance: grades of 1 score exactly as no grades
    binary = retrieval_metrics(["q"], [["b", "x", "a"]], relevant)[0]
    ones = retrieval_metrics(["q"], [["b", "x", "a"]], relevant, {"q": {"a": 1, "b": 1}})[0]
    assert ones == binary


def test_a_better_shown_list_is_withdrawn_when_the_catalogue_buries_the_clicked_items() -> None:
    """A model that orders the shown lists well but ranks them under the rest of the catalogue
    (as a collapsed model can) is not `better` on clicks alone."""
    data = prepared()
    clicked_queries = {query: query for query in QUERIES}
    data = Prepared(**{**data.__dict__, "queries": clicked_queries,
                       "relevant": {query: {clicked(query)} for query in QUERIES}})
    before, after = ranking(False), ranking(True)
    fillers = [f"filler-{n}" for n in range(20)]
    for query in QUERIES:
        before.hits[f"c:{query}"] = [clicked(query), *fillers]  # found first
        after.hits[f"c:{query}"] = [*fillers, clicked(query)]  # buried at 21
    report = judge(data, before, after, seed=0)
    shown = report["clicks"]["shown_lists"]
    assert shown["delta"] > 0 and shown["ci95"][0] > 0  # the shown lists alone say better
    assert report["clicks"]["full_catalogue"]["ci95"]["ndcg@10"][1] < 0
    assert report["verdict"]["verdict"] == "inconclusive"
    assert "whole catalogue" in report["verdict"]["reason"]
