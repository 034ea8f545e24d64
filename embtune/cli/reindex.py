"""`embtune reindex`: write a model's catalogue vectors into a vector sink (create, follow,
list, show, events, cancel, restart); `embtune search` over what a reindex wrote, and
`embtune model vectors` to download a model's Parquet vectors."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from embtune.cli.common import (
    JsonOption,
    UrlOption,
    compact,
    connect,
    err_console,
    events_table,
    fail,
    fields_table,
    out_console,
    page_caption,
    print_json,
    usage_error,
    when,
)
from embtune.cli.tasks import progress_figures, progress_text, styled
from embtune.client import DEFAULT_URL, Client
from embtune.console import live_bar
from embtune.schemas.reindex import K_MAX, ReindexTaskPublic, SearchResponse

app = typer.Typer(help="Reindex tasks: write a model's catalogue vectors into a vector sink "
                  "(Qdrant, Parquet) and switch the sink to them.", no_args_is_help=True)

MODEL_ID = re.compile(r"^[0-9a-f]{32}$")  # what `new_id` makes; anything else is an alias
TaskId = Annotated[str, typer.Argument(metavar="ID", help="The reindex task id.")]
# The run's figures, in the order a reader wants them, then its timings.
SUMMARY_FIELDS = ("mode", "items", "encoded", "reused", "copied", "deleted", "collection",
                  "previous_live", "cache", "precision", "note")


def target_of(model_or_alias: str) -> dict[str, str]:
    """A 32-hex id names a model; anything else an alias."""
    key = "model_id" if MODEL_ID.match(model_or_alias) else "alias"
    return {key: model_or_alias}


def sink_of(sink_type: str | None, name: str | None, sink_url: str | None) -> dict[str, Any] | None:
    """The sink config the options describe; None leaves the server's choice (the alias's sink,
    else the default Qdrant sink)."""
    if sink_type is None:
        if name is not None or sink_url is not None:
            usage_error("--sink-name and --sink-url need --sink-type (qdrant or parquet)")
        return None
    sink: dict[str, Any] = {"type": sink_type}
    if name is not None:
        sink["name"] = name
    if sink_url is not None:
        sink["url"] = sink_url
    return sink


def sink_text(sink: dict[str, Any] | None) -> str:
    if not sink:
        return "—"
    where = f" at {sink['url']}" if sink.get("url") else ""
    return f"{sink.get('type', '?')} {sink.get('name', 'catalogue')}{where}"


def task_fields(task: ReindexTaskPublic) -> dict[str, Any]:
    figures = progress_figures(task)
    return {
        "id": task.id,
        "status": Text.from_markup(styled(task.status.value)),
        "model": task.embedding_model_id,
        "alias": task.alias or "—",
        "sink": sink_text(task.sink),
        "incremental": "yes" if task.incremental else "no",
        "detail": task.detail or "—",
        "progress": progress_text(task) + (f"  {figures}" if figures else ""),
        "idempotency key": task.idempotency_key or "—",
        "metadata": compact(task.metadata),
        "attempts": str(task.attempts),
        "created": when(task.created_at),
        "started": when(task.started_at),
        "finished": when(task.finished_at),
    }


def summary_fields(metrics: dict[str, Any]) -> dict[str, Any]:
    """What a finished reindex did: how many items it encoded, reused from the cache, copied
    from the last collection or deleted, where it wrote, and how long each phase took."""
    rows = {name.replace("_", " "): metrics[name] for name in SUMMARY_FIELDS
            if metrics.get(name) is not None}
    if isinstance(metrics.get("sink"), dict):
        rows["sink"] = sink_text(metrics["sink"])
    timings = metrics.get("timings_s")
    if isinstance(timings, dict) and timings:
        rows["timings"] = "  ".join(
            f"{name} {value:.2f}s" if isinstance(value, int | float) else f"{name} {value}"
            for name, value in timings.items()
        )
    return rows


def print_summary(task: ReindexTaskPublic, console: Console) -> None:
    if task.metrics:
        console.print(fields_table(summary_fields(task.metrics), title="reindex"))


def follow_bar(api: Client, task_id: str, console: Console) -> ReindexTaskPublic:
    """A live progress bar until the task ends: items written of the catalogue, the phase,
    the encoded/reused counts when the run reports them, and the ETA."""

    def describe(task: ReindexTaskPublic) -> str:
        p = task.progress
        extra = p.model_extra or {}
        message = p.message
        if p.total_steps:
            message += f"  {p.step}/{p.total_steps} items"
        for name in ("encoded", "reused", "copied"):
            if isinstance(extra.get(name), int):
                message += f"  {name} {extra[name]}"
        if extra.get("items_per_s"):
            message += f"  {float(extra['items_per_s']):.3g}/s"
        if extra.get("eta_s") is not None:
            message += f"  eta {float(extra['eta_s']):.0f}s"
        return message

    final = live_bar(api.follow_reindex(task_id), describe, console)
    assert final is not None
    return final


def follow_until_done(api: Client, task_id: str, as_json: bool) -> None:
    """Watch a reindex to its end; exit 0 only when it is done."""
    if as_json:
        final = None
        for final in api.follow_reindex(task_id):
            print(final.model_dump_json(), flush=True)
        assert final is not None
    else:
        final = follow_bar(api, task_id, err_console)
        out = out_console()
        print_summary(final, out)
        if final.status.value == "done":
            out.print(f"reindex {final.id} done: {sink_text(final.sink)} serves model "
                      f"{final.embedding_model_id}", highlight=False)
    if final.status.value != "done":
        fail(f"reindex {final.id} ended {final.status.value}"
             + (f": {final.detail}" if final.detail else ""))


@app.command("create")
def create(
    model_or_alias: Annotated[str, typer.Argument(
        metavar="MODEL_OR_ALIAS", help="A model id (32 hex characters), or an alias: its "
        "model is reindexed into the alias's sink.")],
    sink_type: Annotated[str | None, typer.Option(
        "--sink-type", help="qdrant or parquet (default: the alias's sink, else qdrant).")]
    = None,
    sink_name: Annotated[str | None, typer.Option(
        "--sink-name", help="The sink's name: searches read the collection it points to.")]
    = None,
    sink_url: Annotated[str | None, typer.Option(
        "--sink-url", help="Qdrant server, or where Parquet files go (default: the server's).")]
    = None,
    incremental: Annotated[bool, typer.Option(
        "--incremental", help="Encode only added and changed items; copy the rest from the "
        "model's last collection in the sink.")] = False,
    shards: Annotated[int | None, typer.Option(
        "--shards", min=1, max=256, help="Split a full reindex into this many item ranges, "
        "one queue message each, so every worker takes a share.")] = None,
    key: Annotated[str | None, typer.Option(
        "--key", help="Idempotency key: the same key and body again returns the same task.")]
    = None,
    follow: Annotated[bool, typer.Option(
        "--follow/--no-follow", help="Watch it to the end (exit 1 unless it ends done).")]
    = False,
    url: UrlOption = DEFAULT_URL,
    as_json: JsonOption = False,
) -> None:
    """Queue a reindex of a model (or an alias's model) into a vector sink.

    Every catalogue item's vector goes into a new collection, which the sink switches to once
    it is complete."""
    sink = sink_of(sink_type, sink_name, sink_url)
    with connect(url) as api:
        task = api.create_reindex_task(**target_of(model_or_alias), sink=sink,
                                       incremental=incremental, idempotency_key=key,
                                       shards=shards)
        if as_json and not follow:
            print_json(task)
        elif not as_json:
            out_console().print(f"reindex {task.id} {styled(task.status.value)}",
                                highlight=False)
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
    """Reindex tasks, newest first."""
    with connect(url) as api:
        page = api.list_reindex_tasks(offset=offset, limit=limit, status=status,
                                      embedding_model_id=model)
    if as_json:
        print_json(page.items)
        return
    table = Table(title="reindex tasks", caption=page_caption(offset, len(page.items), page.total))
    table.add_column("id", no_wrap=True)
    table.add_column("status")
    table.add_column("model", no_wrap=True)
    table.add_column("sink")
    table.add_column("progress")
    table.add_column("created", no_wrap=True)
    for task in page.items:
        table.add_row(task.id, styled(task.status.value), task.embedding_model_id,
                      Text(sink_text(task.sink)), escape(progress_text(task)),
                      when(task.created_at))
    out_console().print(table)


@app.command("show")
def show(task_id: TaskId, url: UrlOption = DEFAULT_URL, as_json: JsonOption = False) -> None:
    """One reindex task: state, progress, sink, and what it did."""
    with connect(url) as api:
        task = api.get_reindex_task(task_id)
    if as_json:
        print_json(task)
        return
    out = out_console()
    out.print(fields_table(task_fields(task)))
    print_summary(task, out)


@app.command("events")
def events(task_id: TaskId, url: UrlOption = DEFAULT_URL, as_json: JsonOption = False) -> None:
    """The task's history: transitions, progress messages, the switch; oldest first."""
    with connect(url) as api:
        history = api.reindex_events(task_id)
    if as_json:
        print_json(history)
        return
    out_console().print(events_table(f"events of reindex {task_id}", history))


def show_new_status(task: ReindexTaskPublic, as_json: bool) -> None:
    if as_json:
        print_json(task)
    else:
        out_console().print(f"reindex {task.id} {styled(task.status.value)}", highlight=False)


@app.command("cancel")
def cancel(task_id: TaskId, url: UrlOption = DEFAULT_URL, as_json: JsonOption = False) -> None:
    """Stop a pending or running reindex: what it wrote is dropped, the sink is not switched."""
    with connect(url) as api:
        show_new_status(api.cancel_reindex_task(task_id), as_json)


@app.command("restart")
def restart(task_id: TaskId, url: UrlOption = DEFAULT_URL, as_json: JsonOption = False) -> None:
    """Queue a failed, refused or canceled reindex again.

    A done one is final: create a new reindex to write the vectors again."""
    with connect(url) as api:
        show_new_status(api.restart_reindex_task(task_id), as_json)


def search(
    query: Annotated[str, typer.Argument(help="What to search for.")],
    alias: Annotated[str | None, typer.Option(
        "--alias", help="Search the alias's sink (its live collection).")] = None,
    model: Annotated[str | None, typer.Option(
        "--model", help="Search this model's newest complete collection.")] = None,
    k: Annotated[int, typer.Option("-k", min=1, max=K_MAX, help="How many hits.")] = 10,
    url: UrlOption = DEFAULT_URL,
    as_json: JsonOption = False,
) -> None:
    """The catalogue items nearest to a query, from what a reindex wrote into a sink."""
    if (alias is None) == (model is None):
        usage_error("give exactly one of --alias and --model")
    with connect(url) as api:
        result = api.search(query, alias=alias, model_id=model, k=k)
    if as_json:
        print_json(result)
        return
    out = out_console()
    out.print(search_table(result))
    out.print(served_by(result), highlight=False, soft_wrap=True)


def search_table(result: SearchResponse) -> Table:
    table = Table(caption=f"{len(result.hits)} hits")
    table.add_column("rank", justify="right")
    table.add_column("object_id", overflow="fold")
    table.add_column("score", justify="right")
    for rank, hit in enumerate(result.hits, start=1):
        table.add_row(str(rank), Text(hit.object_id), f"{hit.score:.4f}")
    return table


def served_by(result: SearchResponse) -> Text:
    """Which model and collection answered; a warning while an alias's sink still serves the
    model it pointed at before."""
    name = result.sink.name or "catalogue"
    line = Text(f"model {result.model_id}, collection {result.collection} "
                f"({result.sink.type} sink {name})")
    if result.alias is not None:
        line.append(f", alias {result.alias}")
        if not result.live:
            line.append(f": the alias points at {result.alias_model_id}, whose reindex has "
                        "not finished", style="yellow")
    return line


def model_vectors(
    model_id: Annotated[str, typer.Argument(metavar="ID", help="A model id or an alias.")],
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", dir_okay=False,
        help="Where to write the Parquet file (default: ./embtune-vectors-<id>.parquet).")]
    = None,
    url: UrlOption = DEFAULT_URL,
) -> None:
    """Download a model's catalogue vectors as Parquet (from its newest parquet-sink reindex):
    object_id, vector (float32), model_id, text_hash."""
    target = output or Path(f"embtune-vectors-{model_id}.parquet")
    # Into a temporary name first: a cut connection leaves no truncated file behind.
    partial = target.with_name(f".{target.name}.part")
    try:
        with connect(url, timeout=300.0) as api:
            api.download_vectors(model_id, partial)
        os.replace(partial, target)
    except OSError as exc:
        fail(f"{target}: {exc.strerror or exc}")
    finally:
        partial.unlink(missing_ok=True)
    out_console().print(f"saved {target} ({target.stat().st_size:,} bytes)", highlight=False)
