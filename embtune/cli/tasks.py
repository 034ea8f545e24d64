"""`embtune task`: fine-tuning tasks — create, watch, list, cancel, restart."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from embtune.cli.common import (
    JsonOption,
    ParamOption,
    ParamsJsonOption,
    UrlOption,
    compact,
    connect,
    err_console,
    events_table,
    fail,
    fields_table,
    out_console,
    page_caption,
    parse_params,
    print_json,
    when,
)
from embtune.cli.performance import estimate_line, performance_table
from embtune.client import DEFAULT_URL, Client, ConflictError
from embtune.console import follow_task
from embtune.console_report import report_tables, verdict_lines
from embtune.schemas.search import SearchTrialPublic
from embtune.schemas.tasks import TaskPublic

app = typer.Typer(help="Fine-tuning tasks: create, follow, list, cancel, restart.",
                  no_args_is_help=True)

TaskId = Annotated[str, typer.Argument(metavar="ID", help="The task id.")]
ModelId = Annotated[str, typer.Argument(metavar="MODEL_ID", help="The model to fine-tune.")]
BatchOption = Annotated[str | None, typer.Option(
    "--batch", help="Train on this clickstream batch (default: the open batch, released when "
    "the run starts).")]
STATUS_STYLE = {"done": "green", "failed": "red", "refused": "red", "canceled": "yellow",
                "processing": "cyan", "pending": "dim"}
# The outcome lines of a history stand out from its progress chatter.


def styled(status: str) -> str:
    style = STATUS_STYLE.get(status)
    return f"[{style}]{status}[/]" if style else status


def progress_text(task: TaskPublic) -> str:
    p = task.progress
    text = f"{p.fraction:>4.0%}"
    if p.total_steps:
        text += f" {p.step}/{p.total_steps}"
    return text + (f" {p.message}" if p.message else "")


def progress_figures(task: TaskPublic) -> str:
    """The plugin's scalar extras (loss, epoch, eta_s); histories are left to `--json`."""
    figures = []
    for name, value in (task.progress.model_extra or {}).items():
        if isinstance(value, float):
            figures.append(f"{name} {value:.4g}")
        elif isinstance(value, int | str):
            figures.append(f"{name} {value}")
    return "  ".join(figures)


def task_fields(task: TaskPublic) -> dict[str, Any]:
    figures = progress_figures(task)
    return {
        "id": task.id,
        "status": Text.from_markup(styled(task.status.value)),
        "model": task.embedding_model_id,
        "result model": task.result_model_id or "—",
        "detail": task.detail or "—",
        "progress": progress_text(task) + (f"  {figures}" if figures else ""),
        "idempotency key": task.idempotency_key or "—",
        "batch": task.batch_id or "—",
        "params": compact(task.params),
        "metadata": compact(task.metadata),
        "attempts": str(task.attempts),
        "created": when(task.created_at),
        "started": when(task.started_at),
        "finished": when(task.finished_at),
        "heartbeat": when(task.heartbeat_at),
    }


def print_verdict(task: TaskPublic, console: Console) -> None:
    """The verdict panel and promotion line, when the run reached one: what a reader wants
    first."""
    for part in verdict_lines(task.metrics):
        console.print(part)


def print_tables(task: TaskPublic, console: Console) -> None:
    """The figures behind the verdict; for a method's other metrics, the metrics line."""
    tables = report_tables(task.metrics)
    for table in tables:
        console.print(table)
    if task.metrics and not tables:
        console.print(Text(f"metrics: {compact(task.metrics)}"))


def print_outcome(task: TaskPublic, console: Console) -> None:
    """What a finished task earned: its verdict, then the tables behind it."""
    print_verdict(task, console)
    print_tables(task, console)


def follow_until_done(api: Client, task_id: str, as_json: bool) -> None:
    """Watch a task to its end; exit 0 only when it is done."""
    if as_json:  # one JSON object per change, for `jq --seq`-style consumers
        final = None
        for final in api.follow(task_id):
            print(final.model_dump_json(), flush=True)
    else:
        final = follow_task(api, task_id, err_console)
        out = out_console()
        print_outcome(final, out)
        if final.status.value == "done":
            model = f": new model {final.result_model_id}" if final.result_model_id else ""
            out.print(f"task {final.id} done{model}", highlight=False)
    assert final is not None
    if final.status.value != "done":
        fail(f"task {final.id} ended {final.status.value}"
             + (f": {final.detail}" if final.detail else ""))


@app.command("create")
def create(
    model_id: ModelId,
    key: Annotated[str | None, typer.Option(
        "--key", help="Idempotency key: the same key and body again returns the same task.")]
    = None,
    batch: BatchOption = None,
    param: ParamOption = None,
    params_json: ParamsJsonOption = None,
    follow: Annotated[bool, typer.Option(
        "--follow", help="Watch it to the end (exit 1 unless it ends done).")] = False,
    url: UrlOption = DEFAULT_URL,
    as_json: JsonOption = False,
) -> None:
    """Queue a fine-tuning task for a model."""
    params = parse_params(param, params_json)
    with connect(url) as api:
        task = api.create_task(model_id, idempotency_key=key, batch_id=batch,
                               params=params or None)
        if as_json and not follow:
            print_json(task)
        elif not as_json:
            out_console().print(f"task {task.id} {styled(task.status.value)}", highlight=False)
        if follow:
            follow_until_done(api, task.id, as_json)


@app.command("list")
def list_tasks(
    status: Annotated[str | None, typer.Option(
        help="pending, processing, done, canceled, failed or refused.")] = None,
    model: Annotated[str | None, typer.Option(help="Only tasks of this model id.")] = None,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    url: UrlOption = DEFAULT_URL,
    as_json: JsonOption = False,
) -> None:
    """Tasks, newest first."""
    with connect(url) as api:
        page = api.list_tasks(offset=offset, limit=limit, status=status,
                              embedding_model_id=model)
    if as_json:
        print_json(page.items)
        return
    table = Table(title="fine-tuning tasks",
                  caption=page_caption(offset, len(page.items), page.total))
    table.add_column("id", no_wrap=True)
    table.add_column("status")
    table.add_column("model", no_wrap=True)
    table.add_column("progress")
    table.add_column("created", no_wrap=True)
    for task in page.items:
        table.add_row(task.id, styled(task.status.value), task.embedding_model_id,
                      escape(progress_text(task)), when(task.created_at))
    out_console().print(table)


@app.command("show")
def show(task_id: TaskId, url: UrlOption = DEFAULT_URL, as_json: JsonOption = False) -> None:
    """One task: state, progress, parameters and results."""
    with connect(url) as api:
        task = api.get_task(task_id)
    if as_json:
        print_json(task)
        return
    out = out_console()
    print_verdict(task, out)
    out.print(fields_table(task_fields(task)))
    print_tables(task, out)
    performance = performance_table(task.metrics)
    if performance is not None:
        out.print(performance)


@app.command("events")
def events(task_id: TaskId, url: UrlOption = DEFAULT_URL, as_json: JsonOption = False) -> None:
    """The task's history: transitions, progress messages, run notes; oldest first."""
    with connect(url) as api:
        history = api.task_events(task_id)
    if as_json:
        print_json(history)
        return
    out_console().print(events_table(f"events of task {task_id}", history))


@app.command("trials")
def trials(task_id: TaskId, url: UrlOption = DEFAULT_URL, as_json: JsonOption = False) -> None:
    """The trials of the task's hyperparameter search: params, state, value, where pruned."""
    with connect(url) as api:
        found = api.task_trials(task_id)
    if as_json:
        print_json(found)
        return
    out_console().print(trials_table(task_id, found))


def trials_table(task_id: str, found: list[SearchTrialPublic]) -> Table:
    table = Table(title=f"trials of task {task_id}", title_justify="left")
    for column in ("#", "state", "params", "value", "pruned at", "detail"):
        table.add_column(column, justify="right" if column in ("#", "value") else "left")
    for trial in found:
        params = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in trial.params.items())
        table.add_row(
            str(trial.number), _trial_state(trial.state),
            escape(params), "" if trial.value is None else f"{trial.value:.4f}",
            "" if trial.pruned_at is None else f"epoch {trial.pruned_at / 100:g}",
            escape(trial.detail or ""),
        )
    if not found:
        table.caption = "no search trials"
    return table


# a trial's state in the colours of the task statuses
_TRIAL_STATUS = {"complete": "done", "pruned": "canceled", "interrupted": "pending"}


def _trial_state(state: str) -> str:
    style = STATUS_STYLE.get(_TRIAL_STATUS.get(state, state))
    return f"[{style}]{state}[/]" if style else state


def show_new_status(task: TaskPublic, as_json: bool) -> None:
    """What cancel and restart print: the task as JSON, or its id and new status."""
    if as_json:
        print_json(task)
    else:
        out_console().print(f"task {task.id} {styled(task.status.value)}", highlight=False)


@app.command("cancel")
def cancel(task_id: TaskId, url: UrlOption = DEFAULT_URL, as_json: JsonOption = False) -> None:
    """Stop a pending or running task (a finished one cannot be canceled)."""
    with connect(url) as api:
        show_new_status(api.cancel_task(task_id), as_json)


@app.command("restart")
def restart(task_id: TaskId, url: UrlOption = DEFAULT_URL, as_json: JsonOption = False) -> None:
    """Queue a failed, refused or canceled task again from scratch (a running one is left as it
    is; a done one keeps its result: tune again with a new task on its batch)."""
    with connect(url) as api:
        try:
            task = api.restart_task(task_id)
        except ConflictError:
            current = api.get_task(task_id)
            if current.status.value != "done":
                raise
            batch = f" --batch {current.batch_id}" if current.batch_id else ""
            if current.params:
                batch += f" --params-json '{json.dumps(current.params, separators=(',', ':'))}'"
            fail(f"task {task_id} is done and keeps its result (model "
                 f"{current.result_model_id}); a done task cannot be restarted. Tune again "
                 f"with a new task on the same batch: embtune task create "
                 f"{current.embedding_model_id}{batch}")
        show_new_status(task, as_json)


@app.command("follow")
def follow(task_id: TaskId, url: UrlOption = DEFAULT_URL, as_json: JsonOption = False) -> None:
    """Watch a task with a live progress bar; exit 0 when it ends done, 1 otherwise."""
    with connect(url) as api:
        follow_until_done(api, task_id, as_json)


@app.command("preflight")
def preflight(
    model_id: ModelId,
    batch: BatchOption = None,
    param: ParamOption = None,
    params_json: ParamsJsonOption = None,
    url: UrlOption = DEFAULT_URL,
    as_json: JsonOption = False,
) -> None:
    """What a task would train on and roughly how long it would take; creates nothing."""
    params = parse_params(param, params_json)
    with connect(url) as api:
        report = api.preflight(model_id, batch_id=batch, params=params or None)
    if as_json:
        print_json(report)
        return
    out = out_console()
    out.print(fields_table(report, title="preflight"))
    estimate = estimate_line(report)
    if estimate is not None:
        out.print(estimate)
