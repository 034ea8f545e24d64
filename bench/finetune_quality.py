"""Fine-tuning quality and throughput on a real data set (default: SciFact from ../shared).

Through the running service (embedded defaults, in this process): import the corpus, simulate
sessions from the train queries with the base model's top 10 and a position-biased click model,
fine-tune all-MiniLM-L6-v2 with default params, then report on the *test* queries and qrels over
the full corpus NDCG@10, MRR@10 and Recall@100 of the base and the tuned model. In the same run,
plain sentence-transformers fits the same examples with the same settings, for the training
throughput ratio. Prints figures; asserts nothing.

    .venv/bin/python bench/finetune_quality.py [--beir DIR] [--params '{"epochs": 1}'] \
        [--skip-throughput] [--out bench/out/quality.json]
"""

from __future__ import annotations

import argparse
import json
import os
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
from embtune.demo.beir import iter_corpus, load_corpus, load_qrels, load_queries  # noqa: E402
from embtune.demo.click_model import PositionBiasedClickModel  # noqa: E402
from embtune.demo.run import BASE_SOURCE  # noqa: E402
from embtune.demo.server import free_port, start_server  # noqa: E402
from embtune.demo.simulate import simulate_beir  # noqa: E402


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def plain_throughput(rows: list[dict], params: dict, epochs: int, workdir: Path) -> dict:
    """Plain sentence-transformers: MNRL over the same rows, same batch size, lr and length."""
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    from embtune.artifacts import resolve_source

    model = SentenceTransformer(str(resolve_source(BASE_SOURCE)), device="cpu")
    model.max_seq_length = params["max_seq_length"]
    # The same rows in the same two shapes the service trains on (with / without a hard
    # negative), as two datasets of one loss: standard sentence-transformers multi-dataset use.
    triplets = [{"anchor": r["anchor"], "positive": r["positive"], "negative": r["negative"]}
                for r in rows if r.get("negative")]
    pairs = [{"anchor": r["anchor"], "positive": r["positive"]}
             for r in rows if not r.get("negative")]
    datasets = {name: Dataset.from_list(part)
                for name, part in (("triplets", triplets), ("pairs", pairs)) if part}
    args = SentenceTransformerTrainingArguments(
        output_dir=str(workdir / "plain"), num_train_epochs=epochs,
        per_device_train_batch_size=params["batch_size"], learning_rate=params["learning_rate"],
        warmup_steps=params["warmup_ratio"], seed=params["seed"], save_strategy="no",
        report_to="none", disable_tqdm=True, logging_steps=50,
    )
    trainer = SentenceTransformerTrainer(
        model=model, args=args, train_dataset=datasets,
        loss=MultipleNegativesRankingLoss(model),
    )
    started = time.monotonic()
    trainer.train()
    seconds = time.monotonic() - started
    return {"rows": len(rows), "epochs": epochs, "seconds": round(seconds, 1),
            "examples_per_s": round(len(rows) * epochs / seconds, 3)}


def service_throughput(rows: list[dict], params: dict, epochs: int, workdir: Path) -> dict:
    """The service's own training path (`embtune.training.trainer.fine_tune`, with its progress
    and cancellation callbacks) on the same rows, under the same conditions as the plain run."""
    from embtune.training.models import load_model
    from embtune.training.params import SentenceTransformerParams
    from embtune.training.trainer import fine_tune

    st_params = SentenceTransformerParams.model_validate({**params, "epochs": epochs})
    model = load_model(BASE_SOURCE, st_params.max_seq_length, device="cpu")
    started = time.monotonic()
    outcome = fine_tune(model, rows, "mnrl", st_params, workdir / "service", lambda _: None,
                        lambda: False)
    seconds = time.monotonic() - started
    return {"rows": len(rows), "epochs": epochs, "seconds": round(seconds, 1),
            "train_runtime_s": round(outcome.runtime_s, 1),
            "examples_per_s": round(len(rows) * epochs / outcome.runtime_s, 3)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--beir", type=Path, default=ROOT.parent / "shared" / "data" / "scifact")
    parser.add_argument("--params", default="{}", help="task params as JSON (default: defaults)")
    parser.add_argument("--sessions-per-query", type=int, default=3)
    parser.add_argument("--plain-epochs", type=int, default=1)
    parser.add_argument("--skip-throughput", action="store_true",
                        help="quality only: no plain-vs-service training throughput runs")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "quality.json")
    args = parser.parse_args()
    params = json.loads(args.params)

    workdir = Path(tempfile.mkdtemp(prefix="embtune-bench-"))
    settings = Settings(data_dir=workdir / "data", broker_url="embedded")
    server = start_server(settings, "127.0.0.1", free_port())
    results: dict = {"data_set": str(args.beir), "params_override": params}
    try:
        with Client(server.url, timeout=120) as api:
            log("importing corpus")
            chunk: list[dict] = []
            for record in iter_corpus(args.beir / "corpus.jsonl"):
                chunk.append(record)
                if len(chunk) == 1000:
                    api.upsert_items(chunk)
                    chunk = []
            if chunk:
                api.upsert_items(chunk)
            model = api.register_model("all-MiniLM-L6-v2", BASE_SOURCE)
            log("simulating sessions from the train queries (base model's top 10)")
            started = time.monotonic()
            sim = simulate_beir(api, args.beir, split="train", model_source=BASE_SOURCE,
                                click_model=PositionBiasedClickModel(seed=0),
                                sessions_per_query=args.sessions_per_query,
                                on_progress=log)
            results["simulation"] = {**sim.__dict__, "seconds": round(time.monotonic() - started)}
            log(f"simulation: {sim}")
            preflight = api.preflight(model.id, params=params or None)
            results["preflight"] = preflight
            log(f"preflight: {json.dumps(preflight)}")
            started = time.monotonic()
            task = api.create_task(model.id, params=params or None)
            last = ""
            for snapshot in api.follow(task.id, interval_s=5):
                line = f"{snapshot.status.value} {snapshot.progress.message} " \
                       f"{snapshot.progress.fraction:.2f}"
                if line != last:
                    log(line)
                    last = line
                final = snapshot
            results["task_seconds"] = round(time.monotonic() - started, 1)
            if final.status.value != "done":
                raise SystemExit(f"task ended {final.status.value}: {final.detail}")
            metrics = final.metrics or {}
            results["validation"] = {k: metrics.get(k) for k in ("before", "after", "delta")}
            results["per_query"] = {k: v for k, v in metrics["per_query"].items()
                                    if k != "worst_regressions"}
            results["service_training"] = metrics["training"]
            results["data"] = metrics["data"]
            results["params"] = metrics["params"]
            tuned = api.get_model(final.result_model_id or "")

        log("evaluating base and tuned model on the test split over the full corpus")
        from embtune.training.evaluation import evaluate_retrieval
        from embtune.training.models import load_model

        qrels = load_qrels(args.beir, "test")
        queries = {q: t for q, t in load_queries(args.beir).items() if q in qrels}
        corpus = load_corpus(args.beir)
        seq = results["params"]["max_seq_length"]
        test = {}
        for name, source in (("base", BASE_SOURCE), ("tuned", tuned.source)):
            report = evaluate_retrieval(load_model(source, seq), queries, corpus, qrels)
            test[name] = {k: round(v, 4) for k, v in report.metrics.items()}
            log(f"test {name}: {test[name]}")
        test["delta_ndcg@10"] = round(test["tuned"]["ndcg@10"] - test["base"]["ndcg@10"], 4)
        results["test"] = test

        if args.skip_throughput:
            return finish(results, args.out, server)
        log("plain sentence-transformers on the same examples")
        from embtune.training.data import prepare
        from embtune.training.params import SentenceTransformerParams

        runtime = server.server.config.app.state.runtime
        data = runtime.clickstream.training_data(final.batch_id)
        st_params = SentenceTransformerParams.model_validate(results["params"])
        rows = prepare(data, st_params, "mnrl").rows
        plain = plain_throughput(rows, results["params"], args.plain_epochs, workdir)
        results["plain_training"] = plain
        service_rate = results["service_training"]["examples_per_s"]
        results["throughput_ratio_in_task"] = round(service_rate / plain["examples_per_s"], 3)
        # The task trained earlier, possibly under other load: measure the service's training
        # path again right after the plain run, same rows, same epochs, same conditions.
        log("the service's training path on the same examples, same conditions")
        again = service_throughput(rows, results["params"], args.plain_epochs, workdir)
        results["service_training_controlled"] = again
        results["throughput_ratio"] = round(again["examples_per_s"] / plain["examples_per_s"], 3)
    except BaseException:
        server.stop()
        raise
    finish(results, args.out, server)


def finish(results: dict, out: Path, server: Any) -> None:
    server.stop()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
