"""`embtune alias`: stable names (e.g. `production`) for model iterations, with history.

`embtune model download production` and `/embed` follow an alias, so a search engine can be
pointed at a name and moved with `alias set` / `alias rollback`. An alias with a vector sink is
reindexed into it on every move; `alias show` says whether the sink serves it yet."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from embtune.cli.common import (
    JsonOption,
    UrlOption,
    connect,
    fail,
    fields_table,
    out_console,
    page_caption,
    print_json,
    when,
)
from embtune.client import DEFAULT_URL
from embtune.schemas.aliases import AliasPublic, AliasServing

app = typer.Typer(help="Aliases: a stable name for a model iteration, with history.",
                  no_args_is_help=True)

ReasonOption = Annotated[str | None, typer.Option(help="Why; kept in the alias's history.")]
ExpectedOption = Annotated[int | None, typer.Option(
    "--expected-version", min=0,
    help="Change only if the alias is at this version (0: only if it is new).")]
SinkOption = Annotated[str | None, typer.Option(
    help='The vector sink the alias serves from, as JSON: \'{"type": "qdrant", "name": "shop"}\'.'
)]


def render(alias: AliasPublic, as_json: bool) -> None:
    if as_json:
        print_json(alias)
    else:
        show_alias(alias)


STATE_STYLES = {"live": "green", "reindexing": "yellow", "failed": "red", "no_sink": "dim"}


def serving_text(serving: AliasServing) -> Text:
    """The state, coloured: a reader scanning aliases looks for the ones not live."""
    return Text(serving.state, style=STATE_STYLES.get(serving.state, ""))


def sink_text(sink: dict[str, Any] | None) -> Text:
    """Plain text, never markup: a sink's URL may hold brackets."""
    if sink is None:
        return Text("—")
    name = f"{sink.get('type')} {sink.get('name')!r}"
    where = sink.get("url")
    return Text(f"{name} at {where}" if where else name)


def show_alias(alias: AliasPublic) -> None:
    console = out_console()
    serving = alias.serving
    fields: dict[str, Any] = {
        "alias": alias.name,
        "model": alias.model_id,
        "version": alias.version,
        "updated": when(alias.updated_at),
        "by": alias.updated_by,
        "sink": sink_text(alias.sink),
        "serving": serving_text(serving),
    }
    if alias.sink is not None:
        fields["sink serves"] = (
            f"{serving.model_id} ({serving.collection})" if serving.model_id else "—"
        )
    if serving.reindex_task_id:
        fields["reindex task"] = serving.reindex_task_id
    fields["detail"] = serving.detail
    console.print(fields_table(fields))
    table = Table(title="history, newest first")
    for column in ("version", "action", "model", "previous", "by", "when", "reason"):
        table.add_column(column, no_wrap=column not in ("reason",))
    for change in alias.history:
        table.add_row(str(change.version), change.action.value, change.model_id,
                      change.previous_model_id or "—", escape(change.actor),
                      when(change.created_at), escape(change.reason) or "—")
    console.print(table)


@app.command("set")
def set_alias(
    name: Annotated[str, typer.Argument(help="The alias, e.g. production.")],
    model_id: Annotated[str, typer.Argument(metavar="MODEL_ID")],
    reason: ReasonOption = None,
    expected_version: ExpectedOption = None,
    sink: SinkOption = None,
    url: UrlOption = DEFAULT_URL,
    as_json: JsonOption = False,
) -> None:
    """Point an alias at a model (creating the alias). With a sink, the alias serves from it:
    this and every later move reindexes the sink."""
    config = parse_sink(sink)
    with connect(url) as api:
        alias = api.set_alias(name, model_id, reason=reason, expected_version=expected_version,
                              sink=config)
    render(alias, as_json)


@app.command("sink")
def set_sink(
    name: Annotated[str, typer.Argument(help="The alias.")],
    sink: Annotated[str, typer.Argument(
        help='The sink as JSON, e.g. \'{"type": "qdrant", "name": "shop"}\', or `none`.')],
    url: UrlOption = DEFAULT_URL,
    as_json: JsonOption = False,
) -> None:
    """Name the vector sink an alias serves from (a new sink is reindexed), or `none`."""
    config = None if sink.strip().lower() == "none" else parse_sink(sink)
    with connect(url) as api:
        alias = api.set_alias_sink(name, config)
    render(alias, as_json)


def parse_sink(raw: str | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as exc:
        fail(f"--sink is not JSON: {exc.msg}")
    if not isinstance(config, dict):
        fail('--sink must be a JSON object, e.g. \'{"type": "parquet"}\'')
    return config


@app.command("list")
def list_aliases(
    offset: Annotated[int, typer.Option(min=0)] = 0,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    url: UrlOption = DEFAULT_URL,
    as_json: JsonOption = False,
) -> None:
    """Aliases by name, with the model each points at."""
    with connect(url) as api:
        page = api.list_aliases(offset=offset, limit=limit)
    if as_json:
        print_json(page.items)
        return
    table = Table(title="aliases", caption=page_caption(offset, len(page.items), page.total))
    for column in ("name", "model", "version", "serving", "sink", "updated", "by"):
        table.add_column(column, no_wrap=True)
    for alias in page.items:
        table.add_row(alias.name, alias.model_id, str(alias.version),
                      serving_text(alias.serving), sink_text(alias.sink),
                      when(alias.updated_at), escape(alias.updated_by))
    out_console().print(table)


@app.command("show")
def show(
    name: Annotated[str, typer.Argument()],
    url: UrlOption = DEFAULT_URL,
    as_json: JsonOption = False,
) -> None:
    """One alias with its history."""
    with connect(url) as api:
        alias = api.get_alias(name)
    render(alias, as_json)


@app.command("rollback")
def rollback(
    name: Annotated[str, typer.Argument()],
    reason: ReasonOption = None,
    expected_version: ExpectedOption = None,
    url: UrlOption = DEFAULT_URL,
    as_json: JsonOption = False,
) -> None:
    """Back to the model before the alias's live change; again to go further back."""
    with connect(url) as api:
        alias = api.rollback_alias(name, reason=reason, expected_version=expected_version)
    render(alias, as_json)
