"""The Parquet sink's file plumbing: the row schema, a writer that hashes what it writes, and
the state of a file being written (a whole collection's, or one shard's part)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import re
from dataclasses import dataclass
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq

VECTORS_FILE = "vectors.parquet"
MANIFEST_FORMAT = 1
_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")


def redact(text: str) -> str:
    """`text` with any `user:password@` of a URL removed: paths end up in task failures."""
    return _USERINFO.sub("", text)


def schema(dim: int) -> pa.Schema:
    return pa.schema(
        [
            ("object_id", pa.string()),
            ("vector", pa.list_(pa.float32(), dim)),
            ("model_id", pa.string()),
            ("text_hash", pa.string()),
        ]
    )


class HashingFile(io.RawIOBase):
    """Passes the writer's bytes to the real file while hashing and counting them, so the
    manifest's sha256 costs no second read of a possibly remote file."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.sha = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self.raw.write(view)
        self.sha.update(view)
        self.size += len(view)
        return len(view)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self.raw.flush()

    def close(self) -> None:
        if not self.closed:
            try:
                super().close()  # flushes
            finally:
                self.raw.close()


@dataclass
class Writing:
    """A collection being written: its open file and what the manifest will say."""

    dim: int
    path: str
    file: HashingFile
    writer: pq.ParquetWriter
    rows: int = 0
    model_id: str | None = None

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()
        with contextlib.suppress(Exception):
            self.file.close()
