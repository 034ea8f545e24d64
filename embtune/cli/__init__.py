"""The `embtune` command line: the service's own processes (`serve`, `worker`, `db`, `demo`) and
a client for everything else, which talks to a server over HTTP through `embtune.client`.

One module per command group; this one only assembles them.
"""

from __future__ import annotations

import typer

from embtune.cli import (
    aliases,
    clickstream,
    data,
    evalsets,
    imports,
    items,
    models,
    reindex,
    server,
    tasks,
    webhooks,
)

app = typer.Typer(
    help="Fine-tune a search engine's embedding model from its clickstream.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals may hold tokens and request bodies
)
app.command()(server.serve)
app.command()(server.worker)
app.command()(server.demo)
app.add_typer(server.db_app, name="db")
app.add_typer(models.app, name="model")
app.add_typer(aliases.app, name="alias")
app.add_typer(items.app, name="items")
app.add_typer(evalsets.app, name="evalset")
models.app.command("evalset")(evalsets.model_evalset)
app.add_typer(clickstream.app, name="clickstream")
clickstream.app.command("prune")(data.prune)
clickstream.app.command("erase-user")(data.erase_user)
app.add_typer(data.audit_app, name="audit")
app.add_typer(tasks.app, name="task")
app.add_typer(reindex.app, name="reindex")
app.add_typer(imports.app, name="imports")
app.command("search")(reindex.search)
app.add_typer(webhooks.app, name="webhooks")
models.app.command("vectors")(reindex.model_vectors)

__all__ = ["app"]
