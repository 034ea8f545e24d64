"""The demo's last leg: the live search index. The alias `production` serves from a Qdrant
collection (local mode in the data dir); moving the alias reindexes it, and the demo searches
the live index before and after the tuned model is switched in."""

from __future__ import annotations

import time

from rich.console import Console
from rich.table import Table

from embtune.client import Client

SINK = {"type": "qdrant", "name": "shop"}
ALIAS = "production"
QUERIES = ("white cans", "cheap white kicks", "jumper in green")  # shoppers' jargon


def serve_base(api: Client, console: Console, model_id: str) -> None:
    """Point `production` at the base model with a Qdrant sink, and wait for its index."""
    alias = api.set_alias(ALIAS, model_id, reason="the base model serves first", sink=SINK)
    console.print(f"   alias {ALIAS} → base model, served from Qdrant collection alias "
                  f"'{SINK['name']}' (reindex task {alias.serving.reindex_task_id})")
    wait_live(api, console, model_id)


def wait_live(api: Client, console: Console, model_id: str, timeout_s: float = 300) -> bool:
    """Until the alias's sink serves `model_id` (its reindex done); False on a failure."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        serving = api.get_alias(ALIAS).serving
        if serving.state == "live" and serving.model_id == model_id:
            task = api.get_reindex_task(serving.reindex_task_id) if serving.reindex_task_id \
                else None
            if task is not None and task.metrics:
                m = task.metrics
                console.print(f"   reindexed {m['items']} items into {m['collection']}: "
                              f"{m['encoded']} encoded, {m['reused']} from the task's cache, "
                              f"alias switched in {m['timings_s'].get('switch', 0) * 1000:.1f} ms")
            return True
        if serving.state == "failed":
            console.print(f"[red]   the index was not switched: {serving.detail}")
            return False
        time.sleep(0.2)
    console.print("[red]   the reindex did not finish in time")
    return False


def search_table(api: Client, title: str) -> Table:
    """The live index's top 3 for a few shop queries, through `POST /api/v1/search`."""
    table = Table(title=title)
    for column in ("query", "rank", "item", "score"):
        table.add_column(column, justify="right" if column in ("rank", "score") else "left")
    served = ""
    for query in QUERIES:
        result = api.search(query, alias=ALIAS, k=3)
        served = f"model …{result.model_id[-6:]} · {result.collection}"
        for rank, hit in enumerate(result.hits, 1):
            text = api.get_item(hit.object_id)["text"]
            table.add_row(query if rank == 1 else "", str(rank), text[:48], f"{hit.score:.3f}")
    table.caption = f"served by {served}"
    return table
