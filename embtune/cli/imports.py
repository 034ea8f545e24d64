"""`embtune imports`: import tasks, which read a sessions or items file on the server side
(list, show, events, cancel, restart, rejections), and the `--server-side` path that
`embtune clickstream import` and `embtune items import` share (`import_on_server`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.filesize import decimal
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
    when,
)
from embtune.cli.tasks import styled
from embtune.client import DEFAULT_URL, Client
from embtune.console import live_bar
from embtune.domain.imports import ImportFormat
from embtune.schemas.imports import ImportTaskPublic

app = typer.Typer(help="Import tasks: sessions or items read from an NDJSON or Parquet file by "
                  "the server (a local path it can read, or s3://, gs://, file:// …).",
                  no_args_is_help=True)

TaskId = Annotated[str, typer.Argument(metavar="ID", help="The import task id.")]
# What each outcome means for the rows of each kind, in the summary line.
OUTCOME_WORDS = {
    "sessions": {"accepted": "new", "duplicate": "repeated", "conflict": "in conflict",
                 "rejected": "rejected"},
    "items": {"accepted": "new or updated", "duplicate": "unchanged", "conflict": "in conflict",
              "rejected": "rejected"},
}
OUTCOMES = ("accepted", "duplicate", "conflict", "rejected")
# The finished run's figures, in the order a reader wants them, with their labels.
SUMMARY_FIELDS = {"rows": "rows", "bytes": "bytes", "chunks": "chunks", "accepted": "accepted",
                  "duplicate": "duplicate", "conflict": "conflict", "rejected": "rejected",
                  "seconds": "seconds", "rows_per_s": "rows/s",
                  "resumed_from_row": "resumed from row", "peak_rss_mb": "peak RSS MB"}


# The options `clickstream import` and `items import` add for an import task.
ServerSideOption = Annotated[bool, typer.Option(
    "--server-side", help="Create an import task instead of posting the file from here: the "
    "SERVER reads FILE, so it must be an fsspec URL the server can reach (s3://, gs://, "
    "file://) or a path on the server's machine under its data dir or EMBTUNE_IMPORT_ROOTS "
    "(a relative path is made absolute here). Rows are committed in chunks; a restarted task "
    "resumes after the last one.")]
FormatOption = Annotated[ImportFormat | None, typer.Option(
    "--format", help="With --server-side: the file's format (default: from its extension: "
    ".jsonl, .ndjson, .json, also gzipped, or .parquet).", case_sensitive=False)]
FollowOption = Annotated[bool, typer.Option(
    "--follow/--no-follow", help="With --server-side: watch the task with a progress bar and "
    "print its counts (the default), or only queue it and print its id.")]


def location_of(source: str) -> str:
    """What the server is asked to read: a URL as given, a local path made absolute (the server
    resolves it on its own disk, which is this one when it runs here)."""
    if "://" in source:
        return source
    return str(Path(source).expanduser().absolute())


def extra(task: ImportTaskPublic) -> dict[str, Any]:
    return task.progress.model_extra or {}


def number(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else "—"


def progress_line(task: ImportTaskPublic) -> str:
    """`12,000 rows · 1.2 MB of 9.8 MB · 25,000 rows/s · eta 3s · 2 rejected`."""
    p, figures = task.progress, extra(task)
    parts = []
    if isinstance(figures.get("rows"), int):
        parts.append(f"{figures['rows']:,} rows")
    read = figures.get("bytes", p.step)
    total = figures.get("total_bytes", p.total_steps)
    if read or total:
        parts.append(f"{decimal(int(read))} of {decimal(int(total))}" if total
                     else decimal(int(read)))
    if task.status.value == "processing":
        if figures.get("rows_per_s"):
            parts.append(f"{float(figures['rows_per_s']):,.0f} rows/s")
        if figures.get("eta_s") is not None:
            parts.append(f"eta {float(figures['eta_s']):.0f}s")
    for name in ("conflict", "rejected"):
        if figures.get(name):
            parts.append(f"{figures[name]:,} {OUTCOME_WORDS['sessions'][name]}")
    if not parts and p.message:
        parts.append(p.message)
    return " · ".join(parts) or ("waiting for a worker" if task.status.value == "pending" else "")


def counts_of(task: ImportTaskPublic) -> dict[str, int]:
    """accepted/duplicate/conflict/rejected: the finished run's metrics, else the progress."""
    source = task.metrics if task.metrics else extra(task)
    return {name: int(source.get(name) or 0) for name in OUTCOMES}


def counts_text(task: ImportTaskPublic) -> str:
    words = OUTCOME_WORDS.get(task.data_kind, OUTCOME_WORDS["sessions"])
    return ", ".join(f"{n:,} {words[name]}" for name, n in counts_of(task).items())


def task_fields(task: ImportTaskPublic) -> dict[str, Any]:
    return {
        "id": task.id,
        "status": Text.from_markup(styled(task.status.value)),
        "kind": str(task.data_kind or "—"),
        "url": task.url,
        "format": str(task.format or "—"),
        "detail": task.detail or "—",
        "progress": f"{task.progress.fraction:.0%}  {progress_line(task)}",
        "rows": counts_text(task),
        "idempotency key": task.idempotency_key or "—",
        "metadata": compact(task.metadata),
        "attempts": str(task.attempts),
        "created": when(task.created_at),
        "started": when(task.started_at),
        "finished": when(task.finished_at),
    }


def summary_fields(metrics: dict[str, Any]) -> dict[str, str]:
    rows = {}
    for name, label in SUMMARY_FIELDS.items():
        value = metrics.get(name)
        if value is None:
            continue
        if name == "bytes" and isinstance(value, int) and value >= 1000:
            rows[label] = f"{decimal(value)} ({value:,} bytes)"
        elif isinstance(value, float):
            rows[label] = f"{value:,.1f}"
        else:
            rows[label] = number(value)
    return rows


def print_summary(task: ImportTaskPublic, console: Console) -> None:
    if task.metrics:
        console.print(fields_table(summary_fields(task.metrics), title="import"))


def follow_bar(api: Client, task_id: str, console: Console) -> ImportTaskPublic:
    """The shared live bar until the task ends: bytes read of the file, rows, rate, ETA."""
    final = live_bar(api.follow_import(task_id), progress_line, console)
    assert final is not None
    return final


def follow_until_done(api: Client, task_id: str, as_json: bool) -> None:
    """Watch an import to its end. Exit 0 only when it is done and every row was stored (new or
    a repeat); 1 when it ended otherwise or some rows were rejected or in conflict."""
    if as_json:  # one JSON object per change; the last is the final task
        final = None
        for final in api.follow_import(task_id):
            print(final.model_dump_json(), flush=True)
        assert final is not None
    else:
        final = follow_bar(api, task_id, err_console)
        out = out_console()
        print_summary(final, out)
        rows = (final.metrics or {}).get("rows", extra(final).get("rows", 0))
        out.print(escape(f"import {final.id} {final.status.value}: {number(rows)} rows from "
                         f"{final.url}: {counts_text(final)}"), highlight=False, soft_wrap=True)
    if final.status.value != "done":
        fail(f"import {final.id} ended {final.status.value}"
             + (f": {final.detail}" if final.detail else ""))
    counts = counts_of(final)
    not_stored = counts["rejected"] + counts["conflict"]
    if not_stored:
        fail(f"{not_stored:,} {'row' if not_stored == 1 else 'rows'} not stored: `embtune "
             f"imports rejections {final.id} -o FILE` lists them with their reasons")


def import_on_server(url: str, source: str, *, kind: str, file_format: ImportFormat | None,
                     follow: bool, as_json: bool) -> None:
    """`--server-side`: queue an import task of `source`, then follow it unless told not to."""
    location = location_of(source)
    with connect(url) as api:
        task = api.create_import(location, kind=kind,
                                 format=file_format.value if file_format else None)
        if as_json and not follow:
            print_json(task)
        elif not as_json:
            out_console().print(escape(f"import {task.id} {task.status.value}: {kind} from "
                                       f"{task.url}"), highlight=False, soft_wrap=True)
        if follow:
            follow_until_done(api, task.id, as_json)


# -- commands -------------------------------------------------------------------------------------
@app.command("list")
def list_imports(
    status: Annotated[str | None, typer.Option(
        help="pending, processing, done, canceled, failed or refused.")] = None,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    url: UrlOption = DEFAULT_URL,
    as_json: JsonOption = False,
) -> None:
    """Import tasks, newest first."""
    with connect(url) as api:
        page = api.list_imports(offset=offset, limit=limit, status=status)
    if as_json:
        print_json(page.items)
        return
    table = Table(title="import tasks", caption=page_caption(offset, len(page.items), page.total))
    table.add_column("id", no_wrap=True)
    table.add_column("status")
    table.add_column("kind")
    table.add_column("url", overflow="fold")
    table.add_column("progress")
    table.add_column("rows")
    table.add_column("created", no_wrap=True)
    for task in page.items:
        table.add_row(task.id, styled(task.status.value), str(task.data_kind or "—"),
                      Text(task.url),
                      Text(progress_line(task)), Text(counts_text(task)), when(task.created_at))
    out_console().print(table)


@app.command("show")
def show(
    task_id: TaskId,
    follow: Annotated[bool, typer.Option(
        "--follow", help="Watch it to the end (exit 1 unless it ends done with no row "
        "rejected).")] = False,
    url: UrlOption = DEFAULT_URL,
    as_json: JsonOption = False,
) -> None:
    """One import task: state, progress in rows and bytes, counts, and what the run did."""
    with connect(url) as api:
        if follow:
            follow_until_done(api, task_id, as_json)
            return
        task = api.get_import(task_id)
    if as_json:
        print_json(task)
        return
    out = out_console()
    out.print(fields_table(task_fields(task)))
    print_summary(task, out)


@app.command("events")
def events(task_id: TaskId, url: UrlOption = DEFAULT_URL, as_json: JsonOption = False) -> None:
    """The task's history: transitions and progress messages, oldest first."""
    with connect(url) as api:
        history = api.import_events(task_id)
    if as_json:
        print_json(history)
        return
    out_console().print(events_table(f"events of import {task_id}", history))


def show_new_status(task: ImportTaskPublic, as_json: bool) -> None:
    if as_json:
        print_json(task)
    else:
        out_console().print(f"import {task.id} {styled(task.status.value)}", highlight=False)


@app.command("cancel")
def cancel(task_id: TaskId, url: UrlOption = DEFAULT_URL, as_json: JsonOption = False) -> None:
    """Stop a pending or running import; the chunks it already committed stay stored."""
    with connect(url) as api:
        show_new_status(api.cancel_import(task_id), as_json)


@app.command("restart")
def restart(task_id: TaskId, url: UrlOption = DEFAULT_URL, as_json: JsonOption = False) -> None:
    """Queue a failed, refused or canceled import again: it resumes after its last committed
    chunk, not from the first row. A done import is final."""
    with connect(url) as api:
        show_new_status(api.restart_import(task_id), as_json)


@app.command("rejections")
def rejections(
    task_id: TaskId,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", dir_okay=False,
        help="Where to write the report (default: ./embtune-rejections-<id>.ndjson).")] = None,
    url: UrlOption = DEFAULT_URL,
) -> None:
    """Download the rows the import did not store, in file order: one
    `{"row", "field", "reason", "excerpt"}` JSON object per line."""
    target = output or Path(f"embtune-rejections-{task_id}.ndjson")
    # Into a temporary name first: a cut connection leaves no truncated report behind.
    partial = target.with_name(f".{target.name}.part")
    try:
        with connect(url, timeout=300.0) as api:
            api.download_rejections(task_id, partial)
        os.replace(partial, target)
    except OSError as exc:
        fail(f"{target}: {exc.strerror or exc}")
    finally:
        partial.unlink(missing_ok=True)
    with target.open("rb") as handle:
        count = sum(1 for line in handle if line.strip())
    out_console().print(escape(f"saved {target} ({count:,} rejected rows)"), highlight=False,
                        soft_wrap=True)
