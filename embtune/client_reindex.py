"""The client's reindex, search and vectors calls, as a mixin of `embtune.client.Client`.

Written against `Client`'s plumbing (`_json`, `_page`, `_request`, `_raise_for`, `_http`), so the
methods can move into `Client` unchanged.

    with Client() as api:
        task = api.create_reindex_task(alias="production", sink={"type": "parquet"})
        for task in api.follow_reindex(task.id):
            ...
        hits = api.search("red running shoes", alias="production").hits
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from embtune.schemas.reindex import (
    ReindexTaskPublic,
    SearchResponse,
    SinkCollectionPublic,
)
from embtune.schemas.tasks import TaskEventPublic

REINDEX = "/api/v1/reindex/task"


class ReindexClientMixin:
    """Reindex tasks (a model's catalogue vectors into a sink), search, Parquet vectors."""

    # -- reindex tasks ----------------------------------------------------------------------------
    def create_reindex_task(
        self,
        model_id: str | None = None,
        *,
        alias: str | None = None,
        sink: Mapping[str, Any] | None = None,
        incremental: bool = False,
        idempotency_key: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        shards: int | None = None,
    ) -> ReindexTaskPublic:
        """Exactly one of `model_id` and `alias`. `sink`: `{"type": "parquet"|"qdrant", …}`;
        default: the alias's sink, else the server's default Qdrant sink."""
        body = {
            "model_id": model_id,
            "alias": alias,
            "sink": dict(sink) if sink is not None else None,
            "incremental": incremental,
            "idempotency_key": idempotency_key,
            "metadata": dict(metadata) if metadata is not None else None,
            "shards": shards,
        }
        return self._json("POST", REINDEX, ReindexTaskPublic,  # type: ignore[attr-defined]
                          json={name: value for name, value in body.items() if value is not None})

    def list_reindex_tasks(
        self,
        offset: int = 0,
        limit: int = 20,
        status: str | None = None,
        embedding_model_id: str | None = None,
    ) -> Any:  # Page[ReindexTaskPublic]
        return self._page(  # type: ignore[attr-defined]
            REINDEX,
            ReindexTaskPublic,
            {"offset": offset, "limit": limit, "status": status,
             "embedding_model_id": embedding_model_id},
        )

    def get_reindex_task(self, task_id: str) -> ReindexTaskPublic:
        return self._json("GET", f"{REINDEX}/{task_id}",  # type: ignore[attr-defined]
                          ReindexTaskPublic)

    def reindex_events(self, task_id: str) -> list[TaskEventPublic]:
        return self._json("GET", f"{REINDEX}/{task_id}/events",  # type: ignore[attr-defined]
                          list[TaskEventPublic])

    def restart_reindex_task(self, task_id: str) -> ReindexTaskPublic:
        return self._json("PUT", f"{REINDEX}/{task_id}/restart",  # type: ignore[attr-defined]
                          ReindexTaskPublic)

    def cancel_reindex_task(self, task_id: str) -> ReindexTaskPublic:
        return self._json("PUT", f"{REINDEX}/{task_id}/cancel",  # type: ignore[attr-defined]
                          ReindexTaskPublic)

    def follow_reindex(self, task_id: str, interval_s: float = 0.5) -> Iterator[ReindexTaskPublic]:
        """Yield the reindex task as it changes until it reaches a final state."""
        return self._follow(self.get_reindex_task, task_id, interval_s)  # type: ignore[attr-defined]

    # -- search and vectors -----------------------------------------------------------------------
    def search(
        self, query: str, alias: str | None = None, model_id: str | None = None, k: int = 10
    ) -> SearchResponse:
        """The `k` nearest catalogue items: by alias (its sink's live collection) or by model
        (its newest complete collection). Exactly one of `alias` and `model_id`."""
        body = {"query": query, "alias": alias, "model_id": model_id, "k": k}
        return self._json("POST", "/api/v1/search", SearchResponse,  # type: ignore[attr-defined]
                          json={name: value for name, value in body.items() if value is not None})

    def model_collections(self, model_id: str) -> list[SinkCollectionPublic]:
        """The model's complete collections in every sink, live first (`model_id` may be an
        alias)."""
        return self._json(  # type: ignore[attr-defined]
            "GET", f"/api/v1/embedding-models/{model_id}/collections",
            list[SinkCollectionPublic],
        )

    def download_vectors(self, model_id: str, target: Path) -> Path:
        """Stream the model's newest Parquet vectors to `target` (`model_id` may be an
        alias): `object_id`, `vector` (fixed-size float32 list), `model_id`, `text_hash`."""
        return self._download(  # type: ignore[attr-defined]
            f"/api/v1/embedding-models/{model_id}/vectors", target
        )
