"""`embtune model`: the registry of embedding models and their tuned iterations."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from embtune.cli.common import (
    JsonOption,
    UrlOption,
    compact,
    connect,
    fail,
    fields_table,
    out_console,
    page_caption,
    print_json,
    when,
)
from embtune.client import DEFAULT_URL
from embtune.schemas.models import ModelPublic

app = typer.Typer(help="Embedding models: register, list, inspect, download.",
                  no_args_is_help=True)


def model_fields(model: ModelPublic) -> dict[str, object]:
    return {
        "id": model.id,
        "name": model.name,
        "plugin": model.plugin_name,
        "source": model.source,
        "parent": model.parent_id or "—",
        "trained by task": model.task_id or "—",
        "created": when(model.created_at),
        "metrics": compact(model.metrics),
    }


@app.command("register")
def register(
    name: Annotated[str, typer.Argument(help="A name for people; ids are assigned.")],
    source: Annotated[str, typer.Argument(
        help="builtin:all-MiniLM-L6-v2, or an absolute model directory on the server.")],
    plugin: Annotated[str, typer.Option(help="Fine-tuning method (see GET /api/v1/plugins).")]
    = "sentence-transformers-mnrl",
    url: UrlOption = DEFAULT_URL,
    as_json: JsonOption = False,
) -> None:
    """Register a base model that tasks can fine-tune."""
    with connect(url) as api:
        model = api.register_model(name, source, plugin_name=plugin)
    if as_json:
        print_json(model)
    else:
        out_console().print(fields_table(model_fields(model), title="registered model"))


@app.command("list")
def list_models(
    offset: Annotated[int, typer.Option(min=0)] = 0,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    url: UrlOption = DEFAULT_URL,
    as_json: JsonOption = False,
) -> None:
    """Registered models, newest first."""
    with connect(url) as api:
        page = api.list_models(offset=offset, limit=limit)
    if as_json:
        print_json(page.items)
        return
    table = Table(title="embedding models", caption=page_caption(offset, len(page.items),
                                                                 page.total))
    table.add_column("id", no_wrap=True)
    table.add_column("name")
    table.add_column("plugin")
    table.add_column("parent", no_wrap=True)
    table.add_column("created", no_wrap=True)
    for model in page.items:
        table.add_row(model.id, escape(model.name), escape(model.plugin_name),
                      model.parent_id or "—", when(model.created_at))
    out_console().print(table)


@app.command("show")
def show(
    model_id: Annotated[str, typer.Argument(metavar="ID")],
    url: UrlOption = DEFAULT_URL,
    as_json: JsonOption = False,
) -> None:
    """One model, with its lineage back to the base model."""
    with connect(url) as api:
        model = api.get_model(model_id)
        lineage = api.lineage(model_id) if model.parent_id else [model]
    if as_json:
        print_json(model)
        return
    rows = model_fields(model)
    if len(lineage) > 1:
        rows["lineage"] = " ← ".join(f"{m.id} ({m.name})" for m in lineage)
    out_console().print(fields_table(rows))


@app.command("download")
def download(
    model_id: Annotated[str, typer.Argument(metavar="ID")],
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Where to write the tar.gz (default: ./embtune-model-<id>.tar.gz).",
        dir_okay=False)] = None,
    url: UrlOption = DEFAULT_URL,
) -> None:
    """Download a model's weights as a tar.gz, to serve it in your search engine."""
    target = output or Path(f"embtune-model-{model_id}.tar.gz")
    # Into a temporary name first: a cut connection leaves no truncated archive behind.
    partial = target.with_name(f".{target.name}.part")
    try:
        with connect(url, timeout=300.0) as api:
            api.download_model(model_id, partial)
        os.replace(partial, target)
    except OSError as exc:
        fail(f"{target}: {exc.strerror or exc}")
    finally:
        partial.unlink(missing_ok=True)
    out_console().print(f"saved {target} ({target.stat().st_size:,} bytes)", highlight=False)
