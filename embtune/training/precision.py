"""Which floating-point precision a run encodes and trains in, decided once per run.

`auto` picks what is fast *and* safe on the hardware at hand:

* CUDA: bf16 where the GPU supports it (Ampere and later), else fp16, for both encoding and
  training (mixed precision: weights stay fp32, the trainer autocasts and scales the loss).
* CPU with native bf16 (AVX512-BF16 or AMX): bf16 for encoding *and* training. Training is the
  trainer's own mixed precision (`bf16=True`: forward and backward under `torch.autocast`, master
  weights, optimizer state and the saved model stay fp32), so the published model is an ordinary
  fp32 model. Where bf16 is native the matrix multiplies run at about twice the fp32 rate; judged
  quality was checked against fp32 training (the README's Performance section has both).
* A CPU whose bf16 is emulated: fp32 throughout (emulated autocast runs several times *slower*).

An explicit `bf16` or `fp16` is honoured as asked (it is the caller's measurement against ours),
except fp16 *training* on CPU, which the trainer does not support: it trains in fp32.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch

from embtune.training.params import PrecisionName

Resolved = Literal["fp32", "bf16", "fp16"]

_DTYPES: dict[str, torch.dtype] = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Precision:
    """A resolved precision: what encoding and training use, and why."""

    requested: PrecisionName
    device: str  # "cpu" or "cuda"
    encode: Resolved
    train: Resolved
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX512-BF16 or AMX); False when unknown.

    Uses torch's own CPU probes (private, but stable since 2.1), so the answer matches what
    oneDNN will actually dispatch to.
    """
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    for name in probes:
        probe = getattr(torch.cpu, name, None)
        if probe is not None:
            try:
                if probe():
                    return True
            except Exception:  # a probe that cannot run says nothing; treat as unsupported
                continue
    return False


def cuda_has_bf16() -> bool:
    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())


def resolve_precision(
    requested: PrecisionName,
    device: str,
    *,
    native_cpu_bf16: bool | None = None,
    cuda_bf16: bool | None = None,
) -> Precision:
    """Resolve `requested` for a model on `device` ("cpu", "cuda" or "cuda:N").

    The hardware probes can be passed in, which makes the decision a pure function (tested on
    every combination without the hardware).
    """
    kind = "cuda" if device.startswith("cuda") else "cpu"
    if requested == "fp32":
        return Precision(requested, kind, "fp32", "fp32", "requested")
    if requested in ("bf16", "fp16"):
        train: Resolved = requested
        reason = "requested"
        if kind == "cpu" and requested == "fp16":
            train = "fp32"
            reason = "requested; fp16 training is not supported on CPU, trains in fp32"
        return Precision(requested, kind, requested, train, reason)
    if kind == "cuda":
        bf16 = cuda_has_bf16() if cuda_bf16 is None else cuda_bf16
        chosen: Resolved = "bf16" if bf16 else "fp16"
        why = "GPU supports bf16" if bf16 else "GPU lacks bf16; fp16 mixed precision"
        return Precision(requested, kind, chosen, chosen, why)
    native = cpu_has_native_bf16() if native_cpu_bf16 is None else native_cpu_bf16
    if native:
        return Precision(
            requested, kind, "bf16", "bf16",
            "CPU has native bf16: bf16 encoding and mixed-precision training",
        )
    return Precision(
        requested, kind, "fp32", "fp32", "CPU lacks native bf16 (emulated bf16 is slower)"
    )


def autocast(precision: Resolved, device: str) -> Any:
    """A context that runs the forward pass in `precision`; a no-op for fp32."""
    if precision == "fp32":
        return nullcontext()
    kind = "cuda" if device.startswith("cuda") else "cpu"
    return torch.autocast(kind, dtype=_DTYPES[precision])

