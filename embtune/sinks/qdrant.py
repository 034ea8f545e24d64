"""A sink in Qdrant: a server (url) or, without one, Qdrant's embedded local mode on disk.

Each collection is a Qdrant collection with cosine distance; the sink's name is a Qdrant alias,
so searches by the alias and the switch (one atomic alias update) need nothing of ours.
Point ids are uuid5 of the object id, so writing an item twice replaces it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any, Literal

import httpx
import numpy as np
from pydantic import Field, field_validator
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from embtune.sinks.base import Hit, SinkConfig, SinkContext, SinkError, VectorSink

log = logging.getLogger(__name__)

# Fixed forever: point ids already written are uuid5(POINT_NAMESPACE, object_id).
POINT_NAMESPACE = uuid.UUID("ae21165c-9ad6-474d-9783-9bc618c78dc7")
_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")

# Local mode locks its folder: one client per folder per process, shared by every sink on it,
# and not thread-safe, so each call holds that folder's lock.
_local_clients: dict[str, tuple[QdrantClient, threading.RLock]] = {}
_local_guard = threading.Lock()


def close_local_clients() -> None:
    """Close every local-mode client of this process (at shutdown; tests, between tests)."""
    with _local_guard:
        clients = list(_local_clients.values())
        _local_clients.clear()
    for client, lock in clients:
        with lock, contextlib.suppress(Exception):
            client.close()


def _local_client(path: str) -> tuple[QdrantClient, threading.RLock]:
    with _local_guard:
        if path not in _local_clients:
            try:
                client = QdrantClient(path=path, force_disable_check_same_thread=True)
            except (OSError, RuntimeError, ValueError) as exc:
                raise SinkError(f"qdrant local storage at {path} cannot be opened: {exc}") from None
            _local_clients[path] = (client, threading.RLock())
        return _local_clients[path]


def point_id(object_id: str) -> str:
    return str(uuid.uuid5(POINT_NAMESPACE, object_id))


def _server_message(exc: UnexpectedResponse) -> str:
    """Qdrant's own words for a refusal (`{"status": {"error": ...}}`), else the raw body."""
    try:
        return str(exc.structured()["status"]["error"])
    except (ValueError, KeyError, TypeError):
        return exc.content[:200].decode("utf-8", "replace") or (exc.reason_phrase or "")


def _cheap_local_commits(client: QdrantClient, collection: str) -> None:
    """Local mode stores every point in its own SQLite transaction, and by default each commit
    waits for the disk (about 3 ms: 5k points took 19 s here, against 1.4 s this way). WAL with
    synchronous=NORMAL still survives a killed process; a power cut may lose the last commits,
    which the reindex's count check would catch. This reaches into qdrant-client's local storage
    (pinned in constraints.txt); when that changes shape, writes stay correct, only slower."""
    try:
        storage = client._client.collections[collection].storage.storage  # type: ignore[attr-defined]
        storage.execute("PRAGMA journal_mode=WAL")
        storage.execute("PRAGMA synchronous=NORMAL")
    except (AttributeError, KeyError, TypeError) as exc:
        log.debug("qdrant local storage not tuned for %s: %s", collection, exc)
    except sqlite3.Error as exc:
        log.warning("qdrant local storage not tuned for %s: %s", collection, exc)


class QdrantSink(VectorSink):
    type_name = "qdrant"

    class Config(SinkConfig):
        type: Literal["qdrant"]
        url: str | None = Field(None, description="Qdrant server; default: the service's.")
        timeout_s: float = Field(10, gt=0, le=600)
        batch: int = Field(512, ge=1, le=10000, description="Points per upsert request.")

        @field_validator("url")
        @classmethod
        def _http_url(cls, url: str | None) -> str | None:
            if url is not None and not re.match(r"^https?://[^/\s]", url):
                raise ValueError("must be an http:// or https:// URL")
            return url

    def __init__(self, config: SinkConfig, context: SinkContext) -> None:
        super().__init__(config, context)
        self.config: QdrantSink.Config = config  # type: ignore[assignment]
        url = self.config.url or context.qdrant_url
        self.url = url.rstrip("/") if url else None
        self.path = None if url else os.path.abspath(context.data_dir / "qdrant")
        # the key is a service setting (EMBTUNE_QDRANT_API_KEY), never part of a sink config:
        # configs are stored with tasks and aliases, and secrets stay out of the database
        self._api_key = context.qdrant_api_key
        self._server: QdrantClient | None = None
        self._server_guard = threading.Lock()

    @property
    def key(self) -> str:
        where = _USERINFO.sub("", self.url) if self.url else f"local:{self.path}"
        return f"qdrant:{where}/{self.name}"

    @property
    def _where(self) -> str:
        if self.url:
            return f"qdrant at {_USERINFO.sub('', self.url)}"
        return f"qdrant local storage at {self.path}"

    @contextlib.contextmanager
    def _call(self, doing: str) -> Iterator[QdrantClient]:
        """The client, held under the local folder's lock, with every failure turned into a
        SinkError saying where and what (never the api key)."""
        guard: AbstractContextManager[Any]
        if self.path is not None:
            client, guard = _local_client(self.path)
        else:
            with self._server_guard:
                if self._server is None:
                    self._server = QdrantClient(
                        url=self.url,
                        api_key=self._api_key,
                        timeout=self.config.timeout_s,  # type: ignore[arg-type]
                        check_compatibility=False,  # a version probe would start a thread
                    )
                client = self._server
            guard = contextlib.nullcontext()
        try:
            with guard:
                yield client
        except SinkError:
            raise
        except UnexpectedResponse as exc:
            raise SinkError(
                f"{self._where} refused to {doing} (HTTP {exc.status_code}): "
                f"{self._clean(_server_message(exc))}"
            ) from None
        except (ResponseHandlingException, httpx.HTTPError) as exc:
            source = getattr(exc, "source", exc)
            detail = self._clean(str(source) or type(source).__name__)
            raise SinkError(f"{self._where} is unreachable: {detail}") from None
        except (OSError, RuntimeError, ValueError) as exc:
            raise SinkError(f"{self._where} failed to {doing}: {self._clean(str(exc))}") from None

    def _clean(self, text: str) -> str:
        text = _USERINFO.sub("", text)
        return text.replace(self._api_key, "***") if self._api_key else text

    def _exists(self, collection: str) -> bool:
        with self._call(f"look up collection {collection!r}") as client:
            return bool(client.collection_exists(collection))

    def _require(self, collection: str) -> None:
        if not self._exists(collection):
            raise SinkError(f"{self._where} has no collection {collection!r}")

    # -- writing ---------------------------------------------------------------------------

    def create(self, collection: str, dim: int) -> None:
        self.drop(collection)
        with self._call(f"create collection {collection!r}") as client:
            client.create_collection(
                collection_name=collection,
                vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE),
            )
            if self.path is not None:
                _cheap_local_commits(client, collection)

    def write(
        self,
        collection: str,
        object_ids: list[str],
        vectors: np.ndarray,
        text_hashes: list[str],
        model_id: str,
    ) -> None:
        matrix = np.asarray(vectors, dtype=np.float32)
        n = len(object_ids)
        if matrix.ndim != 2 or matrix.shape[0] != n or len(text_hashes) != n:
            raise SinkError(
                f"write to {collection!r}: {n} ids, {len(text_hashes)} hashes and vectors of "
                f"shape {matrix.shape} do not match"
            )
        step = self.config.batch
        for start in range(0, n, step):
            ids = object_ids[start : start + step]
            hashes = text_hashes[start : start + step]
            points = models.Batch(
                ids=[point_id(o) for o in ids],
                vectors=matrix[start : start + step].tolist(),
                payloads=[
                    {"object_id": o, "text_hash": h, "model_id": model_id}
                    for o, h in zip(ids, hashes, strict=True)
                ],
            )
            with self._call(f"write {len(ids)} points into {collection!r}") as client:
                client.upsert(collection_name=collection, points=points, wait=True)

    def finish(self, collection: str) -> int:
        return self.count(collection)

    # -- reading ---------------------------------------------------------------------------

    def count(self, collection: str) -> int:
        self._require(collection)
        with self._call(f"count collection {collection!r}") as client:
            return int(client.count(collection_name=collection, exact=True).count)

    def records(
        self, collection: str, batch: int = 4096
    ) -> Iterator[tuple[list[str], list[str], np.ndarray]]:
        self._require(collection)
        offset: Any = None
        while True:
            # the lock is held per page, never while the caller works on one
            with self._call(f"read collection {collection!r}") as client:
                points, offset = client.scroll(
                    collection_name=collection,
                    limit=batch,
                    offset=offset,
                    with_payload=True,
                    with_vectors=True,
                )
            if points:
                payloads = [p.payload or {} for p in points]
                yield (
                    [str(p["object_id"]) for p in payloads],
                    [str(p.get("text_hash", "")) for p in payloads],
                    np.asarray([p.vector for p in points], dtype=np.float32),
                )
            if offset is None:
                return

    def search(self, vector: np.ndarray, k: int, collection: str | None = None) -> list[Hit]:
        if collection is None and self.live() is None:
            raise SinkError(f"sink {self.name!r} has no live collection; run a reindex first")
        target = collection or self.name  # the alias: a switch meanwhile is seen whole
        if k <= 0:
            return []
        query = np.asarray(vector, dtype=np.float32).reshape(-1).tolist()
        with self._call(f"search {target!r}") as client:
            result = client.query_points(
                collection_name=target, query=query, limit=k, with_payload=["object_id"]
            )
        return [Hit(str((p.payload or {})["object_id"]), float(p.score)) for p in result.points]

    # -- the alias and housekeeping --------------------------------------------------------

    def live(self) -> str | None:
        with self._call(f"read alias {self.name!r}") as client:
            aliases = client.get_aliases().aliases
        return next((a.collection_name for a in aliases if a.alias_name == self.name), None)

    def switch(self, collection: str) -> str | None:
        previous = self.live()
        if previous == collection:
            return previous
        self._require(collection)
        operations: list[Any] = []
        if previous is not None:
            operations.append(
                models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=self.name))
            )
        operations.append(
            models.CreateAliasOperation(
                create_alias=models.CreateAlias(collection_name=collection, alias_name=self.name)
            )
        )
        with self._call(f"point alias {self.name!r} at {collection!r}") as client:
            client.update_collection_aliases(change_aliases_operations=operations)
        return previous

    def drop(self, collection: str) -> None:
        if self._exists(collection):
            with self._call(f"delete collection {collection!r}") as client:
                client.delete_collection(collection_name=collection)

    def collections(self) -> list[str]:
        with self._call("list collections") as client:
            names = [c.name for c in client.get_collections().collections]
        return sorted(n for n in names if n.startswith(f"{self.name}-"))

    def close(self) -> None:
        """Closes this sink's server client; local clients are shared, closed at shutdown."""
        with self._server_guard:
            server, self._server = self._server, None
        if server is not None:
            server.close()
