"""Reindex use cases behind the API: create a reindex task (idempotent), search a sink, and
serve a model's Parquet vectors. Reading, restarting and canceling a reindex task are the task
verbs every kind shares (`TaskService` with `TaskKind.reindex`).

A reindex task is a task like any other: `tasks` row (kind `reindex`), the same transitions,
the same queue message and recovery. Its params are the validated sink config, `incremental`,
and the alias it serves, if any.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO, Any

from sqlalchemy.orm import Session

from embtune.domain.fingerprint import request_fingerprint
from embtune.domain.sinks import SinkCollection
from embtune.domain.tasks import Task, TaskKind
from embtune.errors import Conflict, InvalidParams, NotFound
from embtune.services.aliases import AliasService
from embtune.services.tasks import TaskService, existing_for_key, new_task_row
from embtune.services.weights import ModelWeights
from embtune.sinks.base import Hit, SinkConfig
from embtune.sinks.registry import SinkRegistry
from embtune.storage.aliases_repo import AliasRepository
from embtune.storage.db import Database, utcnow
from embtune.storage.models_repo import ModelRepository
from embtune.storage.sink_collections_repo import SinkCollectionRepository
from embtune.storage.tasks_repo import TaskRepository

log = logging.getLogger(__name__)


def stored_sink(config: SinkConfig) -> dict[str, Any]:
    """A sink config as tasks and aliases store it: secrets never go into the database."""
    return config.model_dump(mode="json", exclude={"api_key"})


def insert_reindex_task(
    session: Session,
    *,
    model_id: str,
    sink: Mapping[str, Any],
    incremental: bool,
    alias: str | None,
    idempotency_key: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    shards: int | None = None,
) -> tuple[Task | None, str]:
    """Insert a reindex task in the caller's transaction (a promotion creates one in the
    transaction that moves its alias); the task (None when the key existed) and the request
    fingerprint. The caller sends its message after commit."""
    params: dict[str, Any] = {"sink": dict(sink), "incremental": incremental, "alias": alias}
    if shards is not None:  # absent: the worker's EMBTUNE_REINDEX_SHARD_ITEMS decides
        params["shards"] = shards
    fingerprint = request_fingerprint(
        {"kind": TaskKind.reindex.value, "embedding_model_id": model_id, "params": params,
         "metadata": dict(metadata or {})}
    )
    created = TaskRepository().create(session, new_task_row(
        TaskKind.reindex, model_id=model_id, idempotency_key=idempotency_key,
        fingerprint=fingerprint, params=params, metadata=metadata, now=utcnow(),
    ))
    return created, fingerprint


def _check_shards(shards: int | None, incremental: bool) -> None:
    """1..256 shards, and more than one only for a full run (an incremental one copies from
    the previous collection in one pass)."""
    if shards is None:
        return
    problem = None
    if isinstance(shards, bool) or not isinstance(shards, int) or not 1 <= shards <= 256:
        problem = "must be an integer from 1 to 256"
    elif shards > 1 and incremental:
        problem = "an incremental reindex runs as one shard; give 1 or leave it out"
    if problem:
        raise InvalidParams(f"shards: {problem}", [
            {"loc": ["body", "shards"], "type": "value_error", "msg": problem}])


@dataclass(frozen=True)
class SearchResult:
    hits: list[Hit]
    model_id: str  # the model that embedded the query: the one whose vectors the sink holds
    collection: str
    sink: dict[str, Any]
    alias: str | None = None
    alias_model_id: str | None = None  # where the alias points (differs while reindexing)
    live: bool = True  # the sink serves the alias's model


class ReindexService:
    def __init__(
        self,
        db: Database,
        tasks: TaskService,
        sinks: SinkRegistry,
        aliases: AliasService,
        weights: ModelWeights,
    ) -> None:
        self.db = db
        self.tasks = tasks
        self.sinks = sinks
        self.aliases = aliases
        self.weights = weights
        self.models = ModelRepository()
        self.alias_rows = AliasRepository()
        self.collections = SinkCollectionRepository()

    # -- create -------------------------------------------------------------------------------
    def create(
        self,
        *,
        model_id: str | None = None,
        alias: str | None = None,
        sink: Mapping[str, Any] | None = None,
        incremental: bool = False,
        idempotency_key: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        shards: int | None = None,
    ) -> tuple[Task, bool]:
        """(task, created): the task this key already made when the body is the same; 409 when
        it is not. Exactly one of `model_id` and `alias` (the schema checks it); an alias
        reindexes the model it points at into its own sink unless `sink` names another."""
        _check_shards(shards, incremental)
        target, alias_sink = self._target(model_id, alias)
        config = self.sinks.validate(sink if sink is not None else alias_sink)
        with self.db.transaction() as session:
            created, fingerprint = insert_reindex_task(
                session,
                model_id=target,
                sink=stored_sink(config),
                incremental=incremental,
                alias=alias,
                idempotency_key=idempotency_key,
                metadata=metadata,
                shards=shards,
            )
            if created is None:
                assert idempotency_key is not None
                existing = existing_for_key(self.tasks.tasks, session, idempotency_key,
                                            fingerprint)
                return existing, False
        assert created.message_id is not None
        self.tasks.send(created.id, created.message_id)
        return created, True

    def _target(self, model_id: str | None, alias: str | None) -> tuple[str, Any]:
        with self.db.read() as session:
            if model_id is not None:
                if self.models.get(session, model_id) is None:
                    raise NotFound(f"model_id: embedding model {model_id!r} not found")
                return model_id, None
            assert alias is not None
            row = self.alias_rows.get(session, alias)
        if row is None:
            raise NotFound(f"alias: alias {alias!r} not found")
        return row.model_id, row.sink

    # -- search -------------------------------------------------------------------------------
    def search(
        self, *, query: str, k: int, alias: str | None = None, model_id: str | None = None
    ) -> SearchResult:
        """Embed `query` with the model whose vectors the sink serves and search it: by alias,
        the alias's sink (its live collection); by model, that model's newest complete
        collection (live first)."""
        if alias is not None:
            with self.db.read() as session:
                row = self.alias_rows.get(session, alias)
                if row is None:
                    raise NotFound(f"alias: alias {alias!r} not found")
                if row.sink is None:
                    raise Conflict(
                        f"alias {alias!r} names no sink: set one (PUT /api/v1/aliases/{alias} "
                        "with a sink) and reindex"
                    )
                config = self.sinks.validate(row.sink)
                sink = self.sinks.open(config)
                serving = self.collections.live(session, sink.key)
            if serving is None:
                sink.close()
                raise Conflict(f"alias {alias!r}: its sink has no live collection yet; "
                               "a reindex has not finished")
            return self._search(sink, serving, query, k, alias=alias,
                                alias_model_id=row.model_id)
        assert model_id is not None
        with self.db.read() as session:
            if self.models.get(session, model_id) is None:
                raise NotFound(f"model_id: embedding model {model_id!r} not found")
            found = self.collections.of_model(session, model_id)
        if not found:
            raise Conflict(f"model {model_id} has no vectors in any sink: reindex it first")
        return self._search(self.sinks.open(found[0].sink), found[0], query, k)

    def _search(
        self,
        sink: Any,
        serving: SinkCollection,
        query: str,
        k: int,
        *,
        alias: str | None = None,
        alias_model_id: str | None = None,
    ) -> SearchResult:
        try:
            vector = self.weights.query_vector(serving.model_id, query)
            hits = sink.search(vector, k, serving.collection)
        finally:
            sink.close()
        return SearchResult(
            hits=hits,
            model_id=serving.model_id,
            collection=serving.collection,
            sink={"type": serving.sink_type, "name": serving.sink.get("name")},
            alias=alias,
            alias_model_id=alias_model_id,
            live=alias_model_id is None or alias_model_id == serving.model_id,
        )

    # -- Parquet vectors ------------------------------------------------------------------------
    def vectors_file(self, model_id: str) -> tuple[IO[bytes], int, str]:
        """The newest complete Parquet file of a model's vectors: (handle, size, file name)."""
        with self.db.read() as session:
            if self.models.get(session, model_id) is None:
                raise NotFound(f"embedding model {model_id!r} not found")
            found = self.collections.of_model(session, model_id, sink_type="parquet")
        if not found:
            raise NotFound(
                f"model {model_id} has no Parquet vectors: create a reindex task with "
                '"sink": {"type": "parquet"} first'
            )
        newest = found[0]
        sink = self.sinks.open(newest.sink)
        handle, size = sink.open_vectors_file(newest.collection)  # type: ignore[attr-defined]
        return handle, size, f"{model_id}-{newest.collection}.parquet"

    def collections_of(self, model_id: str) -> list[SinkCollection]:
        with self.db.read() as session:
            return self.collections.of_model(session, model_id)

    def page(self, **filters: Any) -> tuple[list[Task], int]:
        return self.tasks.page(kind=TaskKind.reindex, **filters)
