"""`embtune evalset`: judged query sets that runs are scored on — import, list, show, export —
and `embtune model evalset`, a model's default set."""

from __future__ import annotations

import json
import re
from functools import partial
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
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
from embtune.cli.evalset_files import ReadSet, SetFileError, read_beir, read_jsonl
from embtune.client import DEFAULT_URL, ApiError, Client, UnavailableError, format_detail
from embtune.domain.evaluation_sets import NAME_MAX_LENGTH
from embtune.schemas.evaluation_sets import EvaluationSetPublic

app = typer.Typer(help="Judged evaluation sets: queries with graded relevant items, the ground "
                  "truth a tuned model is scored on.", no_args_is_help=True)

SetRef = Annotated[str, typer.Argument(metavar="SET", help="The set's id or name.")]


def set_fields(evaluation_set: EvaluationSetPublic) -> dict[str, object]:
    return {
        "id": evaluation_set.id,
        "name": evaluation_set.name,
        "description": evaluation_set.description or "—",
        "queries": evaluation_set.queries_count,
        "judgements": evaluation_set.judgements_count,
        "created": when(evaluation_set.created_at),
    }


def default_name(stem: str) -> str:
    """A set name from a file or directory name: other characters become `-`."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-._")[:NAME_MAX_LENGTH]
    return name or "evaluation-set"


def _read(source: Path, kind: str, split: str) -> ReadSet:
    """Read with a progress bar over the file bytes (stderr, only on a terminal)."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

    if kind == "beir":
        files = [source / "queries.jsonl", source / "qrels" / f"{split}.tsv"]
    else:
        files = [source]
    total = sum(f.stat().st_size for f in files if f.is_file())
    with Progress(
        TextColumn("reading {task.description}"), BarColumn(), DownloadColumn(),
        console=err_console, transient=True, disable=not err_console.is_terminal,
    ) as progress:
        bar = progress.add_task(source.name, total=total)
        advance = partial(progress.advance, bar)
        if kind == "beir":
            return read_beir(source, split, advance)
        return read_jsonl(source, advance)


def rejection(exc: ApiError, read: ReadSet, body_bytes: int) -> str:
    """The server's refusal in the file's terms: a field error points at its line or query."""
    if exc.status_code == 413:
        return (
            f"the set is {_size(body_bytes)} as JSON, over what the server accepts in one "
            f"request ({format_detail(exc.detail)}): raise EMBTUNE_MAX_BODY_BYTES on the "
            "server (20 MiB by default), or split the set"
        )
    if isinstance(exc, UnavailableError) and exc.status_code == 0:
        return format_detail(exc.detail)
    detail = exc.detail
    if isinstance(detail, list) and detail:
        parts = []
        for error in detail[:5]:
            loc = [str(part) for part in error.get("loc", []) if part != "body"]
            where = ".".join(loc)
            if len(loc) >= 2 and loc[0] == "queries" and loc[1].isdigit() \
                    and int(loc[1]) < len(read.origins):
                where = f"{read.origins[int(loc[1])]}: {'.'.join(loc[2:]) or 'query'}"
            parts.append(f"{where}: {error.get('msg', '')}")
        more = f" (and {len(detail) - 5} more)" if len(detail) > 5 else ""
        detail = "; ".join(parts) + more
    return f"server refused the set ({exc.status_code}): {format_detail(detail)}"


def _size(count: int) -> str:
    return f"{count / 2**20:.1f} MiB" if count >= 2**20 else f"{count / 1024:.1f} KiB"


@app.command("import")
def import_set(
    beir: Annotated[Path | None, typer.Option(
        "--beir", metavar="DIR", help="A BEIR directory: queries.jsonl and qrels/<split>.tsv "
        "(graded scores kept).", file_okay=False)] = None,
    split: Annotated[str, typer.Option(help="The BEIR qrels split.")] = "test",
    jsonl: Annotated[Path | None, typer.Option(
        "--jsonl", metavar="FILE", help='One query per line: {"query_id", "text", "relevant": '
        '[{"object_id", "grade"}]}.', dir_okay=False)] = None,
    name: Annotated[str | None, typer.Option(
        help="Default: the directory name and split, or the file name.")] = None,
    description: Annotated[str | None, typer.Option()] = None,
    url: UrlOption = DEFAULT_URL,
    as_json: JsonOption = False,
) -> None:
    """Store a judged set on the server, whole, in one request.

    Its items must already be in the catalogue (`embtune items import`). Sets never change: a
    corrected set needs a new name."""
    if (beir is None) == (jsonl is None):
        usage_error("give one of --beir DIR or --jsonl FILE")
    source = beir or jsonl
    assert source is not None
    if not source.exists():
        fail(f"{source}: no such {'directory' if beir else 'file'}")
    name = name or default_name(f"{source.name}-{split}" if beir else source.stem)
    try:
        read = _read(source, "beir" if beir else "jsonl", split)
    except SetFileError as exc:
        fail(f"{source.name}: {exc}")
    except OSError as exc:
        fail(f"{source}: {exc.strerror or exc}")
    if not read.queries:
        fail(f"{source.name}: no query with a relevant item to import")
    try:
        with (
            Client(url, timeout=600.0) as api,
            err_console.status(f"storing {len(read.queries)} queries as {name!r}",
                               spinner="dots"),
        ):
            created = api.create_evaluation_set(name, read.queries, description=description)
    except ApiError as exc:
        body = {"name": name, "description": description, "queries": read.queries}
        fail(f"{source.name}: {rejection(exc, read, len(json.dumps(body).encode()))}")
    if as_json:
        print_json(created)
        return
    skipped = f"; {read.skipped} skipped (no item graded above 0)" if read.skipped else ""
    out_console().print(
        escape(f"imported set {created.name!r} ({created.id}): {created.queries_count} "
               f"queries, {created.judgements_count} judgements{skipped}"),
        soft_wrap=True, highlight=False,
    )


@app.command("list")
def list_sets(
    offset: Annotated[int, typer.Option(min=0)] = 0,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    url: UrlOption = DEFAULT_URL,
    as_json: JsonOption = False,
) -> None:
    """Evaluation sets, newest first."""
    with connect(url) as api:
        page = api.list_evaluation_sets(offset=offset, limit=limit)
    if as_json:
        print_json(page.items)
        return
    table = Table(title="evaluation sets",
                  caption=page_caption(offset, len(page.items), page.total))
    table.add_column("id", no_wrap=True)
    table.add_column("name")
    table.add_column("queries", justify="right")
    table.add_column("judgements", justify="right")
    table.add_column("created", no_wrap=True)
    for found in page.items:
        table.add_row(found.id, escape(found.name), str(found.queries_count),
                      str(found.judgements_count), when(found.created_at))
    out_console().print(table)


@app.command("show")
def show(set_ref: SetRef, url: UrlOption = DEFAULT_URL, as_json: JsonOption = False) -> None:
    """One set's header (its queries: `embtune evalset export`)."""
    with connect(url) as api:
        found = api.get_evaluation_set(set_ref)
    if as_json:
        print_json(found)
        return
    out_console().print(fields_table(set_fields(found)))


@app.command("export")
def export(
    set_ref: SetRef,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Where to write the JSONL (default: stdout).",
        dir_okay=False)] = None,
    url: UrlOption = DEFAULT_URL,
) -> None:
    """The set's queries as JSONL, one per line in posted order: what `import --jsonl` reads."""
    written = 0
    try:
        with connect(url, timeout=120.0) as api:
            queries = api.evaluation_queries(set_ref)
            if output is None:
                for query in queries:
                    print(json.dumps(query, ensure_ascii=False))
                return
            # a temporary name first: a cut connection leaves no truncated file behind
            partial = output.with_name(f".{output.name}.part")
            try:
                with partial.open("w", encoding="utf-8") as handle:
                    for query in queries:
                        handle.write(json.dumps(query, ensure_ascii=False) + "\n")
                        written += 1
                partial.replace(output)
            finally:
                partial.unlink(missing_ok=True)
    except OSError as exc:
        fail(f"{output}: {exc.strerror or exc}")
    err_console.print(escape(f"wrote {written} queries to {output}"), highlight=False)


def model_evalset(
    model_id: Annotated[str, typer.Argument(metavar="MODEL_ID", show_default=False)],
    set_ref: Annotated[str | None, typer.Argument(
        metavar="SET", help="The set's id or name.")] = None,
    none: Annotated[bool, typer.Option("--none", help="Clear the model's default set.")]
    = False,
    url: UrlOption = DEFAULT_URL,
    as_json: JsonOption = False,
) -> None:
    """Name the judged set the model's tasks are scored on unless a task names another."""
    if (set_ref is None) == (not none):
        usage_error("give a SET (id or name) or --none")
    with connect(url) as api:
        model = api.set_model_evaluation_set(model_id, set_ref)
    if as_json:
        print_json(model)
        return
    out_console().print(
        escape(f"model {model.id}: evaluation set {model.evaluation_set_id or 'none'}"),
        highlight=False,
    )
