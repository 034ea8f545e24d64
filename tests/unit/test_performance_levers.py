"""The levers that make a fine-tuning task fast must not change what it measures.

Chunked search against sentence-transformers' own evaluator, the embedding cache (hits, misses,
corruption), precision resolution, and the deterministic evaluation sample.
"""

from __future__ import annotations

import itertools
import json
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator
from sentence_transformers.util import cos_sim

from embtune.clickstream.split import query_relevance
from embtune.errors import TaskStopped
from embtune.training.data import sample_queries
from embtune.training.embedding_cache import (
    CacheKey,
    EmbeddingCache,
    fingerprint_model_dir,
)
from embtune.training.evaluation import evaluate_retrieval
from embtune.training.ir_metrics import MAX_RANK, RetrievalReport
from embtune.training.models import load_model
from embtune.training.precision import resolve_precision
from tests.support.training_data import shop_jargon_data


# -- the reference: the evaluator-based implementation this module replaced ---------------------
class RankRecordingEvaluator(InformationRetrievalEvaluator):
    """sentence-transformers' evaluator, recording each query's first relevant rank."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.first_relevant_ranks: dict[str, int | None] = {}

    def compute_metrics(self, queries_result_list: list[Any]) -> dict[str, Any]:
        for query_itr, hits in enumerate(queries_result_list):
            query_id = self.queries_ids[query_itr]
            ordered = sorted(hits, key=lambda hit: (-hit["score"], hit["corpus_id"]))
            self.first_relevant_ranks[query_id] = next(
                (
                    rank
                    for rank, hit in enumerate(ordered[:MAX_RANK], start=1)
                    if hit["corpus_id"] in self.relevant_docs[query_id]
                ),
                None,
            )
        return super().compute_metrics(queries_result_list)


def evaluator_report(
    model: Any, queries: dict[str, str], corpus: dict[str, str], relevant: dict[str, set[str]],
    batch_size: int,
) -> RetrievalReport:
    evaluator = RankRecordingEvaluator(
        queries=queries,
        corpus=corpus,
        relevant_docs=relevant,
        mrr_at_k=[10],
        ndcg_at_k=[10],
        accuracy_at_k=[10],
        precision_recall_at_k=[10, MAX_RANK],
        map_at_k=[MAX_RANK],
        batch_size=batch_size,
        show_progress_bar=False,
        write_csv=False,
        score_functions={"cosine": cos_sim},
        main_score_function="cosine",
    )
    scores = evaluator.compute_all_metrics(model)["cosine"]
    metrics = {
        "ndcg@10": float(scores["ndcg@k"][10]),
        "mrr@10": float(scores["mrr@k"][10]),
        "recall@10": float(scores["recall@k"][10]),
        "recall@100": float(scores["recall@k"][MAX_RANK]),
    }
    return RetrievalReport(metrics, dict(evaluator.first_relevant_ranks))


class VectorTable:
    """Stands in for a model: a fixed vector per text, for both queries and documents."""

    device = torch.device("cpu")

    def __init__(self, vectors: dict[str, list[float]]) -> None:
        self.vectors = vectors

    def encode_query(self, texts: list[str], **_: Any) -> torch.Tensor:
        return torch.tensor([self.vectors[text] for text in texts], dtype=torch.float32)

    encode_document = encode_query


# Unit vectors whose dot products are exact in float32 in any summation order, so both
# implementations see bit-identical scores — with many exact ties, the hard case for top-k.
UNIT_VECTORS = [list(v) for v in itertools.product((0.5, -0.5), repeat=4)] + [
    [sign if axis == dim else 0.0 for axis in range(4)] for dim in range(4) for sign in (1.0, -1.0)
]


def tied_catalogue(seed: int) -> tuple[VectorTable, dict, dict, dict]:
    """260 items (more than MAX_RANK, so ties straddle the top-k cut), ids unordered."""
    rng = random.Random(seed)
    corpus: dict[str, str] = {}
    vectors: dict[str, list[float]] = {}
    for index in range(260):
        text = "w" * rng.randint(1, 40) + f" {index}"  # lengths vary: encode order != id order
        corpus[f"{rng.randrange(10**6):06d}-{index}"] = text
        vectors[text] = rng.choice(UNIT_VECTORS)
    queries = {f"q{j}": f"query {j}" for j in range(12)}
    for text in queries.values():
        vectors[text] = rng.choice(UNIT_VECTORS)
    relevant = {qid: set(rng.sample(list(corpus), rng.randint(1, 3))) for qid in queries}
    return VectorTable(vectors), queries, corpus, relevant


@pytest.fixture(scope="session")
def base_model() -> SentenceTransformer:
    return load_model("builtin:all-MiniLM-L6-v2", max_seq_length=32, device="cpu")


def shop_evaluation_inputs() -> tuple[dict, dict, dict]:
    data = shop_jargon_data()
    queries, relevant = query_relevance(data.search_sessions)
    return queries, data.items, relevant


# -- chunked exact search -------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("chunk_items", [1, 16, 1000])
def test_chunked_search_equals_the_evaluator_on_tied_scores(
    seed: int, chunk_items: int, tmp_path: Path
) -> None:
    table, queries, corpus, relevant = tied_catalogue(seed)
    expected = evaluator_report(table, queries, corpus, relevant, batch_size=8)
    cache = EmbeddingCache(tmp_path)
    key = CacheKey.for_catalogue("table", 32, "fp32", list(corpus.values()))
    for source in ("stored", "hit"):  # encoded in pieces of 8, then read back in blocks
        report = evaluate_retrieval(
            table,  # type: ignore[arg-type]
            queries, corpus, relevant, batch_size=8, encode_items=8, chunk_items=chunk_items,
            cache=cache, cache_key=key,
        )
        assert report.corpus_cache == source
        assert report.metrics == expected.metrics
        assert report.ranks == expected.ranks


def test_chunked_search_equals_the_evaluator_with_a_real_model(
    base_model: SentenceTransformer,
) -> None:
    queries, corpus, relevant = shop_evaluation_inputs()
    expected = evaluator_report(base_model, queries, corpus, relevant, batch_size=8)
    # Five pieces of 8 items, scored in blocks of 16: the batches are those of the evaluator's
    # single encode.
    report = evaluate_retrieval(
        base_model, queries, corpus, relevant, batch_size=8, encode_items=8, chunk_items=16
    )
    assert report.metrics == expected.metrics
    assert report.ranks == expected.ranks


def test_evaluation_reports_progress_per_chunk_and_can_be_stopped(
    base_model: SentenceTransformer,
) -> None:
    queries, corpus, relevant = shop_evaluation_inputs()
    fractions: list[float] = []
    evaluate_retrieval(
        base_model, queries, corpus, relevant, batch_size=8, encode_items=8, chunk_items=16,
        on_progress=fractions.append,
    )
    assert fractions == [8 / 40, 16 / 40, 24 / 40, 32 / 40, 1.0]

    def stop(_: float) -> None:
        raise TaskStopped("canceled")

    with pytest.raises(TaskStopped):
        evaluate_retrieval(
            base_model, queries, corpus, relevant, batch_size=8, encode_items=8, chunk_items=16,
            on_progress=stop,
        )


# -- the embedding cache --------------------------------------------------------------------------
def shop_key(encoder: SentenceTransformer, corpus: dict[str, str], **changes: Any) -> CacheKey:
    fields: dict[str, Any] = {
        "model": "fingerprint-of-the-base-model",
        "max_seq_length": encoder.max_seq_length,
        "precision": "fp32",
        "texts": list(corpus.values()),
    }
    fields.update(changes)
    return CacheKey.for_catalogue(
        fields["model"], fields["max_seq_length"], fields["precision"], fields["texts"]
    )


def test_cache_hit_returns_identical_embeddings_and_metrics(
    base_model: SentenceTransformer, tmp_path: Path
) -> None:
    queries, corpus, relevant = shop_evaluation_inputs()
    cache, key = EmbeddingCache(tmp_path), shop_key(base_model, corpus)
    first = evaluate_retrieval(
        base_model, queries, corpus, relevant, batch_size=8, encode_items=8, chunk_items=16,
        cache=cache, cache_key=key,
    )
    assert first.corpus_cache == "stored"
    entry = cache.lookup(key)
    assert entry is not None
    with entry:
        stored = entry.read_all()
    second = evaluate_retrieval(
        base_model, queries, corpus, relevant, batch_size=8, encode_items=8, chunk_items=16,
        cache=cache, cache_key=key,
    )
    assert second.corpus_cache == "hit"
    assert (second.metrics, second.ranks) == (first.metrics, first.ranks)
    entry = cache.lookup(key)
    assert entry is not None
    with entry:
        assert np.array_equal(entry.read_all(), stored)
    assert stored.shape == (len(corpus), 384) and stored.dtype == np.float32


def test_cache_is_a_valid_npy_file_with_a_sidecar(
    base_model: SentenceTransformer, tmp_path: Path
) -> None:
    _, corpus, _ = shop_evaluation_inputs()
    cache, key = EmbeddingCache(tmp_path), shop_key(base_model, corpus)
    with cache.writer(key) as writer:
        writer.append(np.ones((len(corpus), 4), dtype=np.float32))
        assert writer.commit()
    assert np.load(cache.data_path(key)).shape == (len(corpus), 4)
    sidecar = json.loads(cache.sidecar_path(key).read_text())
    assert sidecar["key"]["items"] == len(corpus) and sidecar["rows"] == len(corpus)
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".json", ".npy"]  # no tmp files


@pytest.mark.parametrize(
    "change",
    [
        {"texts": "one item text changed"},
        {"texts": "items reordered"},
        {"max_seq_length": 64},
        {"precision": "bf16"},
        {"model": "another-model"},
    ],
)
def test_changed_catalogue_length_precision_or_model_misses(
    base_model: SentenceTransformer, tmp_path: Path, change: dict[str, Any]
) -> None:
    _, corpus, _ = shop_evaluation_inputs()
    cache, key = EmbeddingCache(tmp_path), shop_key(base_model, corpus)
    with cache.writer(key) as writer:
        writer.append(np.ones((len(corpus), 4), dtype=np.float32))
        writer.commit()
    texts = list(corpus.values())
    if change.get("texts") == "one item text changed":
        change = {"texts": [*texts[:-1], texts[-1] + "!"]}
    elif change.get("texts") == "items reordered":
        change = {"texts": texts[::-1]}
    other = shop_key(base_model, corpus, **change)
    assert cache.contains(key) and cache.lookup(key) is not None
    assert not cache.contains(other)
    assert cache.lookup(other) is None


@pytest.mark.parametrize("damage", ["flip a byte", "truncate", "garbage sidecar", "other sidecar"])
def test_a_corrupt_cache_entry_is_ignored_and_rebuilt(
    base_model: SentenceTransformer, tmp_path: Path, damage: str
) -> None:
    queries, corpus, relevant = shop_evaluation_inputs()
    cache, key = EmbeddingCache(tmp_path), shop_key(base_model, corpus)

    def evaluate() -> RetrievalReport:
        return evaluate_retrieval(
            base_model, queries, corpus, relevant, batch_size=64, cache=cache, cache_key=key
        )

    first = evaluate()
    data, sidecar = cache.data_path(key), cache.sidecar_path(key)
    raw = bytearray(data.read_bytes())
    if damage == "flip a byte":
        raw[-7] ^= 0xFF
        data.write_bytes(bytes(raw))
    elif damage == "truncate":
        data.write_bytes(bytes(raw[: len(raw) // 2]))
    elif damage == "garbage sidecar":
        sidecar.write_text("{not json")
    else:
        other = json.loads(sidecar.read_text())
        other["key"]["max_seq_length"] = 999
        sidecar.write_text(json.dumps(other))
    assert cache.lookup(key) is None  # verified, found wanting, deleted
    rebuilt = evaluate()
    assert rebuilt.corpus_cache == "stored"
    assert (rebuilt.metrics, rebuilt.ranks) == (first.metrics, first.ranks)
    assert evaluate().corpus_cache == "hit"


def test_an_unwritable_cache_does_not_fail_the_evaluation(
    base_model: SentenceTransformer, tmp_path: Path
) -> None:
    queries, corpus, relevant = shop_evaluation_inputs()
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    report = evaluate_retrieval(
        base_model, queries, corpus, relevant,
        cache=EmbeddingCache(blocker), cache_key=shop_key(base_model, corpus),
    )
    assert report.corpus_cache == "miss"


def test_a_stopped_evaluation_leaves_no_partial_entry(
    base_model: SentenceTransformer, tmp_path: Path
) -> None:
    queries, corpus, relevant = shop_evaluation_inputs()
    cache, key = EmbeddingCache(tmp_path), shop_key(base_model, corpus)

    def stop_after_first_chunk(fraction: float) -> None:
        raise TaskStopped("canceled")

    with pytest.raises(TaskStopped):
        evaluate_retrieval(
            base_model, queries, corpus, relevant, batch_size=8, encode_items=8, chunk_items=16,
            cache=cache, cache_key=key, on_progress=stop_after_first_chunk,
        )
    assert list(tmp_path.iterdir()) == []


def test_prune_keeps_the_most_recently_used_entries(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path, max_entries=2)
    keys = [CacheKey.for_catalogue(f"model-{n}", 32, "fp32", ["a", "b"]) for n in range(3)]
    for key in keys:
        with cache.writer(key) as writer:
            writer.append(np.zeros((2, 3), dtype=np.float32))
            writer.commit()
    assert [cache.contains(key) for key in keys] == [False, True, True]


def test_model_fingerprint_follows_content_not_path_or_card(tmp_path: Path) -> None:
    model = tmp_path / "staging" / "model"
    (model / "1_Pooling").mkdir(parents=True)
    (model / "model.safetensors").write_bytes(b"weights")
    (model / "1_Pooling" / "config.json").write_text("{}")
    (model / "README.md").write_text("source card")
    before = fingerprint_model_dir(model)
    (model / "README.md").write_text("the tuned model's card")
    published = tmp_path / "models" / "m-1"
    published.parent.mkdir()
    shutil.move(model, published)  # what the runner does on publish
    assert fingerprint_model_dir(published) == before
    (published / "1_Pooling" / "config.json").write_text('{"pooling_mode_cls_token": true}')
    assert fingerprint_model_dir(published) != before


# -- precision ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("device", "native_cpu_bf16", "cuda_bf16", "encode", "train"),
    [
        ("cpu", True, False, "bf16", "bf16"),  # native: the trainer's mixed precision
        ("cpu", False, False, "fp32", "fp32"),
        ("cuda", False, True, "bf16", "bf16"),
        ("cuda:1", False, False, "fp16", "fp16"),
    ],
)
def test_auto_precision_resolves_from_the_hardware(
    device: str, native_cpu_bf16: bool, cuda_bf16: bool, encode: str, train: str
) -> None:
    resolved = resolve_precision(
        "auto", device, native_cpu_bf16=native_cpu_bf16, cuda_bf16=cuda_bf16
    )
    assert (resolved.encode, resolved.train) == (encode, train)
    again = resolve_precision("auto", device, native_cpu_bf16=native_cpu_bf16, cuda_bf16=cuda_bf16)
    assert again == resolved


def test_auto_precision_on_this_machine_is_stable() -> None:
    assert resolve_precision("auto", "cpu") == resolve_precision("auto", "cpu")


@pytest.mark.parametrize(
    ("requested", "device", "encode", "train"),
    [
        ("fp32", "cuda", "fp32", "fp32"),
        ("bf16", "cpu", "bf16", "bf16"),
        ("fp16", "cpu", "fp16", "fp32"),  # the trainer has no fp16 on CPU
        ("fp16", "cuda", "fp16", "fp16"),
    ],
)
def test_explicit_precision_is_honoured(
    requested: Any, device: str, encode: str, train: str
) -> None:
    resolved = resolve_precision(requested, device, native_cpu_bf16=False, cuda_bf16=False)
    assert (resolved.encode, resolved.train) == (encode, train)


def test_bf16_encoding_is_close_to_fp32(base_model: SentenceTransformer) -> None:
    from embtune.training.evaluation import encode_texts

    sentences = [
        "65 W USB-C laptop power adapter",
        "merino wool hiking socks",
        "sku ZX-41 brick",
        "a programmable thermostat that talks to your phone over wifi",
    ]
    fp32 = encode_texts(base_model, sentences, precision="fp32")
    bf16 = encode_texts(base_model, sentences, precision="bf16")
    assert bf16.dtype == torch.float32
    cosine = (fp32 * bf16).sum(dim=1)
    assert bool((cosine > 0.99).all()), cosine


# -- the evaluation sample ------------------------------------------------------------------------
def test_eval_query_sample_is_deterministic_bounded_and_ordered() -> None:
    ids = [f"q{n:04d}" for n in range(5000)]
    random.Random(1).shuffle(ids)
    sample = sample_queries(ids, 1000, seed=42)
    assert len(sample) == 1000 and len(set(sample)) == 1000
    assert sample == sample_queries(list(ids), 1000, seed=42)
    assert sample == [query_id for query_id in ids if query_id in set(sample)]  # order kept
    assert sample != sample_queries(ids, 1000, seed=43)
    assert sample_queries(ids[:10], 1000, seed=42) == ids[:10]
