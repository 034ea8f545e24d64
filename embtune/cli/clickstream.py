"""`embtune clickstream`: search sessions in (from a file or simulated), batches out."""

from __future__ import annotations

import dataclasses
import json
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Annotated, Any

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from embtune.cli.common import (
    JsonOption,
    UrlOption,
    connect,
    err_console,
    fail,
    fields_table,
    out_console,
    page_caption,
    print_json,
    usage_error,
    when,
)
from embtune.cli.imports import (
    FollowOption,
    FormatOption,
    ImportFormat,
    ServerSideOption,
    import_on_server,
)
from embtune.client import DEFAULT_URL, ApiError, Client, ConflictError, format_detail
from embtune.schemas.clickstream import BatchPublic

app = typer.Typer(help="Search sessions and the batches they are trained in.",
                  no_args_is_help=True)

BUILTIN_SOURCE = "builtin:all-MiniLM-L6-v2"


def session_rows(
    handle: IO[bytes], on_bytes: Callable[[int], Any]
) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """(line number, row) per non-blank line; for a line that is not a JSON object, the reason
    instead of the row. Everything else about a row is the server's to judge."""
    for number, raw in enumerate(handle, start=1):
        on_bytes(len(raw))
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except json.JSONDecodeError as exc:
            yield number, f"not valid JSON ({exc.msg})"
            continue
        except UnicodeDecodeError:
            yield number, "not valid JSON (not UTF-8 text)"
            continue
        yield number, row if isinstance(row, dict) else "expected a JSON object (a session)"


class ImportStopped(Exception):
    """The server refused a whole request (or could not be reached): the import stops there."""


@dataclasses.dataclass
class ImportTally:
    """What the rows of a client-side import came to, and where to report the ones the server
    did not store (rejected, or in conflict with a stored session of the same id)."""

    file_name: str
    report: Callable[[str], None]
    sessions: int = 0  # stored now: new and repeated
    new_sessions: int = 0
    repeated_sessions: int = 0
    conflicts: int = 0
    rejected: int = 0
    clicks: int = 0
    new_clicks: int = 0
    irrelevant: int = 0

    def reject(self, line: int, reason: str) -> None:
        self.rejected += 1
        self.report(f"{self.file_name}: line {line}: {reason}")

    def send(self, api: Client, chunk: list[tuple[int, dict[str, Any]]]) -> None:
        """One bulk request for the chunk; each row's outcome counted, its refusals reported."""
        try:
            answer = api.ingest_sessions_bulk([row for _, row in chunk])
        except ApiError as exc:
            hint = "; a smaller --batch-size may pass" if exc.status_code in (413, 422) else ""
            raise ImportStopped(
                f"lines {chunk[0][0]}-{chunk[-1][0]}: {format_detail(exc.detail)}{hint} (the "
                "lines before them are stored; running the import again is safe)") from None
        for result in answer.results:
            line, row = chunk[result.index]
            if result.status in ("accepted", "duplicate"):
                self.sessions += 1
                self.new_sessions += result.status == "accepted"
                self.repeated_sessions += result.status == "duplicate"
                self.clicks += len(row.get("clicks") or []) + len(row.get("events") or [])
                self.new_clicks += result.new_events
                self.irrelevant += row.get("irrelevant") is True
                continue
            reason = (format_detail([error.model_dump() for error in result.errors])
                      if result.errors else result.reason)
            if result.status == "conflict":
                self.conflicts += 1
                self.report(f"{self.file_name}: line {line}: {reason or 'conflict'}")
            else:
                self.reject(line, reason or "rejected")

    def counts(self) -> dict[str, int]:
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)
                if field.type == "int"}


@app.command("import")
def import_sessions(
    source: Annotated[str, typer.Argument(
        metavar="FILE",
        help='One session per line: a POST /api/v1/clickstream/session body, optionally with '
             '"clicks": \\[object_id, …], "events": \\[…] and "irrelevant": true. With '
             '--server-side also a Parquet file, or an fsspec URL the server can read.')],
    server_side: ServerSideOption = False,
    file_format: FormatOption = None,
    follow: FollowOption = True,
    batch_size: Annotated[int, typer.Option(
        min=1, max=1000, help="Sessions per bulk request (client-side import).")] = 1000,
    url: UrlOption = DEFAULT_URL,
    as_json: JsonOption = False,
) -> None:
    """Post recorded search sessions and their clicks, up to 1,000 per request; safe to re-run
    (repeats are counted, not stored twice).

    Each line's outcome is counted: new, repeated, in conflict (a stored session of the same id
    has another body) or rejected. Lines not stored are printed on stderr with their number and
    reason while the others are stored; the exit code is 1 when any line was not stored, 0 when
    all were. With --server-side the server reads the file itself, as an import task."""
    if server_side:
        import_on_server(url, source, kind="sessions", file_format=file_format, follow=follow,
                         as_json=as_json)
        return
    if "://" in source:
        usage_error(f"{source}: a URL is read by the server: add --server-side")
    if file_format is ImportFormat.parquet:
        usage_error("--format parquet needs --server-side (the client reads NDJSON only)")
    file = Path(source)
    if not file.is_file():
        fail(f"{file}: no such file")
    columns = (TextColumn("importing {task.description}"), BarColumn(), TimeRemainingColumn())
    try:
        with (
            connect(url, timeout=120.0) as api,
            file.open("rb") as handle,
            Progress(*columns, console=err_console, transient=True,
                     disable=not err_console.is_terminal) as progress,
        ):
            tally = ImportTally(file.name, lambda line: progress.console.print(
                f"[red]error:[/] {escape(line)}", soft_wrap=True, highlight=False))
            bar = progress.add_task(file.name, total=file.stat().st_size)
            chunk: list[tuple[int, dict[str, Any]]] = []
            for number, row in session_rows(handle, lambda n: progress.advance(bar, n)):
                if isinstance(row, str):
                    tally.reject(number, row)
                    continue
                chunk.append((number, row))
                if len(chunk) >= batch_size:
                    tally.send(api, chunk)
                    chunk = []
            if chunk:
                tally.send(api, chunk)
    except ImportStopped as exc:
        fail(f"{file.name}: {exc}")
    except OSError as exc:
        fail(f"{file}: {exc.strerror or exc}")
    counts = tally.counts()
    if as_json:
        print_json(counts)
    else:
        out_console().print(escape(
            f"imported {counts['sessions']} sessions from {file.name} "
            f"({counts['new_sessions']} new), {counts['clicks']} clicks "
            f"({counts['new_clicks']} new), {counts['irrelevant']} marked irrelevant; "
            f"{counts['repeated_sessions']} repeated, {counts['conflicts']} in conflict, "
            f"{counts['rejected']} rejected"), soft_wrap=True, highlight=False)
    if counts["conflicts"] or counts["rejected"]:
        raise typer.Exit(1)


def batch_fields(batch: BatchPublic) -> dict[str, Any]:
    return {
        "id": batch.id,
        "status": batch.status.value,
        "sessions": str(batch.sessions_count),
        "clicks": str(batch.clicks_count),
        "irrelevant": str(batch.irrelevant_count),
        "late events": str(batch.late_events),
        "tasks": ", ".join(batch.task_ids) or "—",
        "created": when(batch.created_at),
        "released": when(batch.released_at),
    }


@app.command("release")
def release(url: UrlOption = DEFAULT_URL, as_json: JsonOption = False) -> None:
    """Freeze the open batch for training (`task create --batch ID`) and open a new one."""
    with connect(url) as api:
        batch = BatchPublic.model_validate(api.release_batch())
    if as_json:
        print_json(batch)
    else:
        out_console().print(fields_table(batch_fields(batch), title="released batch"))


@app.command("batch")
def show_batch(
    batch_id: Annotated[str, typer.Argument(metavar="ID")],
    url: UrlOption = DEFAULT_URL,
    as_json: JsonOption = False,
) -> None:
    """One batch and what it holds."""
    with connect(url) as api:
        batch = BatchPublic.model_validate(api.get_batch(batch_id))
    if as_json:
        print_json(batch)
    else:
        out_console().print(fields_table(batch_fields(batch)))


@app.command("batches")
def list_batches(
    offset: Annotated[int, typer.Option(min=0)] = 0,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    url: UrlOption = DEFAULT_URL,
    as_json: JsonOption = False,
) -> None:
    """Batches, newest first, with the tasks that name each one: a released batch without a
    task is waiting for one (`task create --batch ID`)."""
    with connect(url) as api:
        page = api.list_batches(offset=offset, limit=limit)
    if as_json:
        print_json(page.items)
        return
    table = Table(title="batches", caption=page_caption(offset, len(page.items), page.total))
    for column in ("id", "status", "sessions", "clicks", "irrelevant", "late", "released"):
        table.add_column(column, no_wrap=True)
    table.add_column("tasks", overflow="fold")
    for batch in page.items:
        table.add_row(
            batch.id, batch.status.value, str(batch.sessions_count), str(batch.clicks_count),
            str(batch.irrelevant_count), str(batch.late_events), when(batch.released_at),
            ", ".join(batch.task_ids) or "—",
        )
    out_console().print(table)


def local_model_source(api: Client, source: str, model_id: str, stack: ExitStack) -> str:
    """A source this process can load: the alias or directory itself when it is here (same
    machine), else the model downloaded from the server into a temporary directory."""
    if source.startswith("builtin:") or Path(source).is_dir():
        return source
    import tarfile

    scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="embtune-model-")))
    err_console.print(f"downloading model {model_id} from {api.url}", highlight=False)
    archive = api.download_model(model_id, scratch / "model.tar.gz")
    with tarfile.open(archive) as tar:
        tar.extractall(scratch / "model", filter="data")
    root = scratch / "model"
    entries = list(root.iterdir())
    if len(entries) == 1 and entries[0].is_dir():  # an archive holding one top directory
        root = entries[0]
    return str(root)


def simulation_size(beir: Path, split: str, limit: int | None, per_query: int) -> int:
    from embtune.demo.beir import load_qrels, load_queries

    qrels = load_qrels(beir, split)
    queries = sum(1 for qid in load_queries(beir) if qid in qrels)
    return min(queries, limit if limit is not None else queries) * per_query


@app.command("simulate")
def simulate(
    beir: Annotated[Path, typer.Option(
        help="BEIR data set directory: corpus.jsonl, queries.jsonl, qrels/<split>.tsv. "
             "Import its corpus first (`embtune items import DIR/corpus.jsonl`).",
        file_okay=False)],
    split: Annotated[str, typer.Option(help="qrels split the clicks are drawn from.")] = "train",
    model_id: Annotated[str | None, typer.Option(
        help=f"Show this model's top results (default: {BUILTIN_SOURCE}).")] = None,
    sessions_per_query: Annotated[int, typer.Option(min=1)] = 3,
    top_k: Annotated[int, typer.Option(min=1, max=1000, help="Results shown per search.")] = 10,
    limit: Annotated[int | None, typer.Option(min=1, help="At most this many queries.")] = None,
    seed: Annotated[int, typer.Option(help="Click model seed: same seed, same clicks.")] = 0,
    max_seq_length: Annotated[int, typer.Option(min=8)] = 256,
    prefix: Annotated[str, typer.Option(help="Session ids are <prefix>-<split>-<query>-<n>; "
                                        "change it to simulate again with another model.")]
    = "sim",
    url: UrlOption = DEFAULT_URL,
    as_json: JsonOption = False,
) -> None:
    """Simulate users searching a BEIR data set and clicking what the qrels call relevant."""
    from embtune.demo.click_model import PositionBiasedClickModel
    from embtune.demo.simulate import simulate_beir

    for needed in ("corpus.jsonl", "queries.jsonl", f"qrels/{split}.tsv"):
        if not (beir / needed).is_file():
            usage_error(f"--beir {beir}: no {needed} there")
    total = simulation_size(beir, split, limit, sessions_per_query)
    with ExitStack() as stack:
        api = stack.enter_context(connect(url, timeout=60.0))
        source = BUILTIN_SOURCE
        if model_id is not None:
            source = local_model_source(api, api.get_model(model_id).source, model_id, stack)
        progress = stack.enter_context(Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeRemainingColumn(), console=err_console, transient=True,
            disable=not err_console.is_terminal,
        ))
        bar = progress.add_task("ranking with the model", total=total)
        try:
            report = simulate_beir(
                api, beir, split=split, model_source=source,
                click_model=PositionBiasedClickModel(seed=seed),
                sessions_per_query=sessions_per_query, k=top_k, max_seq_length=max_seq_length,
                limit=limit, prefix=prefix,
                on_progress=lambda message: progress.update(bar, description=message),
                on_session=lambda: progress.update(bar, advance=1,
                                                   description="posting sessions"),
            )
        except ConflictError as exc:  # same session ids, other results shown
            fail(f"{format_detail(exc.detail)}; pass another --prefix to simulate again")
    if as_json:
        print_json(dataclasses.asdict(report))
        return
    rows = {name.replace("_", " "): str(value)
            for name, value in dataclasses.asdict(report).items()}
    out_console().print(fields_table(rows, title=f"simulated clickstream ({source})"))
