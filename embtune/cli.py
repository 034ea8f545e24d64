"""The `embtune` command line."""

from __future__ import annotations

import logging
import signal
import threading
from typing import Annotated

import typer
from rich.console import Console

from embtune.config import Settings

app = typer.Typer(help="Fine-tune a search engine's embedding model from its clickstream.",
                  no_args_is_help=True)
db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)
app.add_typer(db_app, name="db")
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


if __name__ == "__main__":
    app()
