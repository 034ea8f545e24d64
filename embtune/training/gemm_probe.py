"""The host's matrix-multiply peak, measured once and cached, as the denominator of a phase's
fraction of peak (`flops.utilization`).

A datasheet peak would be the wrong yardstick: what a worker can reach depends on the threads
torch was given, the BLAS it dispatches to and whether bf16 runs in hardware. So the worker
times square matmuls in each precision it may use, takes the best rate (the peak, not a mean
disturbed by other processes), and keeps the answer in a small JSON file keyed by everything
that would change it: host, CPU model, device, thread count and torch version. A changed
machine re-measures; a cache that cannot be read or written is skipped, never fatal.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

_DTYPES: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}
CPU_SIZE = 1024  # large enough to run at the BLAS's full rate on a CPU
CUDA_SIZE = 4096  # a GPU needs bigger tiles to fill its units
CUDA_GROUP = 10  # matmuls per timing on a GPU: a single one is too short to time well

_memo: dict[str, dict[str, Any]] = {}  # in-process results by cache key (cache_dir None)
_memo_lock = threading.Lock()


def measure(
    device: str = "cpu", dtype: str = "fp32", size: int | None = None, budget_s: float = 0.25
) -> float:
    """GFLOP/s of square `size` by `size` matmuls in `dtype` on `device`: the best of the
    repeats that fit in `budget_s` (at least 3), after one warm-up. `size` None: 1024 on a CPU,
    4096 on CUDA.

    Runs on torch's current threads, as the worker's passes will."""
    target = torch.device(device)
    cuda = target.type == "cuda"
    n = size or (CUDA_SIZE if cuda else CPU_SIZE)
    group = CUDA_GROUP if cuda else 1
    a = torch.randn(n, n, device=target).to(_DTYPES[dtype])
    b = torch.randn(n, n, device=target).to(_DTYPES[dtype])
    out = torch.empty_like(a)

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(target)

    torch.matmul(a, b, out=out)  # warm-up: kernel selection, BLAS thread pool start
    sync()
    best = 0.0
    repeats = 0
    deadline = time.perf_counter() + budget_s
    while repeats < 3 or time.perf_counter() < deadline:
        start = time.perf_counter()
        for _ in range(group):
            torch.matmul(a, b, out=out)
        sync()
        elapsed = time.perf_counter() - start
        repeats += 1
        if elapsed > 0:
            best = max(best, 2 * n**3 * group / elapsed / 1e9)
    return best


def host_peaks(
    cache_dir: Path | None, device: str, *, native_bf16: bool, cuda_fp16: bool = False
) -> dict[str, Any]:
    """The host's matmul peaks in GFLOP/s: fp32 always, bf16 where `native_bf16` (the caller's
    hardware probe: `precision.cpu_has_native_bf16()` on a CPU, `cuda_has_bf16()` on CUDA),
    fp16 on CUDA when `cuda_fp16`; None for a precision not measured.

    Cached under `cache_dir / "host"`; with `cache_dir` None, only for this process."""
    cuda = torch.device(device).type == "cuda"
    want_bf16 = native_bf16
    want_fp16 = cuda and cuda_fp16
    identity = _identity(device, want_bf16, want_fp16)
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_dir / "host" / f"gemm-peaks-{key}.json" if cache_dir is not None else None

    with _memo_lock:
        if path is not None:
            stored = _read(path)
            if stored is not None:
                return {**stored, "cached": True}
        elif key in _memo:
            return {**_memo[key], "cached": True}

        started = time.perf_counter()
        peaks = {
            "fp32": round(measure(device, "fp32"), 1),
            "bf16": round(measure(device, "bf16"), 1) if want_bf16 else None,
            "fp16": round(measure(device, "fp16"), 1) if want_fp16 else None,
        }
        result = {
            **peaks,
            "device": device,
            "device_name": identity["device_name"],
            "host": identity["host"],
            "threads": identity["threads"],
            "torch": identity["torch"],
            "cpu": identity["cpu"],
            "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "probe_s": round(time.perf_counter() - started, 3),
        }
        if path is None:
            _memo[key] = result
        else:
            _write(path, result)
        return {**result, "cached": False}


def _identity(device: str, bf16: bool, fp16: bool) -> dict[str, Any]:
    """Everything that changes the peak; its hash names the cache file."""
    target = torch.device(device)
    device_name = torch.cuda.get_device_name(target) if target.type == "cuda" else "cpu"
    return {
        "host": socket.gethostname(),
        "cpu": cpu_model(),
        "device_name": device_name,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "precisions": ["fp32"] + ["bf16"] * bf16 + ["fp16"] * fp16,
    }


def cpu_model() -> str | None:
    """The CPU's model name from /proc/cpuinfo; None where there is none (not Linux, some ARM)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                name, _, value = line.partition(":")
                if name.strip() == "model name":
                    return value.strip()
    except OSError:
        pass
    return None


def _read(path: Path) -> dict[str, Any] | None:
    """A cached result, or None when missing, unreadable, corrupt or lacking a figure."""
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(stored, dict) or not isinstance(stored.get("fp32"), int | float):
        return None
    return stored


def _write(path: Path, result: dict[str, Any]) -> None:
    """Write atomically (a reader sees the old file or the new, never half); skip on failure."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".gemm-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(result, handle, indent=2)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    except OSError:
        pass  # an unwritable cache only costs a re-measure at the next start
