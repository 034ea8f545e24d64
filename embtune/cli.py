"""The `embtune` command line."""

from __future__ import annotations

import json
import logging
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from embtune.config import Settings

app = typer.Typer(help="Fine-tune a search engine's embedding model from its clickstream.",
                  no_args_is_help=True)
db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)
app.add_typer(db_app, name="db")
items_app = typer.Typer(help="The item catalogue: searchable documents.", no_args_is_help=True)
app.add_typer(items_app, name="items")
console = Console(stderr=True)


def _logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8000,
    worker: Annotated[
        bool | None,
        typer.Option("--worker/--no-worker", help="Run a worker in this process "
                     "(default: only with the embedded broker)."),
    ] = None,
    log_level: Annotated[str, typer.Option()] = "info",
) -> None:
    """Run the API (and, on the embedded defaults, an in-process worker)."""
    import uvicorn

    from embtune.api.app import create_app

    _logging(log_level)
    settings = Settings()
    console.print(
        f"embtune serving on http://{host}:{port}  (database: {settings.resolved_database_url}, "
        f"broker: {settings.broker_kind})"
    )
    uvicorn.run(create_app(settings, run_worker=worker), host=host, port=port,
                log_level=log_level)


@app.command()
def worker(
    threads: Annotated[int | None, typer.Option(help="Concurrent tasks in this process.")] = None,
    log_level: Annotated[str, typer.Option()] = "info",
) -> None:
    """Run a worker against the configured Redis or RabbitMQ broker and shared database."""
    from embtune.runtime import Runtime

    _logging(log_level)
    settings = Settings()
    if settings.broker_kind == "embedded":
        console.print("[red]error:[/] `embtune worker` needs EMBTUNE_BROKER_URL (redis:// or "
                      "amqp://); the embedded broker lives inside `embtune serve`.")
        raise typer.Exit(2)
    runtime = Runtime.build(settings)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    runtime.start_worker(threads)
    runtime.start_recovery()
    console.print(f"embtune worker consuming queue {settings.queue_name!r} "
                  f"({settings.broker_kind})")
    stop.wait()
    console.print("stopping worker…")
    runtime.close()


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Apply database migrations (also done automatically at start-up)."""
    from embtune.storage import migrate
    from embtune.storage.db import make_engine

    settings = Settings()
    engine = make_engine(settings.resolved_database_url)
    migrate.upgrade(engine, revision)
    console.print(f"database at revision {migrate.current_revision(engine)}")


DEFAULT_URL = "http://127.0.0.1:8000"


class ImportFailed(Exception):
    """One readable line for the user; the import stops with a non-zero exit."""


def _fail(message: str) -> NoReturn:
    # soft_wrap: one line however narrow the terminal, so scripts can grep it
    console.print(f"[red]error:[/] {escape(message)}", soft_wrap=True)
    raise typer.Exit(1)


def _corpus_items(handle: Any, on_bytes: Any) -> Iterator[tuple[int, dict[str, Any] | None]]:
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


def _rejection(response: Any, lines: list[int]) -> str:
    """The server's first complaint, pointed at the file line it came from."""
    try:
        detail = response.json().get("detail")
    except ValueError:
        detail = response.text[:200]
    if isinstance(detail, list) and detail:
        first = detail[0]
        loc = [str(part) for part in first.get("loc", []) if part != "body"]
        where = ".".join(loc)
        if len(loc) >= 2 and loc[0] == "items" and loc[1].isdigit() and int(loc[1]) < len(lines):
            where = f"line {lines[int(loc[1])]}: {'.'.join(loc[2:]) or 'item'}"
        detail = f"{where}: {first.get('msg', '')}"
    return f"server refused the items ({response.status_code}): {detail}"


@items_app.command("import")
def items_import(
    file: Annotated[Path, typer.Argument(help="BEIR corpus JSONL: `{_id, title, text}` lines.")],
    url: Annotated[str, typer.Option(envvar="EMBTUNE_URL", help="embtune server.")] = DEFAULT_URL,
    batch_size: Annotated[int, typer.Option(min=1, max=1000, help="Items per request.")] = 500,
) -> None:
    """Upsert a corpus into the server's catalogue; safe to re-run (items are overwritten)."""
    import httpx
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    base_url = url.rstrip("/")
    if not file.is_file():
        _fail(f"{file}: no such file")
    counts = {"inserted": 0, "updated": 0, "skipped": 0}

    def send(client: httpx.Client, chunk: dict[str, tuple[int, dict[str, Any]]]) -> None:
        lines = [line for line, _ in chunk.values()]
        try:
            response = client.post(
                "/api/v1/items", json={"items": [item for _, item in chunk.values()]}
            )
        except httpx.HTTPError as exc:
            raise ImportFailed(f"cannot reach {base_url}: {exc or type(exc).__name__}") from None
        if response.status_code != 200:
            raise ImportFailed(_rejection(response, lines))
        body = response.json()
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
            httpx.Client(base_url=base_url, timeout=120.0) as client,
            file.open("rb") as handle,
            Progress(
                *columns, console=console, transient=True, disable=not console.is_terminal
            ) as progress,
        ):
            bar = progress.add_task(file.name, total=file.stat().st_size)
            # Keyed by id: a document repeated within one request keeps its last version,
            # as it would across requests.
            chunk: dict[str, tuple[int, dict[str, Any]]] = {}
            for line, item in _corpus_items(handle, lambda n: progress.advance(bar, n)):
                if item is None:
                    counts["skipped"] += 1
                    continue
                chunk.pop(item["object_id"], None)
                chunk[item["object_id"]] = (line, item)
                if len(chunk) >= batch_size:
                    send(client, chunk)
                    chunk = {}
            if chunk:
                send(client, chunk)
    except ImportFailed as exc:
        _fail(f"{file.name}: {exc}")
    except OSError as exc:
        _fail(f"{file}: {exc.strerror or exc}")
    console.print(
        escape(
            f"imported {counts['inserted'] + counts['updated']} items from {file.name} into "
            f"{base_url}: {counts['inserted']} new, {counts['updated']} updated"
            + (f", {counts['skipped']} skipped (no text)" if counts["skipped"] else "")
        ),
        soft_wrap=True,
    )


if __name__ == "__main__":
    app()
