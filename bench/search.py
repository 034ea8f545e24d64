"""Hyperparameter search on a SciFact subset: the best trial against the default params.

Through the running service (embedded defaults, in this process): import a subset of SciFact's
corpus (every document a kept query judges relevant, plus random others), simulate sessions
from some train queries with the base model's top 10 and a position-biased click model, then on
the same batch run (1) a task with the default learning rate and warm-up and (2) a task with
`params.search` over the learning rate (log) and the warm-up ratio, median-pruned. Both tasks
share every other param. Reports each trial (state, value, where pruned), the default task's
and the best trial's **test** NDCG@10 over the subset corpus, and how many trials pruning
stopped early. Prints figures; asserts nothing.

    .venv/bin/python bench/search.py [--beir DIR] [--trials 5] [--metric click_dcg@10] \
        [--out bench/out/search.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from embtune.client import Client  # noqa: E402
from embtune.config import Settings  # noqa: E402
from embtune.demo.beir import load_corpus, load_qrels, load_queries  # noqa: E402
from embtune.demo.click_model import PositionBiasedClickModel  # noqa: E402
from embtune.demo.run import BASE_SOURCE  # noqa: E402
from embtune.demo.server import free_port, start_server  # noqa: E402
from embtune.demo.simulate import simulate_beir  # noqa: E402

# Shared by both tasks: short texts and one epoch keep a trial to a few minutes on 2 CPU cores.
BASE_PARAMS = {"max_seq_length": 128, "epochs": 1, "batch_size": 32, "seed": 0}
SPACE = {
    "learning_rate": {"type": "float", "low": 1e-5, "high": 3e-4, "log": True},
    "warmup_ratio": {"type": "float", "low": 0.0, "high": 0.3},
}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def subset(beir: Path, out: Path, train_queries: int, extra_docs: int, seed: int) -> dict:
    """A BEIR directory with `train_queries` train queries, every test query, the documents
    either judges relevant and `extra_docs` random others."""
    rng = random.Random(seed)
    train = load_qrels(beir, "train")
    test = load_qrels(beir, "test")
    kept_train = dict(sorted(train.items())[:train_queries])
    relevant = {d for docs in (*kept_train.values(), *test.values()) for d in docs}
    corpus_lines = (beir / "corpus.jsonl").read_text().splitlines()
    others = [line for line in corpus_lines if json.loads(line)["_id"] not in relevant]
    chosen = {json.loads(line)["_id"] for line in rng.sample(others, extra_docs)} | relevant
    (out / "qrels").mkdir(parents=True)
    (out / "corpus.jsonl").write_text(
        "\n".join(line for line in corpus_lines if json.loads(line)["_id"] in chosen) + "\n"
    )
    (out / "queries.jsonl").write_text((beir / "queries.jsonl").read_text())
    for name, qrels in (("train", kept_train), ("test", test)):
        rows = ["query-id\tcorpus-id\tscore"] + [
            f"{qid}\t{doc}\t1" for qid, docs in qrels.items() for doc in docs if doc in chosen
        ]
        (out / "qrels" / f"{name}.tsv").write_text("\n".join(rows) + "\n")
    return {"documents": len(chosen), "train_queries": len(kept_train), "test_queries": len(test)}


def follow(api: Client, task_id: str, label: str) -> Any:
    last = ""
    final = None
    for snapshot in api.follow(task_id, interval_s=5):
        line = f"{label}: {snapshot.status.value} {snapshot.progress.message}"
        if line != last:
            log(line)
            last = line
        final = snapshot
    if final is None or final.status.value != "done":
        raise SystemExit(f"{label} ended {final.status.value if final else '?'}: "
                         f"{final.detail if final else ''}")
    return final


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--beir", type=Path, default=ROOT.parent / "shared" / "data" / "scifact")
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--metric", default="click_dcg@10")
    parser.add_argument("--train-queries", type=int, default=300)
    parser.add_argument("--extra-docs", type=int, default=500)
    parser.add_argument("--sessions-per-query", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "search.json")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="embtune-search-"))
    data = workdir / "scifact"
    started_all = time.monotonic()
    results: dict[str, Any] = {"subset": subset(args.beir, data, args.train_queries,
                                                args.extra_docs, seed=0)}
    log(f"subset: {results['subset']}")
    settings = Settings(data_dir=workdir / "data", broker_url="embedded")
    server = start_server(settings, "127.0.0.1", free_port())
    try:
        with Client(server.url, timeout=120) as api:
            corpus = load_corpus(data)
            items = [{"object_id": oid, "text": text} for oid, text in corpus.items()]
            for start in range(0, len(items), 1000):
                api.upsert_items(items[start : start + 1000])
            model = api.register_model("all-MiniLM-L6-v2", BASE_SOURCE)
            log("simulating sessions from the train queries (base model's top 10)")
            sim = simulate_beir(api, data, split="train", model_source=BASE_SOURCE,
                                click_model=PositionBiasedClickModel(seed=0),
                                sessions_per_query=args.sessions_per_query, max_seq_length=128)
            results["simulation"] = sim.__dict__
            log(f"simulation: {sim}")

            default_task = api.create_task(model.id, params=BASE_PARAMS)
            default = follow(api, default_task.id, "default params")
            results["default_task_s"] = default.metrics["performance"].get("total_s")
            search_spec = {"trials": args.trials, "metric": args.metric, "space": SPACE,
                           "pruner": "median", "startup_trials": 1,
                           "evaluations_per_epoch": 2, "eval_queries": 16}
            started = time.monotonic()
            search_task = api.create_task(model.id, batch_id=default.batch_id,
                                          params={**BASE_PARAMS, "search": search_spec})
            searched = follow(api, search_task.id, "search")
            results["search_task_s"] = round(time.monotonic() - started, 1)
            results["search"] = searched.metrics["search"]
            trials = api.task_trials(search_task.id)
            results["trials"] = [
                {"number": t.number, "state": t.state, "params": t.params, "value": t.value,
                 "pruned_at": t.pruned_at} for t in trials
            ]
            for t in results["trials"]:
                log(f"trial {t['number']}: {t['state']} value={t['value']} "
                    f"pruned_at={t['pruned_at']} params={t['params']}")
            default_model = api.get_model(default.result_model_id or "")
            best_model = api.get_model(searched.result_model_id or "")

        log("evaluating base, default-params and best-trial models on the test split")
        from embtune.services.search_study import trial_value
        from embtune.training.evaluation import evaluate_retrieval
        from embtune.training.models import load_model

        qrels = load_qrels(data, "test")
        queries = {q: t for q, t in load_queries(data).items() if q in qrels}
        test: dict[str, Any] = {}
        for name, source in (("base", BASE_SOURCE), ("default_params", default_model.source),
                             ("best_trial", best_model.source)):
            report = evaluate_retrieval(load_model(source, 128), queries, corpus, qrels)
            test[name] = {k: round(v, 4) for k, v in report.metrics.items()}
            log(f"test {name}: {test[name]}")
        results["test"] = test
        results["validation_value"] = {
            "default_params": trial_value(default.metrics, args.metric),
            "best_trial": results["search"]["best_value"],
        }
        results["pruned"] = results["search"]["pruned"]
        results["total_s"] = round(time.monotonic() - started_all, 1)
    finally:
        server.stop()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
