"""The task report in the terminal: the verdict leads in its colour with the figure, interval
and basis it rests on; click figures say which are debiased and which favour the source model;
old tasks (flat before/after only) still render, without a verdict."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from embtune.console_report import (
    click_table,
    metrics_table,
    promotion_line,
    report_tables,
    verdict_lines,
    verdict_panel,
)

FOUR = ("ndcg@10", "mrr@10", "recall@10", "recall@100")


def figures(base: float, step: float) -> dict[str, float]:
    return {name: round(base + i * step, 4) for i, name in enumerate(FOUR)}


def render(*parts: Any) -> tuple[str, str]:
    """What a terminal shows, as plain text with runs of whitespace made one space (Rich wraps
    a table's title to the table's width), and as ANSI-styled text."""
    console = Console(record=True, width=200, force_terminal=True, color_system="standard")
    for part in parts:
        console.print(part)
    plain = console.export_text(styles=False, clear=False)
    return " ".join(plain.split()), console.export_text(styles=True)


def judged_better() -> dict[str, Any]:
    before, after = figures(0.40, 0.1), figures(0.78, 0.05)
    delta = {k: round(after[k] - before[k], 4) for k in FOUR}
    golden = {"id": "es_1", "name": "shop golden"}
    return {
        "before": before, "after": after, "delta": delta,
        "per_query": {"better": 40, "worse": 3, "same": 17, "worst_regressions": [
            {"query": "[bold]brolly[/bold]", "rank_before": 1, "rank_after": 4}]},
        "verdict": {"verdict": "better", "basis": "judged", "metric": "ndcg@10",
                    "before": 0.40, "after": 0.781, "delta": 0.381, "ci95": [0.301, 0.452],
                    "queries": 60, "evaluation_set": golden,
                    "reason": "judged NDCG@10 +0.381 [+0.301, +0.452] over 60 queries: better"},
        "judged": {"evaluation_set": golden, "queries": 60, "before": before, "after": after,
                   "queries_without_catalogued_items": 2,
                   "delta": delta, "ci95": {k: [0.1, 0.5] for k in FOUR}},
        "clicks": {
            "split": "query",
            "shown_lists": {"metric": "click_dcg@10", "before": 0.21, "after": 0.25,
                            "delta": 0.04, "ci95": [0.01, 0.07], "queries": 30,
                            "sessions": 180, "propensities": {"source": "estimated",
                                                              "method": "em", "reason": None}},
            "full_catalogue": {"before": figures(0.3, 0.1), "after": figures(0.5, 0.1),
                               "delta": {k: 0.2 for k in FOUR},
                               "note": "favours the source model: clicks exist only where it "
                                       "showed the item"},
        },
        "promotion": {"alias": "production", "promote_if": "better", "promoted": True,
                      "reason": "verdict better"},
    }


def clicks_only(verdict: str, delta: float, ci: list[float]) -> dict[str, Any]:
    full = {"before": figures(0.3, 0.1), "after": figures(0.28, 0.1),
            "delta": {k: -0.02 for k in FOUR}, "ci95": {k: [-0.04, 0.0] for k in FOUR},
            "note": "favours the source model: clicks "
            "exist only where it showed the item"}
    return {
        "before": full["before"], "after": full["after"], "delta": full["delta"],
        "verdict": {"verdict": verdict, "basis": "clicks", "metric": "click_dcg@10",
                    "before": 0.2, "after": 0.2 + delta, "delta": delta, "ci95": ci,
                    "queries": 25, "evaluation_set": None,
                    "reason": f"click DCG@10 over 25 queries: {verdict}"},
        "clicks": {"split": "query", "full_catalogue": full, "shown_lists": {
            "metric": "click_dcg@10", "before": 0.2, "after": 0.2 + delta, "delta": delta,
            "ci95": ci, "queries": 25, "sessions": 150, "propensities": {
                "source": "prior", "method": "1/rank", "examination": [1.0, 0.5, 0.33],
                "alpha": [], "beta": [], "reason": "too few sessions to estimate"}}},
        "promotion": {"alias": "production", "promote_if": "better", "promoted": False,
                      "reason": f"verdict {verdict}, not better"},
    }


def test_a_judged_better_verdict_leads_in_green_with_its_interval_and_set() -> None:
    metrics = judged_better()
    text, styled = render(verdict_panel(metrics))
    assert "BETTER ndcg@10 +0.3810 95% [+0.3010, +0.4520] (0.4000 → 0.7810)" in text
    assert "basis: judged set shop golden · 60 queries" in text
    assert "propensities" not in text  # a judged verdict does not rest on clicks
    assert "\x1b[1;32mBETTER" in styled  # bold green
    assert "\x1b[32m+0.3810" in styled


def test_a_click_verdict_says_debiased_and_names_the_propensities_used() -> None:
    text, styled = render(verdict_panel(clicks_only("worse", -0.05, [-0.09, -0.01])))
    assert "WORSE click_dcg@10 -0.0500 95% [-0.0900, -0.0100]" in text
    assert "basis: clicks, debiased (shown lists, split by query) · 25 queries" in text
    assert ("propensities: prior (1/rank) θ 1.00 0.50 0.33; too few sessions to estimate"
            in text)
    assert "\x1b[1;31mWORSE" in styled  # bold red


def test_an_inconclusive_verdict_is_yellow_and_its_alias_is_left_alone() -> None:
    metrics = clicks_only("inconclusive", 0.01, [-0.02, 0.04])
    text, styled = render(*verdict_lines(metrics))
    assert "INCONCLUSIVE click_dcg@10 +0.0100 95% [-0.0200, +0.0400]" in text
    assert "\x1b[1;33mINCONCLUSIVE" in styled  # bold yellow
    assert "\x1b[1mclick_dcg@10\x1b[0m +0.0100 95%" in styled  # an unproven rise: no colour
    assert "not promoted to production (promote if better): verdict inconclusive, not better" \
        in text


def test_a_promotion_says_which_alias_moved() -> None:
    text, _ = render(promotion_line(judged_better()))
    assert text == "promoted to production (promote if better): verdict better"


def test_the_headline_table_is_titled_by_its_evidence() -> None:
    judged, _ = render(metrics_table(judged_better()))
    assert "Judged set shop golden (60 queries): source vs tuned model" in judged
    assert "95% interval" in judged and "[+0.1000, +0.5000]" in judged
    assert "2 judged queries left out: none of their relevant items is in the catalogue" \
        in judged
    clicks, _ = render(metrics_table(clicks_only("worse", -0.05, [-0.09, -0.01])))
    assert "Validation sessions: source model vs tuned model (clicks, full catalogue)" in clicks
    assert "full catalogue: favours the source model" in clicks
    assert "[-0.0400, +0.0000]" in clicks


def test_full_catalogue_rows_carry_their_interval_when_the_run_bounded_them() -> None:
    text, _ = render(click_table(clicks_only("worse", -0.05, [-0.09, -0.01])))
    assert "ndcg@10 full catalogue* │ 0.3000 │ 0.2800 │ -0.0200 │ [-0.0400, +0.0000]" in text
    shown_only, _ = render(click_table(clicks_only("worse", -0.05, [-0.09, -0.01]),
                                       with_full_catalogue=False))
    assert "shown lists, debiased" in shown_only and "full catalogue" not in shown_only


def test_the_click_table_keeps_debiased_and_biased_figures_apart() -> None:
    text, _ = render(click_table(judged_better()))
    assert "Clicks on validation sessions (split by query; 30 queries, 180 sessions)" in text
    assert "click_dcg@10 shown lists, debiased" in text
    assert "[+0.0100, +0.0700]" in text
    assert "ndcg@10 full catalogue*" in text
    assert ("* full catalogue: favours the source model: clicks exist only where it showed "
            "the item") in text


def test_a_report_shows_each_figure_once() -> None:
    judged = report_tables(judged_better())
    assert [str(t.title).split(" ")[0] for t in judged] == ["Judged", "Clicks", "Per"]
    assert judged[1].row_count == 5  # shown lists, and the full catalogue the headline lacks
    clicks = report_tables(clicks_only("worse", -0.05, [-0.09, -0.01]))
    assert [str(t.title).split(" ")[0] for t in clicks] == ["Validation", "Clicks"]
    assert clicks[1].row_count == 1  # the full catalogue is the headline: not again


def test_query_text_is_shown_as_written_never_as_markup() -> None:
    text, _ = render(*report_tables(judged_better()))
    assert "[bold]brolly[/bold]" in text


def test_an_old_task_renders_its_flat_figures_without_a_verdict() -> None:
    old = {"before": {"ndcg@10": 0.41}, "after": {"ndcg@10": 0.62}, "delta": {"ndcg@10": 0.21},
           "per_query": {"better": 31, "worse": 4, "same": 65, "worst_regressions": []}}
    assert verdict_panel(old) is None and promotion_line(old) is None
    assert verdict_lines(old) == [] and verdict_lines(None) == []
    text, _ = render(*report_tables(old))
    assert "Validation sessions: source model vs tuned model" in text
    assert "0.4100" in text and "0.6200" in text and "+0.2100" in text
    assert "95% interval" not in text and "Clicks" not in text
    assert "31 better, 4 worse, 65 unchanged" in text
    assert report_tables({"steps": 30}) == []  # another method's metrics: no tables


def test_a_verdict_with_nothing_to_decide_on_shows_no_figures() -> None:
    metrics = {"verdict": {"verdict": "inconclusive", "basis": "none", "metric": None,
                           "reason": "neither a judged set nor held-out sessions with shown "
                                     "results: nothing to decide on"}}
    text, _ = render(verdict_panel(metrics))
    assert "INCONCLUSIVE no evidence to decide on" in text
    assert "nothing to decide on" in text
    assert "basis" not in text and "clicks" not in text and "95%" not in text
