"""`embtune clickstream prune`, `embtune clickstream erase-user` and `embtune audit list`: what
is kept, for how long, and how to erase it. The two clickstream commands are registered on the
`clickstream` group by `embtune.cli` (this module owns no group of its own but `audit`)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from embtune.cli.common import (
    JsonOption,
    UrlOption,
    compact,
    connect,
    fields_table,
    out_console,
    page_caption,
    print_json,
    when,
)
from embtune.client import DEFAULT_URL

audit_app = typer.Typer(help="The audit trail: erasures and retention's prunes.",
                        no_args_is_help=True)


def prune(url: UrlOption = DEFAULT_URL, as_json: JsonOption = False) -> None:
    """Run a retention pass now: released batches older than the server's
    EMBTUNE_CLICKSTREAM_RETENTION_DAYS lose their sessions, unless a task needs them."""
    with connect(url) as api:
        report = api.run_retention()
    if as_json:
        print_json(report)
        return
    if report.retention_days == 0 and report.batches == 0:
        out_console().print(
            "retention is off on the server (EMBTUNE_CLICKSTREAM_RETENTION_DAYS=0): nothing "
            "pruned", highlight=False, soft_wrap=True,
        )
        return
    out_console().print(fields_table(report.model_dump(), title="retention pass"))


def erase_user(
    user_id: Annotated[str, typer.Argument(metavar="USER_ID", help="The sessions' user_id.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    url: UrlOption = DEFAULT_URL,
    as_json: JsonOption = False,
) -> None:
    """Erase every session of one user, with its results and events (an audit row records the
    counts, never the user id). Safe to repeat: an unknown user erases nothing."""
    if not yes:
        typer.confirm(
            f"Erase every search session of user {user_id!r} with its results and events? "
            "This cannot be undone", abort=True,
        )
    with connect(url) as api:
        erased = api.erase_user(user_id)
    if as_json:
        print_json(erased)
        return
    out_console().print(
        f"erased {erased.sessions} sessions, {erased.results} shown results and "
        f"{erased.events} events", highlight=False, soft_wrap=True,
    )


@audit_app.command("list")
def audit_list(
    action: Annotated[str | None, typer.Option(help="erase_user or prune_batch.")] = None,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    url: UrlOption = DEFAULT_URL,
    as_json: JsonOption = False,
) -> None:
    """Erasures and prunes, newest first: who, when, how much."""
    with connect(url) as api:
        page = api.list_audit(offset=offset, limit=limit, action=action)
    if as_json:
        print_json(page.items)
        return
    table = Table(title="audit", caption=page_caption(offset, len(page.items), page.total))
    for column in ("id", "when", "action", "actor"):
        table.add_column(column, no_wrap=True)
    table.add_column("detail", overflow="fold")
    for event in page.items:
        table.add_row(
            str(event.id), when(event.created_at), event.action, event.actor,
            compact(event.detail),
        )
    out_console().print(table)
