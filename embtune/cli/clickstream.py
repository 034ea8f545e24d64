"""`embtune clickstream`: search sessions in (from a file or simulated), batches out."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tempfile
from collections.abc import Iterator
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
from embtune.client import DEFAULT_URL, ApiError, Client, ConflictError, format_detail
from embtune.schemas.clickstream import BatchPublic

app = typer.Typer(help="Search sessions and the batches they are trained in.",
                  no_args_is_help=True)

BUILTIN_SOURCE = "builtin:all-MiniLM-L6-v2"
MAX_ID_LENGTH = 200  # ExternalId in the API schemas


class BadLine(Exception):
    """A line of the sessions file that cannot be posted; the import stops there."""


def click_events(session_id: str, clicks: list[Any]) -> list[dict[str, Any]]:
    """Events with ids derived from the session and the click's position, so importing the same
    file twice records each click once."""
    stem = session_id
    if len(stem) + 8 > MAX_ID_LENGTH:  # keep `<stem>-c<i>` a valid id for the longest ids
        stem = hashlib.sha256(session_id.encode()).hexdigest()
    events = []
    for index, click in enumerate(clicks):
        event = {"object_id": click} if isinstance(click, str) else dict(click)
        event.setdefault("event_id", f"{stem}-c{index}")
        events.append(event)
    return events


def session_lines(
    handle: IO[bytes], on_bytes: Any
) -> Iterator[tuple[int, dict[str, Any], list[Any], bool]]:
    """(line number, session body, clicks, irrelevant) per non-blank line."""
    for number, raw in enumerate(handle, start=1):
        on_bytes(len(raw))
        if not raw.strip():
            continue
        try:
            body = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise BadLine(f"line {number}: not valid JSON ({exc.msg})") from None
        if not isinstance(body, dict) or not isinstance(body.get("session_id"), str):
            raise BadLine(f"line {number}: expected an object with a string `session_id`")
        clicks = body.pop("clicks", None) or []
        irrelevant = body.pop("irrelevant", False)
        if not isinstance(clicks, list) or not all(
            isinstance(c, str) or (isinstance(c, dict) and "object_id" in c) for c in clicks
        ):
            raise BadLine(f"line {number}: `clicks` must be a list of object ids")
        if not isinstance(irrelevant, bool):
            raise BadLine(f"line {number}: `irrelevant` must be true or false")
        yield number, body, clicks, irrelevant


@app.command("import")
def import_sessions(
    file: Annotated[Path, typer.Argument(
        metavar="FILE.jsonl",
        help='One session per line: a POST /api/v1/clickstream/session body, optionally with '
             '"clicks": [object_id, …] and "irrelevant": true.')],
    url: UrlOption = DEFAULT_URL,
    as_json: JsonOption = False,
) -> None:
    """Post recorded search sessions and their clicks; safe to re-run (repeats are skipped)."""
    if not file.is_file():
        fail(f"{file}: no such file")
    counts = {"sessions": 0, "new_sessions": 0, "clicks": 0, "new_clicks": 0, "irrelevant": 0}
    columns = (TextColumn("importing {task.description}"), BarColumn(), TimeRemainingColumn())
    try:
        with (
            connect(url, timeout=60.0) as api,
            file.open("rb") as handle,
            Progress(*columns, console=err_console, transient=True,
                     disable=not err_console.is_terminal) as progress,
        ):
            bar = progress.add_task(file.name, total=file.stat().st_size)
            for number, body, clicks, irrelevant in session_lines(
                handle, lambda n: progress.advance(bar, n)
            ):
                try:
                    post_session(api, body, clicks, irrelevant, counts)
                except ApiError as exc:
                    raise BadLine(f"line {number}: {format_detail(exc.detail)}") from None
    except BadLine as exc:
        fail(f"{file.name}: {exc}")
    except OSError as exc:
        fail(f"{file}: {exc.strerror or exc}")
    if as_json:
        print_json(counts)
        return
    out_console().print(escape(
        f"imported {counts['sessions']} sessions from {file.name} "
        f"({counts['new_sessions']} new), {counts['clicks']} clicks ({counts['new_clicks']} new), "
        f"{counts['irrelevant']} marked irrelevant"), soft_wrap=True, highlight=False)


def post_session(api: Client, body: dict[str, Any], clicks: list[Any], irrelevant: bool,
                 counts: dict[str, int]) -> None:
    session_id = body["session_id"]
    _, created = api.create_session(body)
    counts["sessions"] += 1
    counts["new_sessions"] += created
    if clicks:
        pushed = api.push_events(session_id, click_events(session_id, clicks))
        counts["clicks"] += pushed["received"]
        counts["new_clicks"] += pushed["new"]
    if irrelevant:
        api.mark_irrelevant(session_id)
        counts["irrelevant"] += 1


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
