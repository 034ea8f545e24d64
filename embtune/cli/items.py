"""`embtune items`: the catalogue of searchable documents."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Annotated, Any

import typer
from rich.markup import escape

from embtune.cli.common import (
    JsonOption,
    UrlOption,
    err_console,
    fail,
    out_console,
    print_json,
    usage_error,
)
from embtune.cli.imports import FollowOption, FormatOption, ServerSideOption, import_on_server
from embtune.client import DEFAULT_URL, ApiError, Client, UnavailableError, format_detail

app = typer.Typer(help="The item catalogue: searchable documents.", no_args_is_help=True)


class ImportFailed(Exception):
    """One readable line for the user; the import stops with a non-zero exit."""


def corpus_items(
    handle: IO[bytes], on_bytes: Callable[[int], Any]
) -> Iterator[tuple[int, dict[str, Any] | None]]:
    """(line number, item) per line of a BEIR corpus; None for a document with no text."""
    for number, raw in enumerate(handle, start=1):
        on_bytes(len(raw))
        if not raw.strip():
            continue
        try:
            doc = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ImportFailed(f"line {number}: not valid JSON ({exc.msg})") from None
        if not isinstance(doc, dict) or doc.get("_id") in (None, ""):
            raise ImportFailed(f"line {number}: expected an object with an `_id`")
        title = str(doc.get("title") or "").strip()
        text = str(doc.get("text") or "").strip()
        if title and text:
            text = f"{title}. {text}"
        elif title:
            text = title
        if not text:
            yield number, None
            continue
        item: dict[str, Any] = {"object_id": str(doc["_id"]), "text": text}
        if isinstance(doc.get("metadata"), dict) and doc["metadata"]:
            item["meta"] = doc["metadata"]
        yield number, item


def rejection(exc: ApiError, lines: list[int]) -> str:
    """The server's first complaint, pointed at the file line it came from."""
    if isinstance(exc, UnavailableError) and exc.status_code == 0:
        return format_detail(exc.detail)
    detail = exc.detail
    if isinstance(detail, list) and detail:
        first = detail[0]
        loc = [str(part) for part in first.get("loc", []) if part != "body"]
        where = ".".join(loc)
        if len(loc) >= 2 and loc[0] == "items" and loc[1].isdigit() and int(loc[1]) < len(lines):
            where = f"line {lines[int(loc[1])]}: {'.'.join(loc[2:]) or 'item'}"
        detail = f"{where}: {first.get('msg', '')}"
    return f"server refused the items ({exc.status_code}): {format_detail(detail)}"


@app.command("import")
def items_import(
    source: Annotated[str, typer.Argument(
        metavar="FILE", help="BEIR corpus JSONL: `{_id, title, text}` lines. With --server-side: "
        "`{object_id, text, meta?}` rows in NDJSON or Parquet, at a path or fsspec URL the "
        "server can read.")],
    url: UrlOption = DEFAULT_URL,
    batch_size: Annotated[int, typer.Option(min=1, max=1000, help="Items per request.")] = 500,
    server_side: ServerSideOption = False,
    file_format: FormatOption = None,
    follow: FollowOption = True,
    as_json: JsonOption = False,
) -> None:
    """Upsert a corpus into the server's catalogue; safe to re-run (items are overwritten).

    With --server-side the server reads the file itself, as an import task."""
    if server_side:
        import_on_server(url, source, kind="items", file_format=file_format, follow=follow,
                         as_json=as_json)
        return
    if "://" in source or file_format is not None:
        usage_error("URLs and --format need --server-side (the client reads a BEIR corpus)")
    file = Path(source)
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    if not file.is_file():
        fail(f"{file}: no such file")
    counts = {"inserted": 0, "updated": 0, "skipped": 0}

    def send(api: Client, chunk: dict[str, tuple[int, dict[str, Any]]]) -> None:
        try:
            body = api.upsert_items(item for _, item in chunk.values())
        except ApiError as exc:
            raise ImportFailed(rejection(exc, [line for line, _ in chunk.values()])) from None
        counts["inserted"] += body["inserted"]
        counts["updated"] += body["updated"]

    columns = (
        TextColumn("importing {task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    try:
        with (
            Client(url, timeout=120.0) as api,
            file.open("rb") as handle,
            Progress(
                *columns, console=err_console, transient=True,
                disable=not err_console.is_terminal,
            ) as progress,
        ):
            bar = progress.add_task(file.name, total=file.stat().st_size)
            # Keyed by id: a document repeated within one request keeps its last version,
            # as it would across requests.
            chunk: dict[str, tuple[int, dict[str, Any]]] = {}
            for line, item in corpus_items(handle, lambda n: progress.advance(bar, n)):
                if item is None:
                    counts["skipped"] += 1
                    continue
                chunk.pop(item["object_id"], None)
                chunk[item["object_id"]] = (line, item)
                if len(chunk) >= batch_size:
                    send(api, chunk)
                    chunk = {}
            if chunk:
                send(api, chunk)
    except ImportFailed as exc:
        fail(f"{file.name}: {exc}")
    except OSError as exc:
        fail(f"{file}: {exc.strerror or exc}")
    if as_json:
        print_json(counts)
        return
    out_console().print(
        escape(
            f"imported {counts['inserted'] + counts['updated']} items from {file.name} into "
            f"{url.rstrip('/')}: {counts['inserted']} new, {counts['updated']} updated"
            + (f", {counts['skipped']} skipped (no text)" if counts["skipped"] else "")
        ),
        soft_wrap=True,
        highlight=False,
    )


@app.command("delete")
def items_delete(
    object_ids: Annotated[list[str], typer.Argument(help="Object ids to remove.")],
    url: UrlOption = DEFAULT_URL,
) -> None:
    """Remove items from the catalogue; the next incremental reindex removes them from its
    sink. Unknown ids are skipped."""
    try:
        with Client(url) as api:
            deleted = sum(
                api.delete_items(object_ids[start : start + 1000])
                for start in range(0, len(object_ids), 1000)
            )
    except ApiError as exc:
        fail(f"could not delete items: {format_detail(exc.detail)}")
    out_console().print(
        f"deleted {deleted} of {len(object_ids)} items", highlight=False, soft_wrap=True
    )
