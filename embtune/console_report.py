"""Terminal rendering of a finished task's report, shared by `embtune task` and the demo: the
verdict first, then the figures it rests on, each table titled with what it measured.

A report names its evidence because the figures are not equally trustworthy: a judged set's
NDCG is ground truth; click figures on the full catalogue favour the source model (clicks exist
only where it showed the item), so only the debiased shown-list figure may carry a click verdict.
Old tasks have only the flat `before`/`after`/`per_query`, and still render. Strings from the
server are shown as `Text`, never parsed as markup.
"""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

METRICS = ("ndcg@10", "mrr@10", "recall@10", "recall@100")
VERDICT_STYLE = {"better": "bold green", "worse": "bold red", "inconclusive": "bold yellow"}
FULL_CATALOGUE_NOTE = "favours the source model: clicks exist only where it showed the item"


def _figure(value: Any, signed: bool = False) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "—"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def _interval(ci: Any) -> str:
    """`[+0.3010, +0.4520]`, or — when the run could not bound the change."""
    if isinstance(ci, list | tuple) and len(ci) == 2:
        return f"[{_figure(ci[0], True)}, {_figure(ci[1], True)}]"
    return "—"


def _change(value: Any) -> Text:
    """A signed change, green when it rose and red when it fell."""
    text = _figure(value, signed=True)
    colour = "" if text == "—" or value == 0 else "green" if value > 0 else "red"
    return Text(text, style=colour)


def _section(metrics: dict[str, Any], name: str) -> dict[str, Any]:
    value = metrics.get(name)
    return value if isinstance(value, dict) else {}


def _set_name(evaluation_set: Any) -> str:
    if not isinstance(evaluation_set, dict):
        return "an evaluation set"
    return str(evaluation_set.get("name") or evaluation_set.get("id") or "an evaluation set")


def _table(title: str, caption: str | None = None) -> Table:
    """A table at least as wide as its title, so a wide terminal shows the title on one line
    (a narrow one still wraps it)."""
    return Table(title=title, caption=caption, min_width=len(title) + 2)


def _propensities_note(metrics: dict[str, Any]) -> Text | None:
    """One line: which examination probabilities debiased the clicks, and where they came from."""
    used = _section(_section(_section(metrics, "clicks"), "shown_lists"), "propensities")
    if not used:
        return None
    theta = used.get("examination")
    shape = ""
    if isinstance(theta, list) and theta:
        shape = " θ " + " ".join(
            f"{t:.2f}" if isinstance(t, int | float) else "?" for t in theta[:10])
    method = f" ({used['method']})" if used.get("method") else ""
    why = f"; {used['reason']}" if used.get("reason") else ""
    return Text(f"propensities: {used.get('source', '?')}{method}{shape}{why}", style="dim")


def verdict_panel(metrics: dict[str, Any] | None) -> Panel | None:
    """The verdict in its colour with the figure, interval, basis and query count it rests on;
    None for a task without one (an old task, or a method that judges nothing)."""
    verdict = _section(metrics or {}, "verdict")
    if not verdict:
        return None
    word = str(verdict.get("verdict", "inconclusive"))
    style = VERDICT_STYLE.get(word, "bold")
    basis = verdict.get("basis")
    lines: list[RenderableType] = []
    if basis in ("judged", "clicks"):
        lines.append(Text.assemble(
            (word.upper(), style), "  ", (str(verdict.get("metric") or "?"), "bold"), " ",
            # coloured by the verdict, not the sign: an unproven rise is not shown as a gain
            (_figure(verdict.get("delta"), signed=True), style.removeprefix("bold ")
             if word in ("better", "worse") else ""),
            " 95% ", _interval(verdict.get("ci95")),
            f"  ({_figure(verdict.get('before'))} → {_figure(verdict.get('after'))})"))
        evidence = (f"judged set {_set_name(verdict.get('evaluation_set'))}" if basis == "judged"
                    else "clicks, debiased (shown lists, split by query)")
        lines.append(Text(f"basis: {evidence} · {verdict.get('queries', '?')} queries"))
    else:  # nothing to decide on: no figure to show
        lines.append(Text.assemble((word.upper(), style), "  no evidence to decide on"))
    if basis == "clicks":
        note = _propensities_note(metrics or {})
        if note is not None:
            lines.append(note)
    if verdict.get("reason"):
        lines.append(Text(str(verdict["reason"]), style="dim"))
    if basis == "judged":
        # what a user without the judged set would have been told, for comparison
        shown = _section(_section(metrics or {}, "clicks"), "shown_lists")
        if shown.get("verdict"):
            lines.append(Text.assemble(
                "clicks alone: ", (str(shown["verdict"]),
                                   VERDICT_STYLE.get(str(shown["verdict"]), "bold")),
                f" ({shown.get('reason', '')})"))
    return Panel(Group(*lines), title="verdict", title_align="left",
                 border_style=style.removeprefix("bold "), expand=False)


def promotion_line(metrics: dict[str, Any] | None) -> Text | None:
    """Whether the task moved its alias to the tuned model; None when it was not asked to."""
    promotion = _section(metrics or {}, "promotion")
    if not promotion:
        return None
    alias = str(promotion.get("alias", "?"))
    rule = f" (promote if {promotion['promote_if']})" if promotion.get("promote_if") else ""
    reason = f": {promotion['reason']}" if promotion.get("reason") else ""
    if promotion.get("promoted"):
        return Text.assemble(("promoted", "bold green"), f" to {alias}{rule}{reason}")
    return Text.assemble(("not promoted", "bold yellow"), f" to {alias}{rule}{reason}")


def metrics_table(metrics: dict[str, Any]) -> Table:
    """The headline before/after: the judged set's figures when there is one, else the clicks'
    full-catalogue figures, titled as such; a 95% column when the run bounded the changes."""
    judged, clicks = _section(metrics, "judged"), _section(metrics, "clicks")
    full = _section(clicks, "full_catalogue")
    caption = None
    if judged:
        title = (f"Judged set {_set_name(judged.get('evaluation_set'))} "
                 f"({judged.get('queries', '?')} queries): source vs tuned model")
        dropped = judged.get("queries_without_catalogued_items")
        if dropped:
            caption = (f"{dropped} judged queries left out: none of their relevant items is in "
                       "the catalogue")
        ci = _section(judged, "ci95")
    elif clicks:
        title = "Validation sessions: source model vs tuned model (clicks, full catalogue)"
        caption = f"full catalogue: {full.get('note') or FULL_CATALOGUE_NOTE}"
        ci = _section(full, "ci95")
    else:
        title, ci = "Validation sessions: source model vs tuned model", {}
    table = _table(title, caption)
    for name in ("metric", "before", "after", "change") + (("95% interval",) if ci else ()):
        table.add_column(name, justify="left" if name == "metric" else "right",
                         no_wrap=name != "metric")
    before, after = _section(metrics, "before"), _section(metrics, "after")
    for name in METRICS:
        if name in before and name in after:
            row = [Text(name), Text(_figure(before[name])), Text(_figure(after[name])),
                   _change(after[name] - before[name])]
            table.add_row(*row, *((Text(_interval(ci.get(name))),) if ci else ()))
    return table


def click_table(metrics: dict[str, Any], with_full_catalogue: bool = True) -> Table | None:
    """The click evidence: the debiased shown-list figure (what a click verdict rests on) and,
    unless the headline table already shows them, the full-catalogue figures, marked as biased
    toward the source model; None without clicks."""
    clicks = _section(metrics, "clicks")
    shown = _section(clicks, "shown_lists")
    full = _section(clicks, "full_catalogue") if with_full_catalogue else {}
    if not shown and not full:
        return None
    counts = (f"; {shown.get('queries', '?')} queries, {shown.get('sessions', '?')} sessions"
              if shown else "")
    table = _table(f"Clicks on validation sessions (split by {clicks.get('split', '?')}{counts})",
                   f"* full catalogue: {full.get('note') or FULL_CATALOGUE_NOTE}" if full else None)
    for name in ("figure", "before", "after", "change", "95% interval"):
        table.add_column(name, justify="left" if name == "figure" else "right",
                         no_wrap=name != "figure")
    if shown:
        table.add_row(Text(f"{shown.get('metric', 'click_dcg@10')} shown lists, debiased"),
                      Text(_figure(shown.get("before"))),
                      Text(_figure(shown.get("after"))), _change(shown.get("delta")),
                      Text(_interval(shown.get("ci95"))))
    before, after, ci = _section(full, "before"), _section(full, "after"), _section(full, "ci95")
    for name in METRICS:
        if name in before and name in after:
            table.add_row(Text(f"{name} full catalogue*", style="dim"),
                          Text(_figure(before[name])), Text(_figure(after[name])),
                          _change(after[name] - before[name]), Text(_interval(ci.get(name))))
    return table


def report_table(per_query: dict[str, Any]) -> Table:
    table = _table(
        f"Per query: {per_query.get('better', 0)} better, {per_query.get('worse', 0)} worse, "
        f"{per_query.get('same', 0)} unchanged — worst regressions"
    )
    table.add_column("query")
    table.add_column("rank before", justify="right")
    table.add_column("rank after", justify="right")
    for row in per_query.get("worst_regressions", [])[:10]:
        table.add_row(Text(str(row["query"])), str(row["rank_before"] or "—"),
                      str(row["rank_after"] or "—"))
    return table


def verdict_lines(metrics: dict[str, Any] | None) -> list[RenderableType]:
    """What leads a finished task's report: the verdict panel and the promotion line, if any."""
    found = (verdict_panel(metrics), promotion_line(metrics))
    return [part for part in found if part is not None]


def report_tables(metrics: dict[str, Any] | None) -> list[Table]:
    """The tables behind the verdict, each figure once: the headline (the judged set's, else
    the clicks' full catalogue, else an old task's validation figures), then the click table
    (its full-catalogue rows only when a judged set took the headline), then per query."""
    metrics = metrics or {}
    tables: list[Table] = []
    if _section(metrics, "before") and _section(metrics, "after"):
        tables.append(metrics_table(metrics))
    judged_headline = bool(_section(metrics, "judged")) or not tables
    click = click_table(metrics, with_full_catalogue=judged_headline)
    if click is not None:
        tables.append(click)
    if _section(metrics, "per_query"):
        tables.append(report_table(metrics["per_query"]))
    return tables
