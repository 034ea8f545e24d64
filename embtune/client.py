"""Typed Python client for the embtune HTTP API (the CLI uses it too).

    from embtune.client import Client
    with Client("http://127.0.0.1:8000") as api:
        model = api.register_model("base", "builtin:all-MiniLM-L6-v2")
        task = api.create_task(model.id, idempotency_key="nightly-2026-11-29")
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, NoReturn, TypeVar

import httpx
from pydantic import BaseModel, TypeAdapter

from embtune.client_governance import GovernanceClientMixin
from embtune.client_imports import ImportsClientMixin
from embtune.client_reindex import ReindexClientMixin
from embtune.client_webhooks import WebhooksClientMixin
from embtune.schemas.aliases import AliasPublic, AliasSummary
from embtune.schemas.clickstream import BatchPublic
from embtune.schemas.clickstream_bulk import BulkSessionsResult
from embtune.schemas.evaluation_sets import EvaluationSetDetail, EvaluationSetPublic
from embtune.schemas.models import ModelPublic, PluginPublic
from embtune.schemas.search import SearchTrialPublic
from embtune.schemas.tasks import TaskEventPublic, TaskPublic

T = TypeVar("T")
DEFAULT_URL = "http://127.0.0.1:8000"


class ApiError(Exception):
    """The server answered with an error; `detail` is its message (or field errors)."""

    def __init__(self, status_code: int, detail: Any) -> None:
        self.status_code = status_code
        self.detail = detail
        super().__init__(f"HTTP {status_code}: {format_detail(detail)}")


class NotFoundError(ApiError):
    """404: the named resource does not exist."""


class ConflictError(ApiError):
    """409: the request contradicts the resource's state or an earlier request."""


class ValidationError(ApiError):
    """422 (or 400): the request was rejected; `detail` names the fields."""


class UnavailableError(ApiError):
    """503 or no answer at all: the server or a service behind it is down."""


def format_detail(detail: Any) -> str:
    """One line: field errors as `params.epochs: msg; …`, anything else as its text."""
    if isinstance(detail, list):
        parts = []
        for err in detail:
            if isinstance(err, Mapping):
                loc = list(err.get("loc") or [])
                if loc and loc[0] in ("body", "query", "path", "header"):
                    loc = loc[1:]  # where the field came from, not part of its name
                name = ".".join(str(p) for p in loc)
                parts.append(f"{name}: {err.get('msg', '')}" if name else str(err.get("msg", "")))
            else:
                parts.append(str(err))
        return "; ".join(parts)
    return str(detail)


_ERRORS: dict[int, type[ApiError]] = {
    400: ValidationError,
    404: NotFoundError,
    409: ConflictError,
    422: ValidationError,
    503: UnavailableError,
}


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    total: int


class Client(
    ReindexClientMixin, ImportsClientMixin, GovernanceClientMixin, WebhooksClientMixin
):
    def __init__(
        self,
        url: str | None = None,
        *,
        token: str | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = (url or os.environ.get("EMBTUNE_URL") or DEFAULT_URL).rstrip("/")
        token = token or os.environ.get("EMBTUNE_API_TOKEN")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(
            base_url=self.url, timeout=timeout, headers=headers, transport=transport
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- plumbing -------------------------------------------------------------------------------
    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise UnavailableError(0, f"cannot reach embtune at {self.url}: {exc}") from None
        if response.status_code >= 400:
            self._raise_for(response)
        return response

    def _json(self, method: str, path: str, schema: Any = None, **kwargs: Any) -> Any:
        data = self._request(method, path, **kwargs).json()
        return TypeAdapter(schema).validate_python(data) if schema is not None else data

    def _page(self, path: str, item: type[BaseModel], params: dict[str, Any]) -> Page[Any]:
        response = self._request(
            "GET", path, params={k: v for k, v in params.items() if v is not None}
        )
        items = TypeAdapter(list[item]).validate_python(response.json())  # type: ignore[valid-type]
        return Page(items, int(response.headers.get("X-Total-Count", len(items))))

    # -- health -----------------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        return self._json("GET", "/healthz")

    def ready(self) -> dict[str, Any]:
        return self._json("GET", "/readyz")

    # -- models -----------------------------------------------------------------------------------
    def register_model(
        self,
        name: str,
        source: str,
        plugin_name: str = "sentence-transformers-mnrl",
        evaluation_set_id: str | None = None,
    ) -> ModelPublic:
        """`evaluation_set_id`: a judged set (id or name) its tasks are scored on by default."""
        body = {"name": name, "source": source, "plugin_name": plugin_name}
        if evaluation_set_id is not None:
            body["evaluation_set_id"] = evaluation_set_id
        return self._json("POST", "/api/v1/embedding-models", ModelPublic, json=body)

    def list_models(self, offset: int = 0, limit: int = 20) -> Page[ModelPublic]:
        return self._page("/api/v1/embedding-models", ModelPublic,
                          {"offset": offset, "limit": limit})

    def get_model(self, model_id: str) -> ModelPublic:
        return self._json("GET", f"/api/v1/embedding-models/{model_id}", ModelPublic)

    def lineage(self, model_id: str) -> list[ModelPublic]:
        return self._json("GET", f"/api/v1/embedding-models/{model_id}/lineage",
                          list[ModelPublic])

    def plugins(self) -> list[PluginPublic]:
        return self._json("GET", "/api/v1/plugins", list[PluginPublic])

    def download_model(self, model_id: str, target: Path) -> Path:
        """Stream the model's tar.gz to `target`."""
        return self._download(f"/api/v1/embedding-models/{model_id}/download", target)

    def _download(self, path: str, target: Path) -> Path:
        """Stream a GET's body to `target`."""
        try:
            with self._http.stream("GET", path) as r:
                if r.status_code >= 400:
                    r.read()
                    self._raise_for(r)
                with target.open("wb") as out:
                    for chunk in r.iter_bytes():
                        out.write(chunk)
        except httpx.TransportError as exc:
            raise UnavailableError(0, f"cannot reach embtune at {self.url}: {exc}") from None
        return target

    def _raise_for(self, response: httpx.Response) -> NoReturn:
        """The error for a 4xx/5xx answer; a proxy's HTML page or an empty body still reads."""
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and "detail" in body:
            detail = body["detail"]
        else:
            detail = response.text.strip()[:500] or response.reason_phrase
        raise _ERRORS.get(response.status_code, ApiError)(response.status_code, detail)

    def embed(self, model_id: str, texts: list[str]) -> list[list[float]]:
        data = self._json("POST", f"/api/v1/embedding-models/{model_id}/embed",
                          json={"texts": texts})
        return data["vectors"]

    # -- aliases ----------------------------------------------------------------------------------
    def set_alias(
        self,
        name: str,
        model_id: str,
        reason: str | None = None,
        expected_version: int | None = None,
        sink: Mapping[str, Any] | None = None,
    ) -> AliasPublic:
        """Point `name` at a model (creating the alias). `expected_version` makes the change
        conditional (0: only if the alias does not exist yet): ConflictError otherwise. `sink`
        names the vector sink the alias serves from (its moves then reindex it)."""
        body = {"model_id": model_id, "reason": reason, "expected_version": expected_version,
                "sink": dict(sink) if sink is not None else None}
        return self._json("PUT", f"/api/v1/aliases/{name}", AliasPublic,
                          json={k: v for k, v in body.items() if v is not None})

    def set_alias_sink(self, name: str, sink: Mapping[str, Any] | None) -> AliasPublic:
        """Name the sink an alias serves from (None: none); a new sink is reindexed."""
        return self._json("PUT", f"/api/v1/aliases/{name}/sink", AliasPublic,
                          json={"sink": dict(sink) if sink is not None else None})

    def get_alias(self, name: str) -> AliasPublic:
        """The alias with its newest changes, newest first."""
        return self._json("GET", f"/api/v1/aliases/{name}", AliasPublic)

    def list_aliases(self, offset: int = 0, limit: int = 20) -> Page[AliasSummary]:
        return self._page("/api/v1/aliases", AliasSummary, {"offset": offset, "limit": limit})

    def rollback_alias(
        self, name: str, reason: str | None = None, expected_version: int | None = None
    ) -> AliasPublic:
        """Back to the model before the alias's live change; ConflictError when there is
        none."""
        body = {"reason": reason, "expected_version": expected_version}
        return self._json("POST", f"/api/v1/aliases/{name}/rollback", AliasPublic,
                          json={k: v for k, v in body.items() if v is not None})

    # -- tasks ------------------------------------------------------------------------------------
    def create_task(
        self,
        embedding_model_id: str,
        *,
        idempotency_key: str | None = None,
        batch_id: str | None = None,
        params: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> TaskPublic:
        body = {
            "embedding_model_id": embedding_model_id,
            "idempotency_key": idempotency_key,
            "batch_id": batch_id,
            "params": params,
            "metadata": metadata,
        }
        return self._json("POST", "/api/v1/fine-tuning/task", TaskPublic,
                          json={k: v for k, v in body.items() if v is not None})

    def preflight(self, embedding_model_id: str, **body: Any) -> dict[str, Any]:
        payload = {"embedding_model_id": embedding_model_id, **body}
        return self._json("POST", "/api/v1/fine-tuning/task/preflight",
                          json={k: v for k, v in payload.items() if v is not None})

    def list_tasks(
        self,
        offset: int = 0,
        limit: int = 20,
        status: str | None = None,
        embedding_model_id: str | None = None,
    ) -> Page[TaskPublic]:
        return self._page(
            "/api/v1/fine-tuning/task",
            TaskPublic,
            {"offset": offset, "limit": limit, "status": status,
             "embedding_model_id": embedding_model_id},
        )

    def get_task(self, task_id: str) -> TaskPublic:
        return self._json("GET", f"/api/v1/fine-tuning/task/{task_id}", TaskPublic)

    def task_events(self, task_id: str) -> list[TaskEventPublic]:
        return self._json("GET", f"/api/v1/fine-tuning/task/{task_id}/events",
                          list[TaskEventPublic])

    def task_trials(self, task_id: str) -> list[SearchTrialPublic]:
        """The trials of the task's hyperparameter search (empty without a search)."""
        return self._json("GET", f"/api/v1/fine-tuning/task/{task_id}/trials",
                          list[SearchTrialPublic])

    def restart_task(self, task_id: str) -> TaskPublic:
        return self._json("PUT", f"/api/v1/fine-tuning/task/{task_id}/restart", TaskPublic)

    def cancel_task(self, task_id: str) -> TaskPublic:
        return self._json("PUT", f"/api/v1/fine-tuning/task/{task_id}/cancel", TaskPublic)

    def follow(self, task_id: str, interval_s: float = 0.5) -> Iterator[TaskPublic]:
        """Yield the task as it changes until it reaches a final state."""
        return self._follow(self.get_task, task_id, interval_s)

    @staticmethod
    def _follow(get: Callable[[str], Any], task_id: str, interval_s: float) -> Iterator[Any]:
        """Poll `get(task_id)`, yielding each new (status, progress), until a final state."""
        import time

        last = None
        while True:
            task = get(task_id)
            snapshot = (task.status, task.progress.model_dump())
            if snapshot != last:
                yield task
                last = snapshot
            if task.status.is_terminal:
                return
            time.sleep(interval_s)

    # -- evaluation sets --------------------------------------------------------------------------
    def create_evaluation_set(
        self,
        name: str,
        queries: Iterable[Mapping[str, Any]],
        description: str | None = None,
    ) -> EvaluationSetPublic:
        """Store a judged set whole: queries `{query_id, text, relevant: [{object_id, grade}]}`
        whose items are all in the catalogue. Sets never change; a taken name is a
        ConflictError."""
        body: dict[str, Any] = {"name": name, "queries": list(queries)}
        if description is not None:
            body["description"] = description
        return self._json("POST", "/api/v1/evaluation-sets", EvaluationSetPublic, json=body)

    def list_evaluation_sets(self, offset: int = 0, limit: int = 20) -> Page[EvaluationSetPublic]:
        return self._page("/api/v1/evaluation-sets", EvaluationSetPublic,
                          {"offset": offset, "limit": limit})

    def get_evaluation_set(
        self, id_or_name: str, include_queries: bool = False
    ) -> EvaluationSetDetail:
        params = {"include_queries": "true"} if include_queries else None
        return self._json("GET", f"/api/v1/evaluation-sets/{id_or_name}", EvaluationSetDetail,
                          params=params)

    def evaluation_queries(
        self, id_or_name: str, page_size: int = 1000
    ) -> Iterator[dict[str, Any]]:
        """Every query of a set with its judgements, in posted order, a page per request."""
        offset = 0
        while True:
            response = self._request(
                "GET", f"/api/v1/evaluation-sets/{id_or_name}/queries",
                params={"offset": offset, "limit": page_size},
            )
            page = response.json()
            yield from page
            offset += len(page)
            if not page or offset >= int(response.headers.get("X-Total-Count", offset)):
                return

    def set_model_evaluation_set(self, model_id: str, set_id_or_name: str | None) -> ModelPublic:
        """The judged set a model's tasks use by default (None clears it)."""
        return self._json("PUT", f"/api/v1/embedding-models/{model_id}/evaluation-set",
                          ModelPublic, json={"evaluation_set_id": set_id_or_name})

    # -- catalogue and clickstream ----------------------------------------------------------------
    def upsert_items(self, items: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
        return self._json("POST", "/api/v1/items", json={"items": list(items)})

    def delete_items(self, object_ids: Iterable[str]) -> int:
        """Remove items from the catalogue; how many existed."""
        return self._json("POST", "/api/v1/items/delete",
                          json={"object_ids": list(object_ids)})["deleted"]

    def get_item(self, object_id: str) -> dict[str, Any]:
        return self._json("GET", f"/api/v1/items/{object_id}")

    def post_session(
        self,
        session_id: str,
        search_query: str,
        results: list[str],
        **extra: Any,
    ) -> dict[str, Any]:
        body = {
            "session_id": session_id,
            "search_query": search_query,
            "search_results": [{"object_id": oid, "rank": i + 1} for i, oid in enumerate(results)],
            **extra,
        }
        return self.create_session(body)[0]

    def create_session(self, body: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
        """Post a session body as it is; returns (session, created). Posting the same body
        again is harmless (created is False); another body under the same id is a 409."""
        response = self._request("POST", "/api/v1/clickstream/session", json=dict(body))
        return response.json(), response.status_code == 201

    def push_events(self, session_id: str, events: list[Mapping[str, Any]]) -> dict[str, Any]:
        return self._json("POST", "/api/v1/clickstream/session/events",
                          json={"session_id": session_id, "events": list(events)})

    def ingest_sessions_bulk(self, rows: list[Mapping[str, Any]]) -> BulkSessionsResult:
        """Post up to the server's `bulk_max_rows` session rows (session bodies with optional
        `events`, `clicks`, `irrelevant`) in one request; an outcome per row. Replaying the
        same rows is harmless: each comes back `duplicate`."""
        return self._json("POST", "/api/v1/clickstream/sessions:bulk", BulkSessionsResult,
                          json={"sessions": list(rows)})

    def mark_irrelevant(self, session_id: str) -> dict[str, Any]:
        return self._json("POST", "/api/v1/clickstream/session/irrelevant",
                          json={"session_id": session_id})

    def get_session(self, session_id: str) -> dict[str, Any]:
        return self._json("GET", f"/api/v1/clickstream/session/{session_id}")

    def release_batch(self) -> dict[str, Any]:
        return self._json("POST", "/api/v1/clickstream/batch/release")

    def get_batch(self, batch_id: str) -> dict[str, Any]:
        """One batch with its counts (`late_events` too) and `task_ids`, the tasks naming it."""
        return self._json("GET", f"/api/v1/clickstream/batch/{batch_id}")

    def list_batches(self, offset: int = 0, limit: int = 20) -> Page[BatchPublic]:
        """Batches newest first, each with `task_ids`: a released batch with none is waiting
        for a task (or was orphaned), never hidden."""
        return self._page(
            "/api/v1/clickstream/batch", BatchPublic, {"offset": offset, "limit": limit}
        )
