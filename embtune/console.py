"""Terminal rendering that the CLI and the demo share: following a task with a live progress bar
and the before/after metric tables a tuned model earns.

It sits below both (`cli` → `demo` → `console` → `client`), so the demo never imports the CLI
package (whose `__init__` loads every command) and the CLI never imports the demo to draw a
table. It needs only Rich and a client: nothing from the server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from embtune.client import Client

METRICS = ("ndcg@10", "mrr@10", "recall@10", "recall@100")


def follow_task(api: Client, task_id: str, console: Console) -> Any:
    """A live progress bar until the task ends; returns the final task."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("[bold]{task.fields[status]:<10}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TextColumn("{task.fields[message]}"),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        handle = bar.add_task("task", total=1.0, status="pending", message="")
        final = None
        for task in api.follow(task_id):
            p = task.progress
            extra = p.model_extra or {}
            message = p.message
            if p.total_steps:
                message += f"  step {p.step}/{p.total_steps}"
            if "loss" in extra and extra["loss"] is not None:
                message += f"  loss {float(extra['loss']):.4f}"
            if extra.get("eta_s"):
                message += f"  eta {float(extra['eta_s']):.0f}s"
            bar.update(handle, completed=p.fraction, status=task.status.value,
                       message=escape(message))
            final = task
        return final


def metrics_table(metrics: dict[str, Any]) -> Table:
    table = Table(title="Validation sessions: source model vs tuned model")
    table.add_column("metric")
    table.add_column("before", justify="right")
    table.add_column("after", justify="right")
    table.add_column("change", justify="right")
    before, after = metrics.get("before", {}), metrics.get("after", {})
    for name in METRICS:
        if name in before and name in after:
            change = after[name] - before[name]
            colour = "green" if change > 0 else "red" if change < 0 else ""
            table.add_row(name, f"{before[name]:.4f}", f"{after[name]:.4f}",
                          f"[{colour}]{change:+.4f}[/]" if colour else f"{change:+.4f}")
    return table


def report_table(per_query: dict[str, Any]) -> Table:
    table = Table(title=(
        f"Per query: {per_query.get('better', 0)} better, {per_query.get('worse', 0)} worse, "
        f"{per_query.get('same', 0)} unchanged — worst regressions"
    ))
    table.add_column("query")
    table.add_column("rank before", justify="right")
    table.add_column("rank after", justify="right")
    for row in per_query.get("worst_regressions", [])[:10]:
        table.add_row(str(row["query"]), str(row["rank_before"] or "—"),
                      str(row["rank_after"] or "—"))
    return table
