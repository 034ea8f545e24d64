"""Task use cases behind the API: create (idempotent), read, restart, cancel.

Each one owns its transaction and commits before talking to the broker, so a broker outage can
delay a run but never lose or duplicate a task.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from embtune.artifacts import resolve_source
from embtune.domain.fingerprint import request_fingerprint
from embtune.domain.models import EmbeddingModel
from embtune.domain.tasks import RUN_OUTCOMES, Task, TaskEvent, TaskKind, TaskStatus, Transition
from embtune.errors import Conflict, InvalidParams, NotFound
from embtune.plugins.base import Estimating, FineTuningPlugin
from embtune.plugins.registry import PluginRegistry
from embtune.queue.dispatch import Dispatcher
from embtune.schemas.search import check_space
from embtune.schemas.task_policy import TaskPolicy, merge_policy, split_policy
from embtune.services.clickstream import ClickstreamService
from embtune.services.dispatch_marks import DispatchMarks
from embtune.services.evaluation_sets import EvaluationSetService
from embtune.services.throughput import ThroughputHistory
from embtune.storage.db import Database, utcnow
from embtune.storage.ids import new_id
from embtune.storage.models_repo import ModelRepository
from embtune.storage.tasks_repo import TaskRepository

log = logging.getLogger(__name__)

KNOWN_MODELS_MAX = 10_000

# Fields a restart wipes: the new run starts from a clean record (earlier models stay registered).
RUN_FIELDS_RESET: dict[str, Any] = {
    "attempts": 0,
    "dispatched_at": None,
    "progress": None,
    "metrics": None,
    "result_model_id": None,
    "detail": None,
    "started_at": None,
    "finished_at": None,
    "heartbeat_at": None,
    "worker_id": None,
}


def new_task_row(
    kind: TaskKind,
    *,
    model_id: str | None,
    idempotency_key: str | None,
    fingerprint: str,
    params: dict[str, Any],
    metadata: Mapping[str, Any] | None,
    now: datetime,
    batch_id: str | None = None,
) -> dict[str, Any]:
    """The values a new task of any kind is inserted with (its status and "created" event
    come from `Transition.create`): fresh id and message id, no attempt yet."""
    return {
        "id": new_id(),
        "kind": kind.value,
        "embedding_model_id": model_id,
        "idempotency_key": idempotency_key,
        "request_hash": fingerprint,
        "batch_id": batch_id,
        "params": params,
        "meta": dict(metadata or {}),
        "message_id": new_id(),
        "attempts": 0,
        "created_at": now,
        "updated_at": now,
    }


def existing_for_key(
    repo: TaskRepository, session: Any, key: str, fingerprint: str
) -> Task:
    """The task an earlier create with this idempotency key made, when its body was the same
    (any kind of task); 409 when it was not."""
    found = repo.get_by_key(session, key)
    assert found is not None  # the insert found the key taken
    existing, existing_hash = found
    if existing_hash != fingerprint:
        raise Conflict(
            f"idempotency_key {key!r} was used for task {existing.id} with a different request "
            "body"
        )
    return existing


def done_restart_detail(task: Task) -> str:
    """Why a done task cannot be restarted, and what to do instead."""
    if task.kind is TaskKind.reindex:
        return (
            f"task {task.id} is done: its sink serves what it wrote. A done task cannot be "
            "restarted; to write the vectors again, create a new reindex task"
        )
    batch = f" (batch_id {task.batch_id})" if task.batch_id else ""
    return (
        f"task {task.id} is done and keeps its result, model {task.result_model_id}; a done "
        f"task cannot be restarted. To tune again, create a new task on the same batch{batch}"
    )


class TaskService:
    def __init__(
        self,
        db: Database,
        plugins: PluginRegistry,
        dispatcher: Dispatcher,
        abort_grace_s: float,
        clickstream: ClickstreamService | None = None,
        throughput: ThroughputHistory | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        self.db = db
        self.clickstream = clickstream
        self.throughput = throughput
        self.cache_dir = cache_dir
        self.plugins = plugins
        self.dispatcher = dispatcher
        self.abort_grace_s = abort_grace_s
        self.tasks = TaskRepository()
        self.models = ModelRepository()
        self.marks = DispatchMarks(db)
        self.evaluation_sets = EvaluationSetService(db)
        self._known_models: dict[str, EmbeddingModel] = {}

    # -- create -------------------------------------------------------------------------------
    def create(
        self,
        *,
        embedding_model_id: str,
        idempotency_key: str | None = None,
        batch_id: str | None = None,
        params: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> tuple[Task, bool]:
        """Returns (task, created). Same key and same body → the existing task; else 409."""
        model = self._model(embedding_model_id)
        plugin = self.plugins.get_trainable(model.plugin_name)
        normalized = self._params(plugin, params)[2]
        if batch_id is not None and self.clickstream is not None:
            self.clickstream.batch(batch_id)  # unknown batch → 404 now, not a refusal later
        fingerprint = request_fingerprint(
            {
                "embedding_model_id": embedding_model_id,
                "batch_id": batch_id,
                "params": normalized,
                "metadata": metadata or {},
            }
        )
        values = new_task_row(
            TaskKind.fine_tuning, model_id=embedding_model_id, idempotency_key=idempotency_key,
            fingerprint=fingerprint, params=normalized, metadata=metadata, now=utcnow(),
            batch_id=batch_id,
        )
        with self.db.transaction() as session:
            if batch_id is not None and self.clickstream is not None:
                # held FOR SHARE until commit: retention cannot prune it under the new task
                self.clickstream.hold_batch(session, batch_id)
            created = self.tasks.create(session, values)
            if created is None:
                assert idempotency_key is not None
                return existing_for_key(self.tasks, session, idempotency_key, fingerprint), False
        self.send(created.id, values["message_id"])
        return created, True

    def send(self, task_id: str, message_id: str) -> bool:
        """Send after commit; a failure leaves the task pending and undelivered for recovery.
        A sent message is marked `dispatched_at` shortly after, in a batch (`DispatchMarks`)."""
        try:
            self.dispatcher.send(task_id, message_id)
        except Exception as exc:
            log.warning("could not send task %s (recovery will resend): %s", task_id, exc)
            return False
        self.marks.add(task_id, message_id)
        return True

    def _params(
        self, plugin: FineTuningPlugin, params: dict[str, Any] | None
    ) -> tuple[TaskPolicy, BaseModel, dict[str, Any]]:
        """The lifecycle's policy (its evaluation set resolved to an id, so a task names the set
        it was created with), the method's validated params, and the params as stored: the
        method's, normalized, plus the policy's. Each bad field is named (422)."""
        policy, method_params = split_policy(params)
        validated = plugin.validate_params(method_params)
        check_space(policy.search, plugin.params_model, method_params)  # bounds the method takes
        if policy.evaluation_set_id is not None:
            try:
                policy.evaluation_set_id = self.evaluation_sets.resolve_id(
                    policy.evaluation_set_id
                )
            except NotFound as exc:
                loc = ["body", "params", "evaluation_set_id"]
                raise InvalidParams(
                    f"params.evaluation_set_id: {exc.detail}",
                    [{"loc": loc, "msg": exc.detail, "type": "not_found"}],
                ) from None
        return policy, validated, merge_policy(policy, validated.model_dump(mode="json"))

    def _model(self, model_id: str) -> EmbeddingModel:
        """Registered models never change and are never deleted (tasks reference them), so
        one that was found once is served from memory: a create reads nothing before its
        insert."""
        model = self._known_models.get(model_id)
        if model is None:
            with self.db.read() as session:
                model = self.models.get(session, model_id)
            if model is None:
                raise NotFound(f"embedding model {model_id!r} not found")
            if len(self._known_models) >= KNOWN_MODELS_MAX:
                self._known_models.clear()
            self._known_models[model_id] = model
        return model

    # -- preflight ------------------------------------------------------------------------------
    def preflight(
        self,
        *,
        embedding_model_id: str,
        batch_id: str | None = None,
        params: dict[str, Any] | None = None,
        **_: Any,
    ) -> dict[str, Any]:
        """What `create` with this body would train on — validated the same way, stores nothing."""
        model = self._model(embedding_model_id)
        plugin = self.plugins.get_trainable(model.plugin_name)
        policy, validated, normalized = self._params(plugin, params)
        data = None
        if plugin.uses_clickstream and self.clickstream is not None:
            data = (
                self.clickstream.training_data(batch_id)
                if batch_id is not None
                else self.clickstream.open_training_data()
            )
        return {
            "embedding_model_id": model.id,
            "plugin_name": plugin.name,
            "batch_id": data.batch_id if data is not None else batch_id,
            "params": normalized,
            "evaluation": self._evaluation_basis(model.id, policy),
            **plugin.preflight(validated, data, self._estimating(model, validated)),
        }

    def _estimating(self, model: EmbeddingModel, params: Any) -> Estimating:
        """What the workers measured for a model of this size, and whether its catalogue vectors
        are cached here (a model in a remote artifact store is not fetched for an estimate)."""
        try:
            source_dir: Path | None = resolve_source(model.source)
        except ValueError:
            source_dir = None
        rates = None
        if self.throughput is not None and source_dir is not None:
            rates = self.throughput.rates_for(source_dir, params)
        return Estimating(rates=rates, source_dir=source_dir, cache_dir=self.cache_dir)

    def _evaluation_basis(self, model_id: str, policy: TaskPolicy) -> dict[str, Any]:
        """What the verdict of a task created now would be decided on."""
        with self.db.read() as session:  # fresh: a model's default set can change
            model = self.models.get(session, model_id)
        set_id = policy.evaluation_set_id or (model.evaluation_set_id if model else None)
        if set_id is None:
            return {
                "basis": "clicks",
                "evaluation_set": None,
                "note": "no judged evaluation set: the verdict comes from held-out queries' "
                "clicks, re-ranked on the lists users saw and corrected for position bias",
            }
        found = self.evaluation_sets.get(set_id)
        return {
            "basis": "judged",
            "evaluation_set": {
                "id": found.id,
                "name": found.name,
                "queries": found.queries_count,
                "from": "task" if policy.evaluation_set_id else "model default",
            },
        }

    # -- read ---------------------------------------------------------------------------------
    # Every kind of task shares these verbs; each kind's API names its kind, and a task of
    # another kind is not found there (a reindex task is not a fine-tuning task).
    def get(self, task_id: str, kind: TaskKind = TaskKind.fine_tuning) -> Task:
        with self.db.read() as session:
            task = _of_kind(self.tasks.get(session, task_id), task_id, kind)
        return task

    def page(
        self,
        *,
        offset: int,
        limit: int,
        status: TaskStatus | None = None,
        embedding_model_id: str | None = None,
        kind: TaskKind = TaskKind.fine_tuning,
    ) -> tuple[list[Task], int]:
        with self.db.read() as session:
            return self.tasks.page(
                session,
                offset=offset,
                limit=limit,
                status=status,
                embedding_model_id=embedding_model_id,
                kind=kind,
            )

    def events(self, task_id: str, kind: TaskKind = TaskKind.fine_tuning) -> list[TaskEvent]:
        with self.db.read() as session:
            _of_kind(self.tasks.get(session, task_id), task_id, kind)
            return self.tasks.events(session, task_id)

    # -- restart ------------------------------------------------------------------------------
    def restart(self, task_id: str, kind: TaskKind = TaskKind.fine_tuning) -> Task:
        """A pending, failed, refused or canceled task goes back to `pending` under a new message
        id; the old message, if it is still queued, no longer matches and is ignored by the
        worker. A processing task is left as it is. A done task is refused (409): its result
        is a registered model that points to it, and wiping the task would detach that model;
        tuning again is a new task on the same batch."""
        message_id = new_id()
        with self.db.transaction() as session:
            task = _of_kind(self.tasks.get(session, task_id, lock=True), task_id, kind)
            if task.status is TaskStatus.processing:
                return task
            if task.status is TaskStatus.done:
                raise Conflict(done_restart_detail(task))
            restarted = self.tasks.apply(
                session,
                task_id,
                Transition.restart,
                message=f"restarted from {task.status.value}",
                values={"message_id": message_id, **RUN_FIELDS_RESET},
            )
            if restarted is None:  # unreachable under the row lock; kept as a guard
                raise Conflict(f"task {task_id} changed state meanwhile; try again")
        self.send(task_id, message_id)
        return restarted

    # -- cancel -------------------------------------------------------------------------------
    def cancel(self, task_id: str, kind: TaskKind = TaskKind.fine_tuning) -> Task:
        with self.db.transaction() as session:
            task = _of_kind(self.tasks.get(session, task_id, lock=True), task_id, kind)
            if task.status is TaskStatus.canceled:
                return task
            if task.status in RUN_OUTCOMES:
                raise Conflict(
                    f"task {task_id} is already {task.status.value}; a finished task cannot "
                    "be canceled"
                )
            canceled = self.tasks.apply(
                session,
                task_id,
                Transition.cancel,
                message=f"canceled while {task.status.value}",
                values={"finished_at": utcnow(), "detail": "canceled on request"},
            )
            if canceled is None:  # unreachable under the row lock; kept as a guard
                raise Conflict(f"task {task_id} changed state meanwhile; try again")
        if canceled.message_id:
            try:
                self.dispatcher.abort(canceled.message_id, self.abort_grace_s)
            except Exception as exc:  # the run still stops: it sees `canceled` at its next check
                log.warning("abort signal for task %s failed: %s", task_id, exc)
        return canceled


def _of_kind(task: Task | None, task_id: str, kind: TaskKind) -> Task:
    if task is None or task.kind is not kind:
        raise NotFound(f"task {task_id!r} not found")
    return task
