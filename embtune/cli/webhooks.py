"""`embtune webhooks`: endpoints that receive signed task, alias and reindex events (add, list,
show, enable, disable, remove) and each one's delivery log (deliveries, redeliver)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from embtune.cli.common import (
    JsonOption,
    UrlOption,
    connect,
    err_console,
    fields_table,
    out_console,
    page_caption,
    print_json,
    when,
)
from embtune.client import DEFAULT_URL
from embtune.domain.webhooks import WebhookEvent
from embtune.schemas.webhooks import DeliveryPublic, WebhookPublic

app = typer.Typer(help="Webhooks: signed HTTP callbacks on task, alias and reindex events.",
                  no_args_is_help=True)

EndpointId = Annotated[str, typer.Argument(metavar="ID", help="The webhook endpoint id.")]
EVENT_NAMES = ", ".join(e.value for e in WebhookEvent)
STATUS_STYLES = {"delivered": "green", "pending": "yellow", "failed": "red"}


def enabled_text(endpoint: WebhookPublic) -> Text:
    return Text("enabled", style="green") if endpoint.enabled else Text("disabled", style="red")


def show_endpoint(endpoint: WebhookPublic) -> None:
    fields = {
        "id": endpoint.id,
        "url": endpoint.url,
        "events": ", ".join(e.value for e in endpoint.events),
        "state": enabled_text(endpoint),
        "failures in a row": endpoint.consecutive_failures,
        "description": endpoint.description,
        "created": when(endpoint.created_at),
        "updated": when(endpoint.updated_at),
    }
    if endpoint.disabled_reason:
        fields["disabled because"] = endpoint.disabled_reason
    out_console().print(fields_table(fields))


@app.command("add")
def add(
    url_: Annotated[str, typer.Argument(metavar="URL", help="Where deliveries are POSTed.")],
    event: Annotated[list[str], typer.Option(
        "--event", "-e", help=f"An event to receive; repeatable. One of: {EVENT_NAMES}.")],
    secret: Annotated[str | None, typer.Option(
        help="The signing secret (whsec_ + base64); default: one is generated.")] = None,
    description: Annotated[str | None, typer.Option(help="A note for people.")] = None,
    url: UrlOption = DEFAULT_URL,
    as_json: JsonOption = False,
) -> None:
    """Register an endpoint. Prints its signing secret, which is never shown again."""
    with connect(url) as api:
        created = api.create_webhook(url_, event, secret=secret, description=description)
    if as_json:
        print_json(created)
        return
    show_endpoint(created)
    out_console().print(Text(f"secret: {created.secret}", style="bold"))
    err_console.print("Keep the secret: it is not shown again. Receivers verify each "
                      "delivery's webhook-signature with it.")


@app.command("list")
def list_endpoints(
    offset: Annotated[int, typer.Option(min=0)] = 0,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    url: UrlOption = DEFAULT_URL,
    as_json: JsonOption = False,
) -> None:
    """Registered endpoints, oldest first."""
    with connect(url) as api:
        page = api.list_webhooks(offset=offset, limit=limit)
    if as_json:
        print_json(page.items)
        return
    table = Table(title="webhooks", caption=page_caption(offset, len(page.items), page.total))
    for column in ("id", "url", "events", "state", "failures"):
        table.add_column(column, no_wrap=column != "events", overflow="fold")
    for endpoint in page.items:
        table.add_row(endpoint.id, Text(endpoint.url), ", ".join(e.value for e in endpoint.events),
                      enabled_text(endpoint), str(endpoint.consecutive_failures))
    out_console().print(table)


@app.command("show")
def show(endpoint_id: EndpointId, url: UrlOption = DEFAULT_URL,
         as_json: JsonOption = False) -> None:
    """One endpoint (without its secret)."""
    with connect(url) as api:
        endpoint = api.get_webhook(endpoint_id)
    if as_json:
        print_json(endpoint)
    else:
        show_endpoint(endpoint)


def _set_enabled(endpoint_id: str, enabled: bool, url: str, as_json: bool) -> None:
    with connect(url) as api:
        endpoint = api.update_webhook(endpoint_id, enabled=enabled)
    if as_json:
        print_json(endpoint)
    else:
        show_endpoint(endpoint)


@app.command("enable")
def enable(endpoint_id: EndpointId, url: UrlOption = DEFAULT_URL,
           as_json: JsonOption = False) -> None:
    """Enable an endpoint (its failure count starts afresh; waiting deliveries go out)."""
    _set_enabled(endpoint_id, True, url, as_json)


@app.command("disable")
def disable(endpoint_id: EndpointId, url: UrlOption = DEFAULT_URL,
            as_json: JsonOption = False) -> None:
    """Stop sending to an endpoint; its deliveries wait until it is enabled."""
    _set_enabled(endpoint_id, False, url, as_json)


@app.command("remove")
def remove(endpoint_id: EndpointId, url: UrlOption = DEFAULT_URL) -> None:
    """Delete an endpoint and its delivery log."""
    with connect(url) as api:
        api.delete_webhook(endpoint_id)
    out_console().print(f"removed webhook {escape(endpoint_id)}")


def deliveries_table(title: str, caption: str, items: list[DeliveryPublic]) -> Table:
    table = Table(title=title, caption=caption)
    for column in ("id", "event", "webhook-id", "status", "attempts", "last", "error", "created"):
        table.add_column(column, no_wrap=column != "error", overflow="fold")
    for d in items:
        last = str(d.last_status_code) if d.last_status_code is not None else "—"
        table.add_row(d.id, d.event_type, d.message_id,
                      Text(d.status.value, style=STATUS_STYLES.get(d.status.value, "")),
                      str(d.attempts), last, Text(d.last_error or "—"), when(d.created_at))
    return table


@app.command("deliveries")
def deliveries(
    endpoint_id: EndpointId,
    status: Annotated[str | None, typer.Option(
        help="Only deliveries in this state: pending, delivered or failed.")] = None,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    url: UrlOption = DEFAULT_URL,
    as_json: JsonOption = False,
) -> None:
    """An endpoint's delivery log, newest first."""
    with connect(url) as api:
        page = api.webhook_deliveries(endpoint_id, offset=offset, limit=limit, status=status)
    if as_json:
        print_json(page.items)
        return
    caption = page_caption(offset, len(page.items), page.total)
    out_console().print(deliveries_table(f"deliveries of {endpoint_id}", caption, page.items))


@app.command("redeliver")
def redeliver(
    endpoint_id: EndpointId,
    delivery_id: Annotated[str, typer.Argument(metavar="DELIVERY_ID")],
    url: UrlOption = DEFAULT_URL,
    as_json: JsonOption = False,
) -> None:
    """Send a delivery's message again (same webhook-id)."""
    with connect(url) as api:
        delivery = api.redeliver_webhook(endpoint_id, delivery_id)
    if as_json:
        print_json(delivery)
        return
    out_console().print(deliveries_table("redelivery", "due now", [delivery]))
