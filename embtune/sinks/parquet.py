"""A sink of Parquet files on any fsspec filesystem (a local directory, an object store).

Layout under the root: `<name>/<collection>/vectors.parquet`, its `manifest.json` (written
last, so a collection without one is a crashed or running write and is never served) and the
alias pointer `<name>/CURRENT.json`. A sharded reindex writes one `part-<i>-<run>.parquet` per
shard from any process (a retried shard writes a new file; only the receipts of completed
shards count), and `finish_shared` merges the receipted parts into `vectors.parquet` in part
order, so every reader and the download see one file as for an unsharded run. Search is brute
force over the live collection held in memory: fine for the catalogue sizes a Parquet sink is
meant for (a download, a small service).
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import re
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import IO, Any, Literal

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.core import split_protocol, url_to_fs
from fsspec.implementations.local import LocalFileSystem
from pydantic import field_validator

from embtune.sinks.base import Hit, SinkConfig, SinkContext, SinkError, VectorSink
from embtune.sinks.parquet_files import (
    MANIFEST_FORMAT,
    VECTORS_FILE,
    HashingFile,
    Writing,
    redact,
    schema,
)
from embtune.sinks.parquet_parts import ParquetParts

MANIFEST_FILE = "manifest.json"
CURRENT_FILE = "CURRENT.json"
SEARCH_CACHE_SIZE = 2
_COLLECTION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,254}$")
_LOCAL_PROTOCOLS = (None, "file", "local")


class ParquetSink(ParquetParts, VectorSink):
    type_name = "parquet"

    class Config(SinkConfig):
        type: Literal["parquet"]
        url: str | None = None

        @field_validator("url")
        @classmethod
        def _known_filesystem(cls, url: str | None) -> str | None:
            if url is None:
                return None
            if not url.strip() or "\0" in url:
                raise ValueError("must be a non-empty path or URL without NUL characters")
            protocol, path = split_protocol(url)
            for proto in (protocol or "").split("::"):
                if not proto:
                    continue
                try:
                    fsspec.get_filesystem_class(proto)
                except ValueError:
                    raise ValueError(f"unknown filesystem protocol {proto!r}") from None
                except ImportError as exc:
                    raise ValueError(f"protocol {proto!r} needs a package: {exc}") from None
            if protocol in _LOCAL_PROTOCOLS and not posixpath.isabs(path):
                raise ValueError("a local path must be absolute")
            return url

    def __init__(self, config: SinkConfig, context: SinkContext) -> None:
        super().__init__(config, context)
        self.config: ParquetSink.Config = config  # type: ignore[assignment]
        self._fs: fsspec.AbstractFileSystem | None = None
        self._root = ""
        self._writing: dict[str, Writing] = {}
        self._parts: dict[tuple[str, int], Writing] = {}
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = OrderedDict()

    # -- where things are ----------------------------------------------------------------

    def _root_url(self) -> str:
        url = self.config.url
        if url is None:
            return os.path.abspath(self.context.data_dir / "vectors")
        protocol, path = split_protocol(url)
        if protocol in _LOCAL_PROTOCOLS:
            return os.path.normpath(path)
        return redact(url).rstrip("/")

    @property
    def key(self) -> str:
        return f"parquet:{self._root_url()}/{self.name}"

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        """Built on first use, so that configuring a sink touches no filesystem or network."""
        if self._fs is None:
            url = self.config.url
            if url is None or split_protocol(url)[0] in _LOCAL_PROTOCOLS:
                self._fs, self._root = LocalFileSystem(), self._root_url()
            else:
                with self._io("open the filesystem of", self._root_url()):
                    self._fs, self._root = url_to_fs(url)
        return self._fs

    def _base(self) -> str:
        self.fs  # noqa: B018 -- resolves self._root on first use
        root = self._root.rstrip("/")
        return f"{root}/{self.name}" if root else self.name

    def _dir(self, collection: str) -> str:
        if not _COLLECTION.match(collection):
            raise SinkError(f"invalid collection name {collection!r}")
        return f"{self._base()}/{collection}"

    def _where(self, path: str) -> str:
        """A path as shown in errors: with its protocol, without credentials."""
        return redact(self.fs.unstrip_protocol(path))

    @contextlib.contextmanager
    def _io(self, doing: str, where: str) -> Iterator[None]:
        try:
            yield
        except SinkError:
            raise
        except (OSError, pa.ArrowException, ImportError, json.JSONDecodeError) as exc:
            detail = redact(str(exc)) or type(exc).__name__
            raise SinkError(
                f"parquet sink {self.name!r} could not {doing} {redact(where)}: {detail}"
            ) from None

    # -- writing ---------------------------------------------------------------------------

    def create(self, collection: str, dim: int) -> None:
        if dim < 1:
            raise SinkError(f"invalid vector dimension {dim}")
        self.drop(collection)
        folder = self._dir(collection)
        path = f"{folder}/{VECTORS_FILE}"
        with self._io("create", self._where(path)):
            self.fs.makedirs(folder, exist_ok=True)
            file = HashingFile(self.fs.open(path, "wb"))
            try:
                writer = pq.ParquetWriter(file, schema(dim))
            except BaseException:
                file.close()
                raise
        with self._lock:
            self._writing[collection] = Writing(dim=dim, path=path, file=file, writer=writer)

    def write(
        self,
        collection: str,
        object_ids: list[str],
        vectors: np.ndarray,
        text_hashes: list[str],
        model_id: str,
    ) -> None:
        with self._lock:
            state = self._writing.get(collection)
        if state is None:
            raise SinkError(f"collection {collection!r} is not being written; create it first")
        self._append(collection, state, object_ids, vectors, text_hashes, model_id)

    def _append(
        self,
        collection: str,
        state: Writing,
        object_ids: list[str],
        vectors: np.ndarray,
        text_hashes: list[str],
        model_id: str,
    ) -> None:
        matrix = np.ascontiguousarray(vectors, dtype=np.float32)
        n = len(object_ids)
        if matrix.shape != (n, state.dim) or len(text_hashes) != n:
            raise SinkError(
                f"write to {collection!r}: {n} ids, {len(text_hashes)} hashes and vectors of "
                f"shape {matrix.shape} do not match (dimension {state.dim})"
            )
        batch = pa.RecordBatch.from_arrays(
            [
                pa.array(object_ids, pa.string()),
                pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1)), state.dim),
                pa.array([model_id] * n, pa.string()),
                pa.array(text_hashes, pa.string()),
            ],
            schema=schema(state.dim),
        )
        with self._io("write", self._where(state.path)):
            state.writer.write_batch(batch)
        state.rows += n
        state.model_id = state.model_id or model_id

    def finish(self, collection: str) -> int:
        with self._lock:
            state = self._writing.pop(collection, None)
        if state is None:
            if self._manifest(collection, required=False) is not None:
                return self.count(collection)  # finished before: repeating is harmless
            raise SinkError(f"collection {collection!r} is not being written; create it first")
        stored = self._close(state)
        self._write_manifest(collection, state, stored)
        return state.rows

    def _close(self, state: Writing) -> int:
        """Close a written file and check its stored size; the size."""
        try:
            with self._io("write", self._where(state.path)):
                state.writer.close()
                state.file.close()
                stored = self.fs.size(state.path)
        except BaseException:
            state.abort()
            raise
        if stored != state.file.size:
            raise SinkError(
                f"{self._where(state.path)} holds {stored} bytes, {state.file.size} were written"
            )
        return int(stored)

    def _write_manifest(
        self, collection: str, state: Writing, stored: int, **extra: Any
    ) -> None:
        manifest = {
            "format": MANIFEST_FORMAT,
            "collection": collection,
            "rows": state.rows,
            "dim": state.dim,
            "model_id": state.model_id,
            "file": VECTORS_FILE,
            "bytes": stored,
            "sha256": state.file.sha.hexdigest(),
            "created_at": datetime.now(UTC).isoformat(),
            **extra,
        }
        self._put_json(f"{self._dir(collection)}/{MANIFEST_FILE}", manifest)

    # -- parts of a shared collection (a sharded reindex) ---------------------------------

    def _put_json(self, path: str, value: dict[str, Any]) -> None:
        """Replace a small JSON file so that a reader sees the old or the new one, whole."""
        data = json.dumps(value, indent=1).encode()
        with self._io("write", self._where(path)):
            if not isinstance(self.fs, LocalFileSystem):
                self.fs.pipe_file(path, data)  # one PUT: atomic on object stores
                return
            folder = os.path.dirname(path)
            temp = os.path.join(folder, f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")
            try:
                with open(temp, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(temp, path)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temp)

    # -- reading ---------------------------------------------------------------------------

    def _get_json(self, path: str) -> dict[str, Any] | None:
        with self._io("read", self._where(path)):
            try:
                raw = self.fs.cat_file(path)
            except FileNotFoundError:
                return None
            value = json.loads(raw)
        if not isinstance(value, dict):
            raise SinkError(f"{self._where(path)} is not a JSON object")
        return value

    def _manifest(self, collection: str, required: bool = True) -> dict[str, Any] | None:
        manifest = self._get_json(f"{self._dir(collection)}/{MANIFEST_FILE}")
        if manifest is None and required:
            raise SinkError(
                f"parquet collection {collection!r} of sink {self.name!r} is incomplete: "
                "no manifest"
            )
        return manifest

    def _file(self, collection: str) -> str:
        return f"{self._dir(collection)}/{VECTORS_FILE}"

    def count(self, collection: str) -> int:
        manifest = self._manifest(collection)
        assert manifest is not None
        path = self._file(collection)
        with self._io("read", self._where(path)), self.fs.open(path, "rb") as f:
            rows = pq.ParquetFile(f).metadata.num_rows
        if rows != manifest["rows"]:
            raise SinkError(
                f"{self._where(path)} holds {rows} rows, its manifest says {manifest['rows']}"
            )
        return rows

    def open_vectors_file(self, collection: str) -> tuple[IO[bytes], int]:
        """The complete collection's Parquet file, opened for a streaming download, and its
        size; refuses a file that is not the one its manifest describes."""
        manifest = self._manifest(collection)
        assert manifest is not None
        path = self._file(collection)
        with self._io("open", self._where(path)):
            size = self.fs.size(path)
            if size != manifest["bytes"]:
                raise SinkError(
                    f"{self._where(path)} has {size} bytes, its manifest says {manifest['bytes']}"
                )
            return self.fs.open(path, "rb"), size

    def records(
        self, collection: str, batch: int = 4096
    ) -> Iterator[tuple[list[str], list[str], np.ndarray]]:
        manifest = self._manifest(collection)
        assert manifest is not None
        path = self._file(collection)
        dim = int(manifest["dim"])
        columns = ["object_id", "text_hash", "vector"]
        with self._io("read", self._where(path)), self.fs.open(path, "rb") as f:
            for part in pq.ParquetFile(f).iter_batches(batch_size=batch, columns=columns):
                flat = part.column("vector").flatten().to_numpy(zero_copy_only=False)
                yield (
                    part.column("object_id").to_pylist(),
                    part.column("text_hash").to_pylist(),
                    np.asarray(flat, dtype=np.float32).reshape(part.num_rows, dim),
                )

    def _matrix(self, collection: str) -> tuple[np.ndarray, np.ndarray]:
        """(object ids, n x dim vectors) of a collection; the last two loaded stay in memory
        so that repeated searches on the live one cost no read."""
        manifest = self._manifest(collection)
        assert manifest is not None
        cache_key = (collection, str(manifest["sha256"]))
        with self._lock:
            if cache_key in self._cache:
                self._cache.move_to_end(cache_key)
                return self._cache[cache_key]
        ids: list[str] = []
        parts: list[np.ndarray] = []
        for batch_ids, _, vectors in self.records(collection, batch=65536):
            ids.extend(batch_ids)
            parts.append(vectors)
        dim = int(manifest["dim"])
        matrix = np.concatenate(parts) if parts else np.zeros((0, dim), np.float32)
        loaded = (np.asarray(ids, dtype=object), matrix)
        with self._lock:
            self._cache[cache_key] = loaded
            while len(self._cache) > SEARCH_CACHE_SIZE:
                self._cache.popitem(last=False)
        return loaded

    def search(self, vector: np.ndarray, k: int, collection: str | None = None) -> list[Hit]:
        target = collection or self.live()
        if target is None:
            raise SinkError(f"sink {self.name!r} has no live collection; run a reindex first")
        ids, matrix = self._matrix(target)
        query = np.asarray(vector, dtype=np.float32).reshape(-1)
        if query.shape[0] != matrix.shape[1]:
            raise SinkError(
                f"query has {query.shape[0]} dimensions, collection {target!r} {matrix.shape[1]}"
            )
        if k <= 0 or len(ids) == 0:
            return []
        norm = float(np.linalg.norm(query))
        scores = matrix @ (query / norm if norm > 0 else query)
        if k < len(scores):
            # every item scoring at least the k-th best, so ties at the cut are ordered by id
            kth = scores[np.argpartition(-scores, k - 1)[k - 1]]
            candidates = np.flatnonzero(scores >= kth)
        else:
            candidates = np.arange(len(scores))
        order = np.lexsort((ids[candidates], -scores[candidates]))[:k]
        return [Hit(str(ids[i]), float(scores[i])) for i in candidates[order]]

    # -- the alias and housekeeping --------------------------------------------------------

    def live(self) -> str | None:
        current = self._get_json(f"{self._base()}/{CURRENT_FILE}")
        if current is None:
            return None
        name = current.get("collection")
        return name if isinstance(name, str) else None

    def switch(self, collection: str) -> str | None:
        self._manifest(collection)  # refuses an incomplete collection
        previous = self.live()
        if previous != collection:
            self._put_json(f"{self._base()}/{CURRENT_FILE}", {"collection": collection})
        return previous

    def drop(self, collection: str) -> None:
        folder = self._dir(collection)
        with self._lock:
            state = self._writing.pop(collection, None)
            parts = [self._parts.pop(k) for k in list(self._parts) if k[0] == collection]
            for cached in [c for c in self._cache if c[0] == collection]:
                del self._cache[cached]
        for writing in [state, *parts] if state is not None else parts:
            writing.abort()
        with self._io("delete", self._where(folder)):
            if self.fs.exists(folder):
                self.fs.rm(folder, recursive=True)

    def collections(self) -> list[str]:
        base = self._base()
        with self._io("list", self._where(base)):
            if not self.fs.exists(base):
                return []
            entries = self.fs.ls(base, detail=True)
        folders = [e["name"].rstrip("/") for e in entries if e.get("type") == "directory"]
        return sorted(n for n in map(posixpath.basename, folders) if _COLLECTION.match(n))

    def close(self) -> None:
        """Abandons unfinished writes (their files stay without a manifest, never served)."""
        with self._lock:
            writing = [*self._writing.values(), *self._parts.values()]
            self._writing, self._parts = {}, {}
            self._cache.clear()
        for state in writing:
            state.abort()
