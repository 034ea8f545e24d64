"""How much arithmetic a model's passes did, so a phase can report its FLOP rate against the
host's measured matrix-multiply peak (`gemm_probe`).

The count is analytic, not measured: a transformer encoder's work is dominated by its linear
layers, whose cost per token is two FLOPs per weight (one multiply, one add), plus the attention
scores, which grow with the square of the sequence length. Token embeddings are table lookups
and cost nothing. Padding is counted, because the hardware computes it. The backward pass costs
about twice the forward (gradients for activations and for weights), so a training pass counts
three times its forward; recomputation under gradient checkpointing is not counted (the figure
is the model's work, not the hardware's), so a checkpointed run reads low by design.

`FlopCounter` reads each batch's shape from a forward pre-hook on every sentence-transformers
`Transformer` module of the model: sentence-transformers calls that module with one positional
`features` mapping (a `BatchEncoding` from `encode`, a plain dict from the trainer's collator),
in both encoding and training, so one hook sees every pass.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.base.modules.transformer import Transformer
from torch import nn

FORMULA = (
    "forward FLOPs per sequence of n (padded) tokens = 2·N·n + 4·L·n²·d "
    "(N: transformer parameters outside the embedding tables, L: layers, d: hidden size; "
    "the second term is the attention scores QKᵀ and their product with V); "
    "a training pass (forward + backward) counts 3 times its forward"
)

TRAINING_FACTOR = 3  # forward + backward (activation and weight gradients, about 2 forwards)


@dataclass(frozen=True)
class ModelShape:
    """What the FLOP formula needs to know about one transformer."""

    params: int  # N: parameters outside the embedding tables
    layers: int  # L: 0 when the config does not say (the attention term is then left out)
    hidden: int  # d
    embedding_params: int

    @classmethod
    def from_model(cls, model: SentenceTransformer) -> ModelShape:
        """The shape of the first `Transformer` module of a sentence-transformers model."""
        return cls.from_transformer(_transformers(model)[0])

    @classmethod
    def from_transformer(cls, module: Transformer) -> ModelShape:
        auto_model = module.auto_model
        total = sum(p.numel() for p in auto_model.parameters())
        embedding = sum(
            p.numel()
            for m in auto_model.modules()
            if isinstance(m, nn.Embedding)
            for p in m.parameters(recurse=False)
        )
        # BERT's pooler (one dense layer on the [CLS] token) stays in N: it is under 2 % of a
        # MiniLM's N, and splitting it out would need per-architecture knowledge.
        config = auto_model.config
        layers = _config_int(config, "num_hidden_layers", "n_layers", "num_layers", "n_layer")
        hidden = _config_int(config, "hidden_size", "dim", "d_model", "n_embd")
        if hidden == 0:
            layers = 0  # the attention term needs both
        return cls(params=total - embedding, layers=layers, hidden=hidden,
                   embedding_params=embedding)


def forward_flops(shape: ModelShape, batch: int, tokens: int) -> float:
    """FLOPs of one forward pass over `batch` sequences padded to `tokens` tokens (`FORMULA`)."""
    per_sequence = 2 * shape.params * tokens + 4 * shape.layers * tokens**2 * shape.hidden
    return float(batch * per_sequence)


@dataclass(frozen=True)
class PassCount:
    """The passes a model ran since the last `FlopCounter.take()`."""

    sequences: int
    tokens: int  # batch * padded length, summed
    flops: float  # training passes already counted 3 times
    training_passes: int
    inference_passes: int


class FlopCounter:
    """Counts the passes `model` runs inside the `with` block; `take()` once per phase.

    A pass is a training pass when it runs with gradients enabled on a transformer that has
    trainable parameters (a frozen model's grad-enabled forward gets no weight backward).
    Thread-safe: encoding and training may run on different threads of one worker.
    """

    def __init__(self, model: SentenceTransformer) -> None:
        self._shapes = {id(m): (m, ModelShape.from_transformer(m)) for m in _transformers(model)}
        self._lock = threading.Lock()
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._reset()

    def __enter__(self) -> FlopCounter:
        try:
            for module, shape in self._shapes.values():
                self._handles.append(
                    module.register_forward_pre_hook(self._hook_for(module, shape),
                                                     with_kwargs=True)
                )
        except BaseException:
            self._remove_hooks()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._remove_hooks()

    def take(self) -> PassCount:
        """The counts since the last take (or the start), and start counting afresh."""
        with self._lock:
            count = PassCount(self._sequences, self._tokens, self._flops,
                              self._training_passes, self._inference_passes)
            self._reset()
        return count

    def _reset(self) -> None:
        self._sequences = self._tokens = 0
        self._flops = 0.0
        self._training_passes = self._inference_passes = 0

    def _remove_hooks(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _hook_for(self, module: nn.Module, shape: ModelShape) -> Any:
        def before_forward(_: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            lengths = _sequence_lengths(args, kwargs)
            if lengths is None:
                return  # not a token batch (another modality): nothing to count
            sequences, padded, unpadded = lengths
            if unpadded is None:
                flops = forward_flops(shape, sequences, padded)
                tokens = sequences * padded
            else:  # packed sequences: each attends only within itself
                flops = sum(forward_flops(shape, 1, n) for n in unpadded)
                tokens = sum(unpadded)
            training = torch.is_grad_enabled() and any(
                p.requires_grad for p in module.parameters()
            )
            with self._lock:
                self._sequences += sequences
                self._tokens += tokens
                if training:
                    self._flops += TRAINING_FACTOR * flops
                    self._training_passes += 1
                else:
                    self._flops += flops
                    self._inference_passes += 1

        return before_forward


def utilization(
    count: PassCount, seconds: float, peak_gflops: float | None, precision: str
) -> dict[str, Any]:
    """A phase's achieved FLOP rate and its fraction of the host's peak, JSON-safe.

    The fraction is None when the peak is unknown (not measured for that precision) or no time
    passed."""
    gflop = count.flops / 1e9
    achieved = gflop / seconds if seconds > 0 else None
    fraction = achieved / peak_gflops if achieved is not None and peak_gflops else None
    return {
        "tokens": count.tokens,
        "gflop": round(gflop, 1),
        "seconds": round(seconds, 3),
        "achieved_gflops": round(achieved, 1) if achieved is not None else None,
        "peak_gflops": round(peak_gflops, 1) if peak_gflops is not None else None,
        "precision": precision,
        "fraction_of_peak": round(fraction, 4) if fraction is not None else None,
    }


def _transformers(model: nn.Module) -> list[Transformer]:
    found = [m for m in model.modules() if isinstance(m, Transformer)]
    if not found:
        raise ValueError("the model has no sentence-transformers Transformer module to count")
    return found


def _config_int(config: Any, *names: str) -> int:
    for name in names:
        value = getattr(config, name, None)
        if isinstance(value, int):
            return value
    return 0


def _sequence_lengths(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[int, int, list[int] | None] | None:
    """(sequences, padded length, per-sequence lengths when packed) of one forward's batch.

    sentence-transformers 6 may pack a text batch into one row (`input_ids` of shape
    (1, total)) with `cu_seq_lens_q` marking where each sequence starts, when the model runs
    FlashAttention-2; the boundaries then give the sequences."""
    features: Mapping[str, Any] = kwargs
    if args and isinstance(args[0], Mapping):  # BatchEncoding is a Mapping, not a dict
        features = {**args[0], **kwargs}
    starts = features.get("cu_seq_lens_q")
    if isinstance(starts, torch.Tensor) and starts.numel() > 1:
        unpadded = (starts[1:] - starts[:-1]).tolist()
        return len(unpadded), max(unpadded), unpadded
    for key in ("input_ids", "attention_mask", "inputs_embeds"):
        tensor = features.get(key)
        if isinstance(tensor, torch.Tensor) and tensor.dim() >= 2:
            return int(tensor.shape[0]), int(tensor.shape[1]), None
    return None
