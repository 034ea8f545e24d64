"""Terminal rendering that the CLI and the demo share: following a task with a live progress bar
(its finished report is drawn by `console_report`).

It sits below both (`cli` → `demo` → `console` → `client`), so the demo never imports the CLI
package (whose `__init__` loads every command) and the CLI never imports the demo to draw a
table. It needs only Rich and a client: nothing from the server.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:
    from embtune.client import Client


def follow_task(api: Client, task_id: str, console: Console) -> Any:
    """A live progress bar until the task ends; returns the final task."""

    def describe(task: Any) -> str:
        p = task.progress
        extra = p.model_extra or {}
        message = p.message
        if p.total_steps:
            message += f"  step {p.step}/{p.total_steps}"
        if "loss" in extra and extra["loss"] is not None:
            message += f"  loss {float(extra['loss']):.4f}"
        if extra.get("eta_s"):
            message += f"  eta {float(extra['eta_s']):.0f}s"
        return message

    return live_bar(api.follow(task_id), describe, console)


def live_bar(updates: Iterable[Any], describe: Callable[[Any], str], console: Console) -> Any:
    """Draw each update of a followed task (any kind) as a bar with its status and
    `describe(task)`; the last update once the task ended."""
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
        for task in updates:
            bar.update(handle, completed=task.progress.fraction, status=task.status.value,
                       message=escape(describe(task)))
            final = task
        return final
