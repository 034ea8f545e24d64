"""Commands that run embtune itself: `serve`, `worker`, `db upgrade` and `demo`."""

from __future__ import annotations

import ipaddress
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.markup import escape

from embtune.cli.common import ParamOption, ParamsJsonOption, err_console, parse_params, usage_error
from embtune.config import Settings

db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)


def _logging(level: str) -> None:
    from embtune.log_redaction import RedactTokens

    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for handler in logging.getLogger().handlers:  # no `token=` query value in any log line
        handler.addFilter(RedactTokens())


def load_settings() -> Settings:
    """The settings, or one `error:` line naming each bad variable. Never the input: pydantic
    would print the offending value, and EMBTUNE_API_TOKEN is a secret."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_input=False, include_url=False):
            name = "EMBTUNE_" + "_".join(str(part) for part in error["loc"]).upper()
            message = error["msg"].removeprefix("Value error, ")
            problems.append(message if message.startswith(name) else f"{name}: {message}")
        usage_error("invalid settings: " + "; ".join(problems))


def shown_database_url(url: str) -> str:
    """The database URL for a log line, its password masked."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(unparsable EMBTUNE_DATABASE_URL)"


def is_loopback(host: str) -> bool:
    """`localhost`, 127.0.0.0/8 or ::1 (also as `[::1]` or IPv4-mapped): only this machine can
    connect. `0.0.0.0`, `::` and any other name or address are reachable from elsewhere."""
    name = host.strip().removeprefix("[").removesuffix("]").lower()
    if name == "localhost":
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False  # a host name: it may resolve to anything
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def check_bind(host: str, token: str | None, insecure: bool) -> str | None:
    """Why serving on `host` would be unsafe, or None. Off loopback, whoever reaches the port
    could read the clickstream, start tasks and download models: a token is required unless
    the operator accepts that with --insecure (e.g. behind an authenticating proxy)."""
    if token or insecure or is_loopback(host):
        return None
    return (
        f"refusing to serve on {host} without an API token: set EMBTUNE_API_TOKEN, "
        "bind 127.0.0.1, or pass --insecure to allow unauthenticated access"
    )


def serve(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8000,
    worker: Annotated[
        bool | None,
        typer.Option("--worker/--no-worker", help="Run a worker in this process "
                     "(default: only with the embedded broker)."),
    ] = None,
    insecure: Annotated[
        bool,
        typer.Option("--insecure", help="Allow a non-loopback --host without "
                     "EMBTUNE_API_TOKEN (anyone reaching the port gets full access)."),
    ] = False,
    processes: Annotated[
        int,
        typer.Option(min=1, max=64, help="API server processes sharing the port (needs a "
                     "Redis or RabbitMQ broker; run task workers with `embtune worker`)."),
    ] = 1,
    log_level: Annotated[str, typer.Option()] = "info",
) -> None:
    """Run the API (and, on the embedded defaults, an in-process worker)."""
    settings = load_settings()
    token = settings.api_token.get_secret_value() if settings.api_token else None
    problem = check_bind(host, token, insecure) or check_processes(
        processes, settings.broker_kind, worker
    )
    if problem:
        usage_error(problem)
    if processes == 1 and settings.runs_worker_in_api(worker):
        from embtune.runtime import prepare_task_process

        prepare_task_process(settings)  # before uvicorn starts any thread

    import uvicorn

    from embtune.api.app import create_app
    from embtune.log_redaction import uvicorn_log_config

    _logging(log_level)
    if not token and not is_loopback(host):
        err_console.print(
            f"[yellow]warning:[/] serving on {escape(host)} with no API token (--insecure)"
        )
    err_console.print(
        f"embtune serving on http://{escape(host)}:{port}  "
        f"(database: {escape(shown_database_url(settings.resolved_database_url))}, "
        f"broker: {settings.broker_kind})"
    )
    # uvicorn's logging with `token=` query values redacted: an old `/?token=` bookmark or a
    # script must never write the API token into the access log.
    log_config = uvicorn_log_config()
    if processes > 1:  # each process builds its app from the same environment
        uvicorn.run("embtune.api.app:create_app", factory=True, workers=processes,
                    host=host, port=port, log_level=log_level, log_config=log_config)
    else:
        uvicorn.run(create_app(settings, run_worker=worker), host=host, port=port,
                    log_level=log_level, log_config=log_config)


def check_processes(processes: int, broker_kind: str, worker: bool | None) -> str | None:
    """The embedded broker lives inside one process: several API processes would each have
    their own queue, so they need a shared broker — and task workers of their own."""
    if processes == 1:
        return None
    if broker_kind == "embedded":
        return ("--processes needs a shared broker: set EMBTUNE_BROKER_URL to redis://… or "
                "amqp://… (the embedded broker lives inside one process)")
    if worker:
        return "--processes runs API processes only; start task workers with `embtune worker`"
    return None


def worker(
    threads: Annotated[int | None, typer.Option(help="Concurrent tasks in this process.")] = None,
    log_level: Annotated[str, typer.Option()] = "info",
) -> None:
    """Run a worker against the configured Redis or RabbitMQ broker and shared database."""
    from embtune.runtime import Runtime, prepare_task_process

    _logging(log_level)
    settings = load_settings()
    if settings.broker_kind == "embedded":
        usage_error("`embtune worker` needs EMBTUNE_BROKER_URL (redis:// or amqp://); the "
                    "embedded broker lives inside `embtune serve`.")
    prepare_task_process(settings)  # before any thread starts
    runtime = Runtime.build(settings)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    peaks = runtime.measure_host()  # once per host (cached): the denominator of utilization
    err_console.print(
        f"matmul peak on {peaks.get('device')}: "
        + ", ".join(f"{k} {peaks[k]:.0f} GFLOP/s" for k in ("fp32", "bf16", "fp16") if peaks.get(k))
        + (" (cached)" if peaks.get("cached") else "")
    )
    runtime.start_worker(threads)
    runtime.start_recovery()
    err_console.print(f"embtune worker consuming queue {settings.queue_name!r} "
                      f"({settings.broker_kind})")
    stop.wait()
    err_console.print("stopping worker…")
    runtime.close()


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Apply database migrations (also done automatically at start-up)."""
    from embtune.storage import migrate
    from embtune.storage.db import make_engine

    settings = load_settings()
    engine = make_engine(settings.resolved_database_url)
    migrate.upgrade(engine, revision)
    err_console.print(f"database at revision {migrate.current_revision(engine)}")


@db_app.command("recount")
def db_recount() -> None:
    """Rebuild the per-status task tallies behind list totals from the tasks themselves —
    after loading tasks with plain SQL, or if servers of a release before the tallies kept
    writing during an upgrade."""
    from embtune.storage import migrate, task_counts
    from embtune.storage.db import Database, make_engine

    settings = load_settings()
    engine = make_engine(settings.resolved_database_url)
    migrate.upgrade(engine)
    db = Database(engine)
    with db.transaction() as session:
        task_counts.recount(session)
        totals = task_counts.by_status(session)
    err_console.print(
        "task totals: " + (", ".join(f"{s} {n}" for s, n in totals.items()) or "no tasks")
    )


def demo(
    beir: Annotated[
        Path | None,
        typer.Option(help="A BEIR data set directory (corpus.jsonl, queries.jsonl, qrels/) "
                     "instead of the generated shop.", file_okay=False),
    ] = None,
    split: Annotated[str, typer.Option(help="qrels split to simulate clicks from.")] = "train",
    limit: Annotated[int | None, typer.Option(min=1, help="At most this many queries.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to serve on (default: a free one).")]
    = None,
    data_dir: Annotated[
        Path, typer.Option(help="Wiped and refilled on every run.", file_okay=False)
    ] = Path(".embtune/demo"),
    keep_serving: Annotated[
        bool | None,
        typer.Option("--keep-serving/--exit", help="Keep the service up for the dashboard "
                     "afterwards (default: only when run in a terminal)."),
    ] = None,
    param: ParamOption = None,
    params_json: ParamsJsonOption = None,
) -> None:
    """The whole job end to end on the embedded defaults: serve, load data, fine-tune, compare."""
    from embtune.demo.run import run_demo

    params = parse_params(param, params_json)
    if beir is not None and not (beir / "corpus.jsonl").is_file():
        usage_error(f"--beir {beir}: no corpus.jsonl there")
    # run_demo wipes the directory: never let a mistyped path cost someone their data.
    if data_dir.is_dir() and any(data_dir.iterdir()) and not (data_dir / "embtune.db").exists():
        usage_error(f"--data-dir {data_dir}: not empty and not an embtune data directory; "
                    "refusing to wipe it")
    result = run_demo(
        data_dir=data_dir,
        port=port,
        beir=beir,
        split=split,
        limit=limit,
        params=params or None,
        keep_serving=sys.stdout.isatty() if keep_serving is None else keep_serving,
    )
    if result.get("status") != "done":
        raise typer.Exit(1)
