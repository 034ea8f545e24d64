"""Shard parts of a Parquet collection: each shard of a sharded reindex writes its own part file
from any process (a retried shard writes a new one; only the receipts of completed shards
count), and `finish_shared` merges the receipted parts, checked against their size and sha256,
into the collection's one `vectors.parquet`, manifest last."""

from __future__ import annotations

import contextlib
import hashlib
import posixpath
import uuid
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from embtune.sinks.base import SinkError
from embtune.sinks.parquet_files import (
    MANIFEST_FORMAT,
    VECTORS_FILE,
    HashingFile,
    Writing,
    schema,
)

if TYPE_CHECKING:
    from embtune.sinks.parquet import ParquetSink

    _Base = ParquetSink
else:
    _Base = object

SHARED_FILE = "shared.json"  # a shared collection's dimension, for parts written elsewhere


class ParquetParts(_Base):
    """Mixed into `ParquetSink`; uses its file system, paths, locks and manifest."""

    def create_shared(self, collection: str, dim: int) -> None:
        if dim < 1:
            raise SinkError(f"invalid vector dimension {dim}")
        self.drop(collection)
        folder = self._dir(collection)
        with self._io("create", self._where(folder)):
            self.fs.makedirs(folder, exist_ok=True)
        self._put_json(f"{folder}/{SHARED_FILE}", {"format": MANIFEST_FORMAT, "dim": dim})

    def write_part(
        self,
        collection: str,
        part: int,
        object_ids: list[str],
        vectors: np.ndarray,
        text_hashes: list[str],
        model_id: str,
    ) -> None:
        with self._lock:
            state = self._parts.get((collection, part))
        if state is None:
            state = self._open_part(collection, part)
        self._append(collection, state, object_ids, vectors, text_hashes, model_id)

    def _open_part(self, collection: str, part: int) -> Writing:
        """A new file for this run of the part; never recreates a dropped collection."""
        folder = self._dir(collection)
        shared = self._get_json(f"{folder}/{SHARED_FILE}")
        if shared is None:
            raise SinkError(f"collection {collection!r} is not shared or was dropped")
        dim = int(shared["dim"])
        path = f"{folder}/part-{part:05d}-{uuid.uuid4().hex[:12]}.parquet"
        with self._io("create", self._where(path)):
            file = HashingFile(self.fs.open(path, "wb"))
            try:
                writer = pq.ParquetWriter(file, schema(dim))
            except BaseException:
                file.close()
                raise
        state = Writing(dim=dim, path=path, file=file, writer=writer)
        with self._lock:
            self._parts[(collection, part)] = state
        return state

    def finish_part(self, collection: str, part: int) -> dict[str, Any]:
        with self._lock:
            state = self._parts.pop((collection, part), None)
        if state is None:  # the part's range held no items
            return {"part": part, "file": None, "rows": 0, "bytes": 0, "sha256": None}
        stored = self._close(state)
        return {"part": part, "file": posixpath.basename(state.path), "rows": state.rows,
                "bytes": stored, "sha256": state.file.sha.hexdigest()}

    def abort_part(self, collection: str, part: int) -> None:
        with self._lock:
            state = self._parts.pop((collection, part), None)
        if state is not None:
            state.abort()
            with contextlib.suppress(Exception):
                self.fs.rm(state.path)

    def finish_shared(self, collection: str, receipts: list[dict[str, Any]]) -> int:
        """Merge the receipted parts (checked against their size and sha256) into one
        `vectors.parquet`, delete every part file, and write the manifest last."""
        if self._manifest(collection, required=False) is not None:
            return self.count(collection)  # finished before: repeating is harmless
        folder = self._dir(collection)
        shared = self._get_json(f"{folder}/{SHARED_FILE}")
        if shared is None:
            raise SinkError(f"collection {collection!r} is not shared or was dropped")
        dim = int(shared["dim"])
        path = f"{folder}/{VECTORS_FILE}"
        with self._io("create", self._where(path)):
            file = HashingFile(self.fs.open(path, "wb"))
            state = Writing(dim=dim, path=path, file=file,
                             writer=pq.ParquetWriter(file, schema(dim)))
        try:
            for receipt in sorted(receipts, key=lambda r: int(r["part"])):
                if receipt.get("file"):
                    table = self._read_part(folder, receipt)
                    with self._io("write", self._where(path)):
                        state.writer.write_table(table.cast(schema(dim)))
                    state.rows += table.num_rows
                    state.model_id = state.model_id or table.column("model_id")[0].as_py()
        except BaseException:
            state.abort()
            raise
        stored = self._close(state)
        with self._io("delete", self._where(folder)):
            for entry in self.fs.ls(folder, detail=False):
                if posixpath.basename(entry).startswith("part-"):
                    self.fs.rm(entry)
        self._write_manifest(collection, state, stored,
                             parts=sorted(receipts, key=lambda r: int(r["part"])))
        return state.rows

    def _read_part(self, folder: str, receipt: dict[str, Any]) -> pa.Table:
        path = f"{folder}/{receipt['file']}"
        with self._io("read", self._where(path)):
            data = self.fs.cat_file(path)
        if len(data) != receipt["bytes"] or hashlib.sha256(data).hexdigest() != receipt["sha256"]:
            raise SinkError(f"{self._where(path)} is not the part its shard wrote "
                            f"({len(data)} bytes, receipt {receipt['bytes']})")
        with self._io("read", self._where(path)):
            table = pq.read_table(pa.BufferReader(data))
        if table.num_rows != receipt["rows"]:
            raise SinkError(f"{self._where(path)} holds {table.num_rows} rows, its shard "
                            f"wrote {receipt['rows']}")
        return table
