"""Catalogue embeddings cached per model iteration, so a model already evaluated on a catalogue is
not encoded again.

A task encodes the whole catalogue twice: with its source model (the "before" figures) and with
the tuned model. The source of a re-tune is usually the previous task's tuned model, whose
catalogue embeddings that task has just computed; storing them makes the next task's "before"
evaluation cost one read instead of an encode (an hour at 100k items on CPU).

An entry is keyed by everything that decides the vectors:

* the model's *content* fingerprint (weights, configs, tokenizer), not its path: a tuned model is
  saved in a staging directory and renamed on publish, and a path could be reused;
* `max_seq_length` and the encoding precision;
* the sha256 of the ordered item texts.

Each entry is `<digest>.npy` (float32, so a hit gives bit-identical scores to a miss; rows in
the order the caller wrote them, which for the evaluation is a function of the texts) plus a
`<digest>.json` sidecar holding the key, the shape and the file's sha256. Both are written to a
temporary file and renamed into place. Anything that does not verify — unreadable sidecar, other
key, wrong size, wrong checksum — is a miss: the entry is deleted and rebuilt by the caller.
Cache failures never fail a task: reads fall back to encoding and writes are dropped with a
warning.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
DTYPE = np.dtype("<f4")
# Files in a model directory that do not change its embeddings: the model card is rewritten after
# saving, and the trainer's bookkeeping (if any) says nothing about the weights.
_IGNORED_FILES = {"README.md"}
_IGNORED_DIRS = ("checkpoint-", "runs", ".")
_READ_BLOCK = 1 << 20
_STALE_TMP_S = 3600.0


def fingerprint_model_dir(path: Path) -> str:
    """sha256 over the relative path, size and content of every file that decides the model's
    embeddings; identical before and after the directory is moved."""
    digest = hashlib.sha256()
    root = Path(path)
    files = sorted(
        file
        for file in root.rglob("*")
        if file.is_file() and not _ignored(file.relative_to(root))
    )
    for file in files:
        relative = file.relative_to(root).as_posix()
        digest.update(f"{relative}\0{file.stat().st_size}\0".encode())
        with file.open("rb") as handle:
            while block := handle.read(_READ_BLOCK):
                digest.update(block)
    return digest.hexdigest()


def _ignored(relative: Path) -> bool:
    if len(relative.parts) == 1 and relative.name in _IGNORED_FILES:
        return True
    return any(part.startswith(_IGNORED_DIRS) for part in relative.parts[:-1]) or (
        relative.name.startswith(".")
    )


def texts_sha256(texts: Iterable[str]) -> str:
    """Digest of an ordered sequence of texts (length-prefixed, so boundaries count)."""
    digest = hashlib.sha256()
    for text in texts:
        data = text.encode("utf-8", "surrogatepass")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


@dataclass(frozen=True)
class CacheKey:
    """What decides a catalogue's embeddings."""

    model: str  # `fingerprint_model_dir` of the model
    max_seq_length: int
    precision: str  # the resolved encoding precision: fp32, bf16 or fp16
    texts_sha256: str
    items: int

    @classmethod
    def for_catalogue(
        cls, model: str, max_seq_length: int, precision: str, texts: list[str]
    ) -> CacheKey:
        return cls(model, max_seq_length, precision, texts_sha256(texts), len(texts))

    @property
    def digest(self) -> str:
        payload = json.dumps({"format": CACHE_FORMAT, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()


class CachedEmbeddings:
    """A verified entry, open for reading; read it in row blocks to keep memory bounded."""

    def __init__(self, handle: IO[bytes], offset: int, rows: int, dim: int) -> None:
        self._handle = handle
        self._offset = offset
        self.rows = rows
        self.dim = dim

    def chunks(self, rows_per_chunk: int) -> Iterator[np.ndarray]:
        self._handle.seek(self._offset)
        for start in range(0, self.rows, rows_per_chunk):
            count = min(rows_per_chunk, self.rows - start)
            block = np.fromfile(self._handle, dtype=DTYPE, count=count * self.dim)
            if block.size != count * self.dim:
                raise OSError("cached embeddings ended early")
            yield block.reshape(count, self.dim)

    def read_all(self) -> np.ndarray:
        return np.concatenate(list(self.chunks(max(self.rows, 1))))

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> CachedEmbeddings:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EmbeddingWriter:
    """Streams row blocks into a temporary file; `commit` renames it into the cache.

    Used as a context manager: leaving without `commit` (an error, a canceled run) deletes the
    temporary file. A write error disables the writer instead of failing the caller.
    """

    def __init__(self, cache: EmbeddingCache, key: CacheKey) -> None:
        self._cache = cache
        self._key = key
        self._handle: IO[bytes] | None = None
        self._tmp: Path | None = None
        self._digest = hashlib.sha256()
        self._rows = 0
        self._dim: int | None = None
        self.failed = False
        self.committed = False

    def append(self, block: np.ndarray) -> None:
        if self.failed:
            return
        try:
            data = np.ascontiguousarray(block, dtype=DTYPE)
            if data.ndim != 2:
                raise ValueError(f"expected rows of vectors, got shape {data.shape}")
            if self._handle is None:
                self._open(data.shape[1])
            if data.shape[1] != self._dim:
                raise ValueError(f"dimension changed from {self._dim} to {data.shape[1]}")
            raw = data.tobytes()
            assert self._handle is not None
            self._handle.write(raw)
            self._digest.update(raw)
            self._rows += data.shape[0]
        except (OSError, ValueError) as exc:
            self._fail(exc)

    def _open(self, dim: int) -> None:
        self._dim = dim
        self._cache.root.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(
            dir=self._cache.root, prefix=f"{self._key.digest}.", suffix=".tmp"
        )
        self._tmp = Path(name)
        self._handle = os.fdopen(fd, "wb")
        header = {
            "descr": np.lib.format.dtype_to_descr(DTYPE),
            "fortran_order": False,
            "shape": (self._key.items, dim),
        }
        buffer = io.BytesIO()
        np.lib.format.write_array_header_1_0(buffer, header)
        raw = buffer.getvalue()
        self._handle.write(raw)
        self._digest.update(raw)  # the checksum covers the whole file, header included

    def commit(self) -> bool:
        """Publish the entry; False (and nothing published) when it is incomplete or failed."""
        if self.failed or self._handle is None or self._tmp is None:
            self.abort()
            return False
        if self._rows != self._key.items:
            self._fail(ValueError(f"wrote {self._rows} rows, expected {self._key.items}"))
            return False
        try:
            self._handle.flush()
            os.fsync(self._handle.fileno())
            size = self._handle.tell()
            self._handle.close()
            self._handle = None
            target = self._cache.data_path(self._key)
            os.replace(self._tmp, target)
            self._tmp = None
            sidecar = {
                "format": CACHE_FORMAT,
                "key": asdict(self._key),
                "rows": self._rows,
                "dim": self._dim,
                "dtype": DTYPE.str,
                "bytes": size,
                "sha256": self._digest.hexdigest(),
                "created_at": time.time(),
            }
            _write_atomically(self._cache.sidecar_path(self._key), json.dumps(sidecar).encode())
        except OSError as exc:
            self._fail(exc)
            return False
        self.committed = True
        self._cache.prune()
        return True

    def abort(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
            self._tmp = None

    def _fail(self, exc: Exception) -> None:
        log.warning("not caching embeddings in %s: %s", self._cache.root, exc)
        self.failed = True
        self.abort()

    def __enter__(self) -> EmbeddingWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.committed:
            self.abort()


class EmbeddingCache:
    """A directory of catalogue embeddings; at most `max_entries` kept, least recently used out."""

    def __init__(self, root: Path, max_entries: int = 8) -> None:
        self.root = Path(root)
        self.max_entries = max_entries

    def data_path(self, key: CacheKey) -> Path:
        return self.root / f"{key.digest}.npy"

    def sidecar_path(self, key: CacheKey) -> Path:
        return self.root / f"{key.digest}.json"

    def contains(self, key: CacheKey) -> bool:
        """A cheap check (sidecar only) for planning; `lookup` is the one that verifies."""
        try:
            sidecar = json.loads(self.sidecar_path(key).read_text())
        except (OSError, ValueError):
            return False
        return isinstance(sidecar, dict) and sidecar.get("key") == asdict(key)

    def lookup(self, key: CacheKey) -> CachedEmbeddings | None:
        """The verified entry for `key`, open for reading; None on a miss. An entry that fails
        verification is deleted so the caller's rebuild replaces it."""
        sidecar_path = self.sidecar_path(key)
        if not sidecar_path.exists():
            return None
        try:
            entry = self._open_verified(key, sidecar_path)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring cached embeddings %s: %s", key.digest, exc)
            self._remove(key)
            return None
        with contextlib.suppress(OSError):
            os.utime(sidecar_path)  # recently used: kept by `prune`
        return entry

    def _open_verified(self, key: CacheKey, sidecar_path: Path) -> CachedEmbeddings:
        sidecar: dict[str, Any] = json.loads(sidecar_path.read_text())
        if sidecar.get("format") != CACHE_FORMAT or sidecar.get("key") != asdict(key):
            raise ValueError("the sidecar describes another entry")
        if sidecar["dtype"] != DTYPE.str or sidecar["rows"] != key.items:
            raise ValueError("unexpected dtype or row count")
        handle = self.data_path(key).open("rb")
        try:
            if os.fstat(handle.fileno()).st_size != sidecar["bytes"]:
                raise ValueError("the file has the wrong size")
            digest = hashlib.sha256()
            while block := handle.read(_READ_BLOCK):
                digest.update(block)
            if digest.hexdigest() != sidecar["sha256"]:
                raise ValueError("checksum mismatch")
            handle.seek(0)
            version = np.lib.format.read_magic(handle)
            if version != (1, 0):
                raise ValueError(f"unexpected .npy version {version}")
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(handle)
            if shape != (key.items, sidecar["dim"]) or fortran_order or dtype != DTYPE:
                raise ValueError(f"unexpected array header {shape} {dtype}")
            return CachedEmbeddings(handle, handle.tell(), key.items, int(sidecar["dim"]))
        except BaseException:
            handle.close()
            raise

    def writer(self, key: CacheKey) -> EmbeddingWriter:
        return EmbeddingWriter(self, key)

    def prune(self) -> None:
        """Keep the `max_entries` most recently used entries; drop abandoned temporary files."""
        try:
            sidecars = sorted(
                self.root.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True
            )
            for sidecar in sidecars[self.max_entries :]:
                sidecar.unlink(missing_ok=True)
                sidecar.with_suffix(".npy").unlink(missing_ok=True)
            now = time.time()
            for tmp in self.root.glob("*.tmp"):
                if now - tmp.stat().st_mtime > _STALE_TMP_S:
                    tmp.unlink(missing_ok=True)
        except OSError as exc:  # another process pruning at the same time, a read-only disk
            log.warning("could not prune the embedding cache %s: %s", self.root, exc)

    def _remove(self, key: CacheKey) -> None:
        for path in (self.sidecar_path(key), self.data_path(key)):
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)


def _write_atomically(path: Path, data: bytes) -> None:
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f"{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(name, path)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
