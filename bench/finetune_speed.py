"""How fast one fine-tuning task runs, phase by phase, against plain sentence-transformers.

Task mode (default: SciFact from ../shared/data/scifact). Sessions are simulated in-process from
the train queries: a TF-IDF search shows each query's top 10 (a lexical engine, so simulating
costs no encoding and leaves the model's caches cold) and a position-biased click model draws the
clicks from the qrels. Then, each in its own child process so their peak memory is their own:

* the built-in method (`sentence-transformers-mnrl`) run through the plugin with a fresh
  embedding cache, on a thread of a process whose allocator is set as a task process sets it
  (`--allocator`, default `retain-heap`, see `embtune.allocator`), timed phase by phase (load,
  examples, evaluate_source, train, evaluate_tuned, save), followed by what a re-tune of the
  tuned model would pay to evaluate its source (load + fingerprint + cache hit);
* plain sentence-transformers doing the same work in fp32 with the C library's default allocator
  (`--plain-allocator retain-heap` gives it ours, to see what the allocator alone is worth):
  load, encode the catalogue and the same validation queries with
  `InformationRetrievalEvaluator`, train MNRL on the same rows with the same settings, evaluate
  again, save.

Synthetic mode (`--items N`): evaluation only, on N synthetic catalogue items and
`eval_max_queries` synthetic queries, reporting the peak memory (ru_maxrss) of the chunked
evaluation, a cache hit, and — with `--plain-eval` — of the evaluator it replaced. Encoding 100k
short texts takes the better part of an hour on 2 busy cores; `--random-vectors` replaces the
model by random vectors to measure the search's memory and time alone in a minute or two.

Prints figures and writes them to bench/out/finetune_speed.json; asserts nothing.

    .venv/bin/python bench/finetune_speed.py [--limit-queries N] [--max-items N] [--params JSON]
        [--allocator retain-heap|system] [--plain-allocator system|retain-heap]
        [--skip-plain | --skip-plugin]
    .venv/bin/python bench/finetune_speed.py --items 100000 [--plain-eval] [--random-vectors]
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import random
import re
import resource
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from queue import Empty
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from embtune.clickstream.sessions import SearchSession  # noqa: E402
from embtune.demo.beir import load_corpus, load_qrels, load_queries  # noqa: E402
from embtune.demo.click_model import PositionBiasedClickModel  # noqa: E402
from tests.support.training_data import InMemoryTrainingData  # noqa: E402

BASE_SOURCE = "builtin:all-MiniLM-L6-v2"
PHASES = ("load", "examples", "evaluate_source", "train", "evaluate_tuned", "save")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024, 1)


# `TrainingData` over in-memory sessions and items (what the runner would hand a plugin).
BenchData = InMemoryTrainingData


# -- simulation -----------------------------------------------------------------------------------
def _terms(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def lexical_top_k(queries: dict[str, str], corpus: dict[str, str], k: int) -> dict[str, list[str]]:
    """TF-IDF cosine top-k (sublinear tf), ties by id: a stand-in for a lexical search engine."""
    postings: dict[str, list[tuple[str, float]]] = defaultdict(list)
    frequencies = {oid: Counter(_terms(text)) for oid, text in corpus.items()}
    df = Counter(term for counts in frequencies.values() for term in counts)
    idf = {term: math.log(len(corpus) / count) + 1.0 for term, count in df.items()}
    for oid, counts in frequencies.items():
        weights = {t: (1 + math.log(c)) * idf[t] for t, c in counts.items()}
        norm = math.sqrt(sum(w * w for w in weights.values())) or 1.0
        for term, weight in weights.items():
            postings[term].append((oid, weight / norm))
    shown: dict[str, list[str]] = {}
    for qid, text in queries.items():
        scores: dict[str, float] = defaultdict(float)
        for term, count in Counter(_terms(text)).items():
            for oid, weight in postings.get(term, ()):
                scores[oid] += weight * (1 + math.log(count)) * idf.get(term, 0.0)
        shown[qid] = [oid for oid, _ in sorted(scores.items(), key=lambda s: (-s[1], s[0]))[:k]]
    return shown


def simulate_sessions(
    beir: Path, limit_queries: int | None, max_items: int | None, sessions_per_query: int
) -> tuple[BenchData, dict[str, Any]]:
    qrels = load_qrels(beir, "train")
    queries = {q: t for q, t in sorted(load_queries(beir).items()) if q in qrels}
    if limit_queries:
        queries = dict(list(queries.items())[:limit_queries])
    corpus = load_corpus(beir)
    if max_items and max_items < len(corpus):
        # Keep every judged item of the chosen queries, then fill up in id order.
        keep = sorted({oid for q in queries for oid in qrels[q] if oid in corpus})[:max_items]
        rest = [oid for oid in sorted(corpus) if oid not in set(keep)]
        corpus = {oid: corpus[oid] for oid in keep + rest[: max_items - len(keep)]}
    shown = lexical_top_k(queries, corpus, 10)
    clicks = PositionBiasedClickModel(seed=0)
    sessions = []
    for qid, text in queries.items():
        for n in range(sessions_per_query):
            session_id = f"sim-train-{qid}-{n}"
            outcome = clicks.simulate(session_id, shown[qid], qrels[qid])
            sessions.append(
                SearchSession(
                    session_id, text, tuple(shown[qid]), outcome.clicks, outcome.irrelevant
                )
            )
    figures = {
        "queries": len(queries),
        "items": len(corpus),
        "sessions": len(sessions),
        "sessions_with_clicks": sum(1 for s in sessions if s.clicks),
    }
    return BenchData(sessions, corpus), figures


# -- the two contestants (each in a child process) ------------------------------------------------
def use_allocator(mode: str) -> str:
    """Set this process's allocator as a task process sets it (`retain-heap`) or leave it."""
    from embtune import allocator

    return allocator.retain_freed_memory() if mode == "retain-heap" else allocator.mode()


def in_thread(work: Callable[[], Any]) -> Any:
    """Run `work` on a fresh thread, as a worker runs a task, and return its result."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = work()
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=target, name="bench-task")
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def run_plugin(
    data: BenchData, params: dict[str, Any], workdir: str, allocator_mode: str
) -> dict[str, Any]:
    allocator_in_force = use_allocator(allocator_mode)
    from embtune.plugins.base import RunContext, SourceModel
    from embtune.plugins.sentence_transformers import ClickstreamMNRLPlugin

    plugin = ClickstreamMNRLPlugin()
    output_dir = Path(workdir) / "plugin-model"
    output_dir.mkdir(parents=True)
    cache_dir = Path(workdir) / "cache" / "embeddings"
    last: list[str] = [""]

    def report(**progress: Any) -> None:
        if progress.get("message") != last[0]:
            last[0] = progress.get("message", "")
            log(f"  plugin: {last[0]}")

    ctx = RunContext(
        task_id="bench",
        model=SourceModel(id="m-base", name="all-MiniLM-L6-v2", source=BASE_SOURCE),
        params=plugin.validate_params(params),
        output_dir=output_dir,
        data=data,
        report=report,
        should_stop=lambda: False,
        cache_dir=cache_dir,
    )
    started = time.monotonic()
    result = in_thread(lambda: plugin.run(ctx))  # a worker runs tasks on its own threads
    wall = time.monotonic() - started
    metrics = result.metrics
    performance = metrics["performance"]

    # What a re-tune of this tuned model pays for its "before": load, fingerprint, cache hit.
    from embtune.training.data import prepare
    from embtune.training.embedding_cache import CacheKey, EmbeddingCache, fingerprint_model_dir
    from embtune.training.evaluation import evaluate_retrieval
    from embtune.training.models import load_model
    from embtune.training.params import SentenceTransformerParams

    st_params = SentenceTransformerParams.model_validate(metrics["params"])
    prepared = prepare(data, st_params, "mnrl")
    started = time.monotonic()
    tuned = load_model(str(output_dir), st_params.max_seq_length)
    loaded = time.monotonic()
    key = CacheKey.for_catalogue(
        fingerprint_model_dir(output_dir), st_params.max_seq_length,
        performance["precision"]["encode"], list(prepared.catalogue.values()),
    )
    report_hit = evaluate_retrieval(
        tuned, prepared.queries, prepared.catalogue, prepared.relevant,
        batch_size=st_params.eval_batch_size, precision=performance["precision"]["encode"],
        cache=EmbeddingCache(cache_dir), cache_key=key,
    )
    retune = {
        "cache": report_hit.corpus_cache,
        "load_s": round(loaded - started, 3),
        "evaluate_source_s": round(time.monotonic() - loaded, 3),
        "ndcg@10": report_hit.metrics["ndcg@10"],
    }
    return {
        "wall_s": round(wall, 3),
        "allocator": allocator_in_force,
        "phases_s": performance["phases_s"],
        "peak_rss_mb": performance["peak_rss_mb"],
        "precision": performance["precision"],
        "cache": performance["cache"],
        "eval_queries": performance["eval_queries"],
        "encode_items_per_s": performance["encode_items_per_s"],
        "utilization": performance.get("utilization"),
        "training": metrics["training"],
        "data": metrics["data"],
        "ndcg@10": {"source": metrics["before"]["ndcg@10"], "tuned": metrics["after"]["ndcg@10"]},
        "before": metrics["before"],
        "after": metrics["after"],
        "retune_from_tuned": retune,
        "params": metrics["params"],
    }


def _plain_evaluate(model: Any, prepared: Any, batch_size: int) -> dict[str, float]:
    from sentence_transformers.sentence_transformer.evaluation import (
        InformationRetrievalEvaluator,
    )
    from sentence_transformers.util import cos_sim

    evaluator = InformationRetrievalEvaluator(
        queries=prepared.queries, corpus=prepared.catalogue, relevant_docs=prepared.relevant,
        mrr_at_k=[10], ndcg_at_k=[10], accuracy_at_k=[10], precision_recall_at_k=[10, 100],
        map_at_k=[100], batch_size=batch_size, show_progress_bar=False, write_csv=False,
        score_functions={"cosine": cos_sim}, main_score_function="cosine",
    )
    scores = evaluator.compute_all_metrics(model)["cosine"]
    return {
        "ndcg@10": float(scores["ndcg@k"][10]),
        "mrr@10": float(scores["mrr@k"][10]),
        "recall@10": float(scores["recall@k"][10]),
        "recall@100": float(scores["recall@k"][100]),
    }


def run_plain(
    data: BenchData, params: dict[str, Any], workdir: str, allocator_mode: str
) -> dict[str, Any]:
    """Plain sentence-transformers, fp32, the same rows, queries and settings."""
    allocator_in_force = use_allocator(allocator_mode)
    phases: dict[str, float] = {}
    peaks: dict[str, float] = {}

    def timed(name: str, work: Callable[[], Any]) -> Any:
        log(f"  plain: {name}")
        started = time.monotonic()
        value = work()
        phases[name] = round(time.monotonic() - started, 3)
        peaks[name] = peak_rss_mb()
        return value

    def load() -> Any:
        from sentence_transformers import SentenceTransformer

        from embtune.artifacts import resolve_source

        model = SentenceTransformer(str(resolve_source(BASE_SOURCE)), device="cpu")
        model.max_seq_length = st_params.max_seq_length
        return model

    from embtune.training.data import prepare
    from embtune.training.params import SentenceTransformerParams

    st_params = SentenceTransformerParams.model_validate(params)
    model = timed("load", load)
    prepared = timed("examples", lambda: prepare(data, st_params, "mnrl"))
    before = timed(
        "evaluate_source", lambda: _plain_evaluate(model, prepared, st_params.eval_batch_size)
    )

    def train() -> dict[str, Any]:
        from datasets import Dataset
        from sentence_transformers import (
            SentenceTransformerTrainer,
            SentenceTransformerTrainingArguments,
        )
        from sentence_transformers.base.sampler import BatchSamplers
        from sentence_transformers.sentence_transformer.losses import (
            MultipleNegativesRankingLoss,
        )

        rows = prepared.rows
        triplets = [dict(r) for r in rows if r.get("negative")]
        pairs = [{"anchor": r["anchor"], "positive": r["positive"]}
                 for r in rows if not r.get("negative")]
        datasets = {name: Dataset.from_list(part)
                    for name, part in (("triplets", triplets), ("pairs", pairs)) if part}
        args = SentenceTransformerTrainingArguments(
            output_dir=str(Path(workdir) / "plain-trainer"),
            num_train_epochs=st_params.epochs,
            per_device_train_batch_size=st_params.batch_size,
            learning_rate=st_params.learning_rate, warmup_steps=st_params.warmup_ratio,
            seed=st_params.seed, data_seed=st_params.seed,
            batch_sampler=BatchSamplers.NO_DUPLICATES, save_strategy="no", report_to="none",
            disable_tqdm=True, logging_steps=50,
        )
        trainer = SentenceTransformerTrainer(
            model=model,
            args=args,
            train_dataset=datasets if len(datasets) > 1 else next(iter(datasets.values())),
            loss=MultipleNegativesRankingLoss(model),
        )
        output = trainer.train()
        return {"steps": output.global_step, "train_loss": float(output.training_loss)}

    training = timed("train", train)
    after = timed(
        "evaluate_tuned", lambda: _plain_evaluate(model, prepared, st_params.eval_batch_size)
    )
    timed("save", lambda: model.save(str(Path(workdir) / "plain-model")))
    return {
        "wall_s": round(sum(phases.values()), 3),
        "allocator": allocator_in_force,
        "phases_s": phases,
        "peak_rss_mb": peaks,
        "training": {**training, "rows": len(prepared.rows)},
        "ndcg@10": {"source": before["ndcg@10"], "tuned": after["ndcg@10"]},
        "before": before,
        "after": after,
    }


# -- synthetic catalogue: evaluation memory at scale ----------------------------------------------
_VOCABULARY = (
    "adapter cable charger lamp kettle socks drill pillow thermos speaker filter mat stool badge "
    "sticker pin poster wool steel glass silicone bamboo cotton leather red blue green black white "
    "small large portable wireless foldable dimmable rechargeable waterproof ergonomic compact "
    "kitchen garden office travel outdoor bedroom bathroom kids pet car bike camping"
)
WORDS = _VOCABULARY.split(" ")


def synthetic_catalogue(items: int, queries: int, seed: int = 0) -> tuple[dict, dict, dict]:
    """Items of 6-16 random words; each query is 3 words of one item, which is its relevant one."""
    rng = random.Random(seed)
    corpus = {
        f"item-{n:07d}": " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 16)))
        for n in range(items)
    }
    targets = rng.sample(list(corpus), min(queries, items))
    query_texts = {
        f"query-{n:05d}": " ".join(rng.sample(corpus[target].split(" "), 3))
        for n, target in enumerate(targets)
    }
    relevant = {f"query-{n:05d}": {target} for n, target in enumerate(targets)}
    return query_texts, corpus, relevant


class RandomVectors:
    """Stands in for the model with a fixed random unit vector per text: search memory and time
    at scale without the hour of encoding."""

    def __init__(self, dim: int = 384) -> None:
        import torch

        self.device = torch.device("cpu")
        self.dim = dim

    def encode_query(self, texts: list[str], **_: Any) -> Any:
        import zlib

        import numpy as np
        import torch

        rows = [
            np.random.default_rng(zlib.crc32(text.encode())).standard_normal(self.dim)
            for text in texts
        ]
        return torch.tensor(np.array(rows), dtype=torch.float32)

    encode_document = encode_query


def run_synthetic(
    items: int, params: dict[str, Any], workdir: str, plain: bool, random_vectors: bool
) -> dict[str, Any]:
    from embtune.training.embedding_cache import CacheKey, EmbeddingCache
    from embtune.training.evaluation import evaluate_retrieval
    from embtune.training.models import load_model
    from embtune.training.params import SentenceTransformerParams
    from embtune.training.precision import resolve_precision

    st_params = SentenceTransformerParams.model_validate(params)
    queries, corpus, relevant = synthetic_catalogue(items, st_params.eval_max_queries)
    model: Any = (
        RandomVectors()
        if random_vectors
        else load_model(BASE_SOURCE, st_params.max_seq_length, device="cpu")
    )
    baseline = peak_rss_mb()
    result: dict[str, Any] = {
        "items": items,
        "queries": len(queries),
        "encoder": "random vectors" if random_vectors else BASE_SOURCE,
        "baseline_rss_mb": baseline,
    }
    if plain:
        from types import SimpleNamespace

        started = time.monotonic()
        prepared = SimpleNamespace(queries=queries, catalogue=corpus, relevant=relevant)
        metrics = _plain_evaluate(model, prepared, st_params.eval_batch_size)
        result["evaluator"] = {
            "seconds": round(time.monotonic() - started, 3),
            "peak_rss_mb": peak_rss_mb(),
            "ndcg@10": metrics["ndcg@10"],
        }
        return result
    precision = resolve_precision(st_params.precision, "cpu").encode
    cache = EmbeddingCache(Path(workdir) / "cache")
    key = CacheKey.for_catalogue("synthetic-base", st_params.max_seq_length, precision,
                                 list(corpus.values()))
    for name in ("miss", "hit"):
        started = time.monotonic()
        report = evaluate_retrieval(
            model, queries, corpus, relevant, batch_size=st_params.eval_batch_size,
            precision=precision, cache=cache, cache_key=key,
        )
        result[name] = {
            "cache": report.corpus_cache,
            "seconds": round(time.monotonic() - started, 3),
            "peak_rss_mb": peak_rss_mb(),
            "ndcg@10": report.metrics["ndcg@10"],
        }
        log(f"  chunked evaluation ({name}): {result[name]}")
    result["precision"] = precision
    return result


# -- orchestration -------------------------------------------------------------------------------
def _child(target: Callable[..., dict[str, Any]], args: tuple, queue: Any) -> None:
    try:
        queue.put(("ok", target(*args)))
    except BaseException as exc:  # report, never hang the parent
        queue.put(("error", f"{type(exc).__name__}: {exc}"))


def in_child(target: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """Run `target` in a fresh process, so its ru_maxrss is its own."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(target, args, queue))
    process.start()
    while True:
        try:
            status, value = queue.get(timeout=5)
            break
        except Empty:
            if not process.is_alive():  # killed (out of memory?) before it could report
                raise SystemExit(
                    f"{target.__name__} died with exit code {process.exitcode}"
                ) from None
    process.join()
    if status != "ok":
        raise SystemExit(f"{target.__name__} failed: {value}")
    return value


def ratio(plain: float | None, ours: float | None) -> float | None:
    return round(plain / ours, 2) if plain and ours else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--beir", type=Path, default=ROOT.parent / "shared" / "data" / "scifact")
    parser.add_argument("--params", default="{}", help="task params as JSON (default: defaults)")
    parser.add_argument("--limit-queries", type=int, default=None, help="first N train queries")
    parser.add_argument("--max-items", type=int, default=None, help="catalogue of at most N items")
    parser.add_argument("--sessions-per-query", type=int, default=3)
    parser.add_argument("--items", type=int, default=None,
                        help="synthetic-catalogue mode: evaluation memory at N items")
    parser.add_argument("--plain-eval", action="store_true",
                        help="synthetic mode: also measure the evaluator it replaced")
    parser.add_argument("--random-vectors", action="store_true",
                        help="synthetic mode: random vectors instead of the model (no encoding)")
    parser.add_argument("--skip-plain", action="store_true", help="task mode: plugin only")
    parser.add_argument("--skip-plugin", action="store_true", help="task mode: plain only")
    parser.add_argument("--allocator", choices=("retain-heap", "system"), default="retain-heap",
                        help="task mode: the plugin's allocator (retain-heap: what a task "
                        "process sets with EMBTUNE_TUNE_ALLOCATOR, the default)")
    parser.add_argument("--plain-allocator", choices=("retain-heap", "system"), default="system",
                        help="task mode: the plain route's allocator (system: what plain "
                        "sentence-transformers gets)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "finetune_speed.json")
    args = parser.parse_args()
    params = json.loads(args.params)
    workdir = tempfile.mkdtemp(prefix="embtune-speed-")
    results: dict[str, Any] = {"params_override": params, "cpu_count": os.cpu_count()}

    if args.items:
        log(f"synthetic catalogue of {args.items} items: chunked evaluation")
        results["mode"] = "synthetic"
        results["chunked"] = in_child(
            run_synthetic, args.items, params, workdir, False, args.random_vectors
        )
        if args.plain_eval:
            log("synthetic catalogue: InformationRetrievalEvaluator")
            results["evaluator"] = in_child(
                run_synthetic, args.items, params, workdir, True, args.random_vectors
            )
            chunked, evaluator = results["chunked"], results["evaluator"]
            results["evaluation_rss_growth_mb"] = {
                "chunked": round(chunked["miss"]["peak_rss_mb"] - chunked["baseline_rss_mb"], 1),
                "evaluator": round(
                    evaluator["evaluator"]["peak_rss_mb"] - evaluator["baseline_rss_mb"], 1
                ),
            }
    else:
        results["mode"] = "task"
        log("simulating sessions (TF-IDF top 10, position-biased clicks)")
        data, figures = simulate_sessions(
            args.beir, args.limit_queries, args.max_items, args.sessions_per_query
        )
        results["data_set"] = {"path": str(args.beir), **figures}
        log(f"data: {figures}")
        ours = None
        if not args.skip_plugin:
            log("the plugin (fresh embedding cache)")
            ours = in_child(run_plugin, data, params, workdir, args.allocator)
            results["plugin"] = ours
            log(f"plugin: {ours['wall_s']} s, phases {ours['phases_s']}")
        if not args.skip_plain:
            log("plain sentence-transformers, fp32")
            plain = in_child(run_plain, data, params, workdir, args.plain_allocator)
            results["plain"] = plain
            log(f"plain: {plain['wall_s']} s, phases {plain['phases_s']}")
        if ours is not None and not args.skip_plain:
            results["speedup"] = {
                "task": ratio(plain["wall_s"], ours["wall_s"]),
                "phases": {p: ratio(plain["phases_s"].get(p), ours["phases_s"].get(p))
                           for p in PHASES},
                # A re-tune of the tuned model: its source evaluation is a cache hit.
                "retune_evaluate_source": ratio(
                    plain["phases_s"]["evaluate_source"],
                    ours["retune_from_tuned"]["evaluate_source_s"],
                ),
            }
            results["ndcg@10"] = {"plugin": ours["ndcg@10"], "plain": plain["ndcg@10"]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
