"""FLOP counting of a model's passes (`flops`) and the host's matmul peak (`gemm_probe`), on a
tiny BERT built here (never the network) and the packaged MiniLM for its real shape."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
from torch import nn
from transformers import BertConfig, BertModel, BertTokenizerFast

from embtune.artifacts import builtin_path
from embtune.training import gemm_probe
from embtune.training.flops import (
    FlopCounter,
    ModelShape,
    PassCount,
    forward_flops,
    utilization,
)

WORDS = [f"w{i}" for i in range(40)]
# distinct character lengths, so encode's length sort has one order; 1 to 9 tokens each
TEXTS = [
    "w1",
    "w1 w2",
    "w10 w11",
    "w1 w2 w3 w4",
    "w1 w2 w3 w4 w5 w6",
    "w20 w21 w22 w23 w24 w25 w26",
    "w1 w2 w3 w4 w5 w6 w7 w8 w9",
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> SentenceTransformer:
    folder = tmp_path_factory.mktemp("tiny-bert")
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    # transformers 5 ignores `vocab_file=` here (every word would be [UNK]); `vocab=` reads it
    tokenizer = BertTokenizerFast(vocab=str(vocab))
    assert tokenizer.convert_tokens_to_ids("w7") == 5 + 7
    config = BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=2, intermediate_size=64, max_position_embeddings=64,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return SentenceTransformer(modules=[Transformer(str(folder)), Pooling(32, "mean")],
                               device="cpu")


def auto_model(model: SentenceTransformer) -> nn.Module:
    return model[0].auto_model


def embedding_table_size(config: BertConfig) -> int:
    """Word, position and token-type tables, from the config alone."""
    return (config.vocab_size + config.max_position_embeddings + config.type_vocab_size) * (
        config.hidden_size
    )


def test_the_shape_of_a_model_comes_from_its_config_and_parameters(
    tiny: SentenceTransformer,
) -> None:
    shape = ModelShape.from_model(tiny)
    config = auto_model(tiny).config
    assert (shape.layers, shape.hidden) == (config.num_hidden_layers, config.hidden_size)
    assert shape.embedding_params == embedding_table_size(config)
    assert shape.params + shape.embedding_params == sum(
        p.numel() for p in auto_model(tiny).parameters()
    )


def test_the_packaged_minilm_counts_its_encoder_not_its_embedding_tables() -> None:
    path = builtin_path("all-MiniLM-L6-v2")
    assert path is not None
    model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
    shape = ModelShape.from_model(model)
    config = auto_model(model).config
    assert (shape.layers, shape.hidden) == (config.num_hidden_layers, config.hidden_size)
    assert shape.embedding_params == embedding_table_size(config)
    total = sum(p.numel() for p in auto_model(model).parameters())
    assert shape.params == total - embedding_table_size(config)
    assert shape.params < shape.embedding_params  # most of MiniLM's weights are its vocabulary


def test_two_flops_per_weight_per_token_is_the_linear_layers_work(
    tiny: SentenceTransformer,
) -> None:
    shape = ModelShape.from_model(tiny)
    linears = [m for m in auto_model(tiny).modules() if isinstance(m, nn.Linear)]
    multiply_adds = sum(m.in_features * m.out_features for m in linears)
    linear_params = sum(p.numel() for m in linears for p in m.parameters())
    # N is the linear layers plus small change (norms): 2·N·n is their work per token
    assert linear_params <= shape.params <= 1.03 * linear_params
    assert 2 * shape.params == pytest.approx(2 * multiply_adds, rel=0.05)


def test_forward_flops_add_the_attention_term_that_grows_with_the_square_of_the_length() -> None:
    shape = ModelShape(params=1000, layers=3, hidden=16, embedding_params=5000)
    assert forward_flops(shape, 4, 10) == 4 * (2 * 1000 * 10 + 4 * 3 * 10 * 10 * 16)
    no_layers = ModelShape(params=1000, layers=0, hidden=16, embedding_params=5000)
    assert forward_flops(no_layers, 4, 10) == 4 * 2 * 1000 * 10


def expected_encode_batches(model: SentenceTransformer, texts: list[str], batch_size: int
                            ) -> list[tuple[int, int]]:
    """(batch, padded length) of each batch, in encode's order: longest text first."""
    ordered = [texts[i] for i in np.argsort([-len(t) for t in texts])]
    shapes = []
    for start in range(0, len(ordered), batch_size):
        batch = ordered[start : start + batch_size]
        ids = model.tokenizer(batch, padding=True, truncation=True, return_tensors="pt")
        shapes.append(tuple(ids["input_ids"].shape))
    return shapes


def test_encoding_counts_each_batch_at_its_padded_length_as_inference(
    tiny: SentenceTransformer,
) -> None:
    shape = ModelShape.from_model(tiny)
    batches = expected_encode_batches(tiny, TEXTS, 2)
    assert len({length for _, length in batches}) > 1  # the padded length differs per batch
    real_tokens = sum(len(tiny.tokenizer(text)["input_ids"]) for text in TEXTS)
    assert sum(b * n for b, n in batches) > real_tokens  # and some batches carry padding
    with FlopCounter(tiny) as counter:
        tiny.encode(TEXTS, batch_size=2)
        count = counter.take()
        assert counter.take() == PassCount(0, 0, 0.0, 0, 0)  # take() starts afresh
    assert count.sequences == len(TEXTS)
    assert count.tokens == sum(b * n for b, n in batches)
    assert count.flops == pytest.approx(sum(forward_flops(shape, b, n) for b, n in batches))
    assert (count.inference_passes, count.training_passes) == (len(batches), 0)


def test_a_pass_with_gradients_counts_as_training_at_three_times_its_forward(
    tiny: SentenceTransformer,
) -> None:
    shape = ModelShape.from_model(tiny)
    features = tiny.preprocess(TEXTS[:3])
    batch, length = features["input_ids"].shape
    tiny.train()
    try:
        with FlopCounter(tiny) as counter, torch.enable_grad():
            tiny(features)["sentence_embedding"].sum().backward()
            count = counter.take()
    finally:
        tiny.eval()
        tiny.zero_grad(set_to_none=True)
    assert (count.training_passes, count.inference_passes) == (1, 0)
    assert count.tokens == batch * length
    assert count.flops == pytest.approx(3 * forward_flops(shape, batch, length))


def test_a_frozen_model_with_gradients_enabled_counts_as_inference(
    tiny: SentenceTransformer,
) -> None:
    tiny.requires_grad_(False)
    try:
        with FlopCounter(tiny) as counter, torch.enable_grad():
            tiny(tiny.preprocess(TEXTS[:2]))
            count = counter.take()
    finally:
        tiny.requires_grad_(True)
    assert (count.training_passes, count.inference_passes) == (0, 1)


def test_packed_sequences_count_each_at_its_own_length(tiny: SentenceTransformer) -> None:
    """sentence-transformers 6 packs a FlashAttention-2 batch into one row with boundaries."""
    shape = ModelShape.from_model(tiny)
    lengths = [3, 5, 2]
    features = {
        "input_ids": torch.full((1, sum(lengths)), 5),
        "position_ids": torch.cat([torch.arange(n) for n in lengths]).unsqueeze(0),
        "cu_seq_lens_q": torch.tensor([0, 3, 8, 10], dtype=torch.int32),
    }
    with FlopCounter(tiny) as counter, torch.inference_mode():
        tiny[0](features)
        count = counter.take()
    assert (count.sequences, count.tokens) == (3, 10)
    assert count.flops == pytest.approx(sum(forward_flops(shape, 1, n) for n in lengths))


def hooks_on(model: SentenceTransformer) -> int:
    return sum(len(m._forward_pre_hooks) for m in model.modules())


def test_the_hook_is_gone_after_the_block_however_it_ends(tiny: SentenceTransformer) -> None:
    before = hooks_on(tiny)
    counter = FlopCounter(tiny)
    with counter:
        assert hooks_on(tiny) == before + 1
        tiny.encode(TEXTS[:2])
    assert hooks_on(tiny) == before
    counter.take()
    tiny.encode(TEXTS[:2])
    assert counter.take().sequences == 0

    with pytest.raises(RuntimeError), FlopCounter(tiny):
        raise RuntimeError("a phase failed")
    assert hooks_on(tiny) == before


def test_utilization_is_the_achieved_rate_over_the_peak() -> None:
    count = PassCount(sequences=10, tokens=2000, flops=50e9, training_passes=1,
                      inference_passes=0)
    figures = utilization(count, 2.0, 100.0, "fp32")
    assert figures["gflop"] == 50.0 and figures["achieved_gflops"] == 25.0
    assert figures["fraction_of_peak"] == 0.25
    assert json.loads(json.dumps(figures)) == figures
    assert utilization(count, 2.0, None, "bf16")["fraction_of_peak"] is None
    assert utilization(count, 0.0, 100.0, "fp32")["fraction_of_peak"] is None


def test_a_matmul_probe_measures_a_positive_rate() -> None:
    assert gemm_probe.measure("cpu", "fp32", size=128, budget_s=0.02) > 0


def cache_file(cache_dir: Path) -> Path:
    (path,) = (cache_dir / "host").glob("*.json")
    return path


def test_the_host_peak_is_measured_once_then_read_from_its_cache(tmp_path: Path) -> None:
    first = gemm_probe.host_peaks(tmp_path, "cpu", native_bf16=False)
    assert first["cached"] is False and first["fp32"] > 0 and first["bf16"] is None
    assert first["threads"] == torch.get_num_threads()
    path = cache_file(tmp_path)
    stored = json.loads(path.read_text())
    path.write_text(json.dumps({**stored, "fp32": 12345.0}))
    second = gemm_probe.host_peaks(tmp_path, "cpu", native_bf16=False)
    assert second["cached"] is True and second["fp32"] == 12345.0  # read, not measured


def test_a_corrupt_cache_is_measured_again_and_rewritten(tmp_path: Path) -> None:
    gemm_probe.host_peaks(tmp_path, "cpu", native_bf16=False)
    cache_file(tmp_path).write_text('{"fp32": ')
    again = gemm_probe.host_peaks(tmp_path, "cpu", native_bf16=False)
    assert again["cached"] is False and again["fp32"] > 0
    assert json.loads(cache_file(tmp_path).read_text())["fp32"] == again["fp32"]


def test_an_unwritable_cache_dir_still_gives_the_peak(tmp_path: Path) -> None:
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache folder should be")
    peaks = gemm_probe.host_peaks(blocked, "cpu", native_bf16=False)
    assert peaks["fp32"] > 0 and peaks["cached"] is False


def test_without_a_cache_dir_a_process_measures_once() -> None:
    first = gemm_probe.host_peaks(None, "cpu", native_bf16=False)
    second = gemm_probe.host_peaks(None, "cpu", native_bf16=False)
    assert second["cached"] is True
    assert (second["fp32"], second["measured_at"]) == (first["fp32"], first["measured_at"])


def test_bf16_is_measured_only_where_native_and_cached_apart(tmp_path: Path) -> None:
    fp32_only = gemm_probe.host_peaks(tmp_path, "cpu", native_bf16=False)
    with_bf16 = gemm_probe.host_peaks(tmp_path, "cpu", native_bf16=True)
    assert fp32_only["bf16"] is None and fp32_only["fp16"] is None
    assert with_bf16["cached"] is False and with_bf16["bf16"] > 0
    assert with_bf16["fp16"] is None  # fp16 only on CUDA
    assert len(list((tmp_path / "host").glob("*.json"))) == 2
