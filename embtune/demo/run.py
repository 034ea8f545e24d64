"""`embtune demo`: the whole job, end to end, on the embedded defaults.

Starts the service in this process, feeds it a catalogue and a clickstream (a generated shop
where shoppers' jargon fools the base model, or a BEIR data set), fine-tunes through the task
API while showing progress, and prints what changed.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from embtune.client import Client
from embtune.config import Settings
from embtune.console import follow_task
from embtune.console_report import report_tables, verdict_lines
from embtune.demo import live_index
from embtune.demo.click_model import PositionBiasedClickModel
from embtune.demo.server import free_port, start_server

BASE_SOURCE = "builtin:all-MiniLM-L6-v2"
# The shop's task: short texts, a few epochs; 40 % of its 96 queries held out, so the click
# verdict has the 20 queries with clicks it needs to decide.
SHOP_PARAMS: dict[str, Any] = {"max_seq_length": 64, "epochs": 4, "learning_rate": 1e-4,
                               "batch_size": 16, "validation_fraction": 0.4}


def load_shop(api: Client, console: Console, sessions_per_query: int, seed: int) -> int:
    from embtune.demo.shop_data import build_catalogue
    from embtune.demo.simulate import top_k

    items, queries = build_catalogue(seed)
    api.upsert_items({"object_id": i.object_id, "text": i.text} for i in items)
    console.print(f"  uploaded {len(items)} catalogue items")
    corpus = {i.object_id: i.text for i in items}
    texts = {q.query_id: q.text for q in queries}
    shown = top_k(BASE_SOURCE, texts, corpus, k=10, max_seq_length=64)
    clicker = PositionBiasedClickModel(seed=seed)
    sessions = clicks = 0
    for query in queries:
        for n in range(sessions_per_query):
            session_id = f"shop-{query.query_id}-{n}"
            outcome = clicker.simulate(session_id, shown[query.query_id], query.relevant)
            api.post_session(session_id, query.text, shown[query.query_id])
            if outcome.clicks:
                api.push_events(session_id, [
                    {"event_id": f"{session_id}-{i}", "object_id": oid}
                    for i, oid in enumerate(outcome.clicks)
                ])
            if outcome.irrelevant:
                api.mark_irrelevant(session_id)
            sessions += 1
            clicks += len(outcome.clicks)
    console.print(f"  simulated {sessions} search sessions with {clicks} clicks "
                  "(shown results: the base model's top 10)")
    return sessions


def shop_truth(seed: int) -> list[dict[str, Any]]:
    """The shop's true answers as judged queries (every shop query, its one right product)."""
    from embtune.demo.shop_data import build_catalogue

    _, queries = build_catalogue(seed)
    return [
        {"query_id": q.query_id, "text": q.text,
         "relevant": [{"object_id": object_id, "grade": 1} for object_id in sorted(q.relevant)]}
        for q in queries
    ]


def beir_truth(beir: Path, split: str) -> list[dict[str, Any]]:
    """A BEIR split's qrels as judged queries (only queries with a catalogued answer)."""
    from embtune.demo.beir import load_qrels, load_queries

    texts = load_queries(beir)
    return [
        {"query_id": qid, "text": texts[qid],
         "relevant": [{"object_id": object_id, "grade": 1} for object_id in sorted(found)]}
        for qid, found in sorted(load_qrels(beir, split).items())
        if qid in texts
    ]


def register_truth(api: Client, console: Console, name: str,
                   queries: list[dict[str, Any]]) -> str:
    """The judged set the task is decided on; the one already stored under `name` when the
    data dir is reused (sets never change)."""
    from embtune.client import ConflictError

    try:
        found = api.create_evaluation_set(
            name, queries, description="the demo data's true answers")
    except ConflictError:
        found = api.get_evaluation_set(name)
    console.print(f"   evaluation set {found.name!r}: {found.queries_count} judged queries")
    return found.id


def _embed_all(api: Client, model_id: str, texts: list[str]) -> Any:
    import numpy as np

    vectors: list[list[float]] = []
    for start in range(0, len(texts), 256):
        vectors += api.embed(model_id, texts[start : start + 256])
    return np.asarray(vectors, dtype="float32")


def ground_truth_table(api: Client, models: dict[str, str], seed: int) -> Table:
    """Every shop query against the catalogue with its *true* answer, embedded through
    `POST /embedding-models/{id}/embed` — the way a search team would re-index."""
    import math

    from embtune.demo.shop_data import build_catalogue

    items, queries = build_catalogue(seed)
    item_ids = [i.object_id for i in items]
    scores: dict[str, dict[str, float]] = {}
    for label, model_id in models.items():
        docs = _embed_all(api, model_id, [i.text for i in items])
        qs = _embed_all(api, model_id, [q.text for q in queries])
        order = (qs @ docs.T).argsort(axis=1)[:, ::-1]
        ndcg = mrr = hit = 0.0
        for row, query in zip(order, queries, strict=True):
            ranked = [item_ids[j] for j in row[:10]]
            rank = next((r for r, oid in enumerate(ranked, 1) if oid in query.relevant), None)
            if rank is not None:
                ndcg += 1 / math.log2(rank + 1)
                mrr += 1 / rank
                hit += 1
        n = len(queries)
        scores[label] = {"ndcg@10": ndcg / n, "mrr@10": mrr / n, "recall@10": hit / n}
    table = Table(title=f"All {len(queries)} shop queries, true answers (vectors from /embed)")
    table.add_column("metric")
    for label in models:
        table.add_column(label, justify="right")
    table.add_column("change", justify="right")
    labels = list(models)
    first, last = labels[0], labels[-1]
    for name in ("ndcg@10", "mrr@10", "recall@10"):
        change = scores[last][name] - scores[first][name]
        table.add_row(name, *(f"{scores[label][name]:.4f}" for label in models),
                      f"{change:+.4f}")
    return table


def load_beir(api: Client, console: Console, beir: Path, split: str, limit: int | None,
              seed: int) -> int:
    from embtune.demo.beir import iter_corpus
    from embtune.demo.simulate import simulate_beir

    batch: list[dict[str, str]] = []
    count = 0
    for record in iter_corpus(beir / "corpus.jsonl"):
        batch.append(record)
        if len(batch) == 1000:
            api.upsert_items(batch)
            count += len(batch)
            batch = []
    if batch:
        api.upsert_items(batch)
        count += len(batch)
    console.print(f"  imported {count} items from {beir}")
    report = simulate_beir(
        api, beir, split=split, model_source=BASE_SOURCE,
        click_model=PositionBiasedClickModel(seed=seed), limit=limit,
        on_progress=lambda m: console.print(f"  {m}"),
    )
    console.print(f"  simulated {report.sessions} sessions, {report.clicks} clicks")
    return report.sessions


def run_demo(
    *,
    data_dir: Path,
    host: str = "127.0.0.1",
    port: int | None = None,
    beir: Path | None = None,
    split: str = "train",
    limit: int | None = None,
    params: dict[str, Any] | None = None,
    keep_serving: bool = False,
    fresh: bool = True,
    seed: int = 7,
    console: Console | None = None,
) -> dict[str, Any]:
    console = console or Console()
    if fresh and data_dir.exists():
        shutil.rmtree(data_dir)
    from embtune.runtime import prepare_task_process

    settings = Settings(data_dir=data_dir, broker_url="embedded")
    prepare_task_process(settings)  # before the server's threads start
    console.rule("[bold]embtune demo")
    console.print(f"1. starting the service on the embedded defaults (SQLite in {data_dir}, "
                  "in-process queue and worker)")
    server = start_server(settings, host, port or free_port())
    console.print(f"   API at {server.url}  ·  OpenAPI docs at {server.url}/docs")
    try:
        with Client(server.url, timeout=60) as api:
            console.print("2. registering the base model all-MiniLM-L6-v2")
            model = api.register_model("all-MiniLM-L6-v2", BASE_SOURCE)
            console.print(f"   model {model.id}")
            console.print("3. loading a catalogue and a clickstream")
            if beir is None:
                load_shop(api, console, sessions_per_query=6, seed=seed)
                truth = shop_truth(seed)
            else:
                load_beir(api, console, beir, split, limit, seed)
                judged_split = "test" if (beir / "qrels" / "test.tsv").is_file() else split
                truth = beir_truth(beir, judged_split)
            console.print("   the true answers become a judged evaluation set: the task's "
                          "verdict is decided on them, and the clicks get a verdict of their own")
            set_id = register_truth(api, console, f"demo-truth-{seed}", truth)
            if beir is None:  # a BEIR catalogue takes minutes to index on a CPU
                console.print("   the search index: production serves the base model")
                live_index.serve_base(api, console, model.id)
                console.print(live_index.search_table(api, "Live index before tuning"))
            default_params = dict(SHOP_PARAMS) if beir is None else {}
            # promoted to `production` only on a `better` verdict, in the transaction that
            # marks the task done
            task_params = {**default_params, "evaluation_set_id": set_id,
                           "promote_to": "production", **(params or {})}
            console.print("4. preflight: what a task would train on")
            preflight = api.preflight(model.id, params=task_params)
            for key, value in preflight.items():
                if not isinstance(value, dict | list):
                    console.print(f"   {key}: {value}")
            console.print("5. fine-tuning (POST /api/v1/fine-tuning/task)")
            task = api.create_task(model.id, params=task_params,
                                   idempotency_key=f"demo-{int(time.time())}")
            console.print(f"   task {task.id}")
            final = follow_task(api, task.id, console)
            if final.status.value != "done":
                console.print(f"[red]task ended {final.status.value}: {final.detail}")
                return {"status": final.status.value, "detail": final.detail}
            metrics = final.metrics or {}
            for part in [*verdict_lines(metrics), *report_tables(metrics)]:
                console.print(part)
            tuned = api.get_model(final.result_model_id or "")
            promoted = (metrics.get("promotion") or {}).get("promoted", False)
            if beir is None:
                live = "production" if promoted else tuned.id
                console.print(ground_truth_table(
                    api, {"base model": model.id, f"tuned model ({live})": live}, seed))
            if beir is None and promoted:
                console.print("   promoting to production reindexed its Qdrant sink; the "
                              "alias switched once every vector was written")
                if live_index.wait_live(api, console, tuned.id):
                    console.print(live_index.search_table(api, "Live index after the switch"))
            console.print(f"6. registered iteration {tuned.id} (parent {tuned.parent_id}); "
                          "tune it again with another task, or download it:")
            if promoted:
                console.print("   the alias [bold]production[/] now points at it; search "
                              "embeds through the alias, and `embtune alias rollback "
                              "production` undoes it:")
            handle = "production" if promoted else tuned.id
            console.print(f"   curl -o model.tar.gz {server.url}/api/v1/embedding-models/"
                          f"{handle}/download")
            console.print(f"Dashboard: [bold]{server.url}/[/]")
            if keep_serving:
                console.print("Serving until Ctrl-C …")
                try:
                    while server.thread.is_alive():
                        time.sleep(1)
                except KeyboardInterrupt:
                    pass
            return {"status": "done", "metrics": metrics, "task_id": final.id}
    finally:
        server.stop()
