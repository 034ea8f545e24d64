"""Aliases: point a stable name at a model iteration, read it with its history and what its
vector sink serves, roll it back, and resolve a name the way `/embed` and `download` do.

An alias may name a vector sink. Every move of such an alias — set by a user, promoted by a
task, rolled back — creates a reindex task for the model it now points at, in the transaction
that moves it (both commit or neither), and the task's message is sent after the commit. The
alias is `live` once the sink's live collection holds its model's vectors.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from embtune.domain.aliases import Alias, AliasAction, AliasChange
from embtune.domain.tasks import Task, TaskStatus
from embtune.errors import EmbtuneError, InvalidParams, NotFound
from embtune.sinks.registry import SinkRegistry
from embtune.storage.alias_serving_repo import AliasReindex, newest_reindex
from embtune.storage.aliases_repo import AliasRepository
from embtune.storage.db import Database
from embtune.storage.models_repo import ModelRepository
from embtune.storage.sink_collections_repo import SinkCollectionRepository

HISTORY_SHOWN = 20  # changes returned with an alias; enough to pick a rollback by eye
# What `new_id` makes: an alias spelled like one could never be reached, since a model id wins
# when a name is resolved.
MODEL_ID_SHAPE = re.compile(r"[0-9a-f]{32}")
SINK_LOC = ("body", "sink")
RUNNING = frozenset({TaskStatus.pending, TaskStatus.processing})


class Keep(enum.Enum):
    """`set`'s default for `sink`: leave the alias's sink as it is (None clears it)."""

    sink = "keep"


KEEP = Keep.sink


class ServingState(enum.StrEnum):
    live = "live"  # the sink's live collection holds the alias's model
    reindexing = "reindexing"  # the alias's newest reindex task is pending or running
    failed = "failed"  # it ended without making the sink serve the alias's model
    no_sink = "no_sink"  # the alias names no sink


@dataclass(frozen=True)
class Serving:
    """What the alias's sink serves, against where the alias points."""

    state: ServingState
    model_id: str | None  # the model whose vectors the sink's live collection holds
    collection: str | None
    reindex_task_id: str | None  # the newest reindex task created for the alias
    detail: str


@dataclass(frozen=True)
class AliasRead:
    alias: Alias
    history: list[AliasChange]
    serving: Serving


class AliasService:
    """Every change runs in one write transaction: the model check, the compare-and-set, the
    history row and the reindex task of the alias's sink commit together."""

    def __init__(
        self,
        db: Database,
        sinks: SinkRegistry,
        send: Callable[[str, str], bool] | None = None,
    ) -> None:
        self.db = db
        self.sinks = sinks
        # sends a created reindex task's message after commit (`TaskService.send`); without it
        # the task waits pending until recovery finds it undelivered
        self.send = send
        self.repo = AliasRepository()
        self.models = ModelRepository()
        self.collections = SinkCollectionRepository()

    def set(
        self,
        name: str,
        model_id: str,
        actor: str,
        *,
        reason: str = "",
        expected_version: int | None = None,
        sink: Mapping[str, Any] | Keep | None = KEEP,
    ) -> AliasRead:
        """Point `name` at `model_id`, and name its sink when `sink` is given (None: none).
        When the alias has a sink and moved, or its sink changed, a reindex task writes the
        model it points at into that sink."""
        if MODEL_ID_SHAPE.fullmatch(name):
            raise InvalidParams(
                f"name: {name!r} is spelled like a model id, which would always win over it",
                [{"loc": ["path", "name"], "type": "value_error",
                  "msg": "an alias name may not be 32 lowercase hex characters (a model id)"}],
            )
        stored = sink if isinstance(sink, Keep) else self._stored(sink)
        with self.db.transaction() as session:
            if self.models.get(session, model_id) is None:
                raise NotFound(f"model_id: embedding model {model_id!r} not found")
            change, moved = self.repo.move(
                session, name, model_id, action=AliasAction.set, actor=actor, reason=reason,
                expected_version=expected_version,
            )
            sink_changed = False
            if not isinstance(stored, Keep):
                before, _ = self.repo.set_sink(session, name, stored)
                sink_changed = before.sink != stored
            created = None
            if moved or sink_changed:
                created = self._reindex(
                    session, name, incremental=False, action="set", actor=actor,
                    version=change.version,
                )
            found = self._read(session, name)
        self._send(created)
        return found

    def set_sink(self, name: str, sink: Mapping[str, Any] | None, actor: str) -> AliasRead:
        """Name the sink the alias serves from (None: none), without moving it. A new sink gets
        a reindex of the model the alias points at; the same sink again changes nothing."""
        stored = self._stored(sink)
        with self.db.transaction() as session:
            before, after = self.repo.set_sink(session, name, stored)
            created = None
            if stored is not None and before.sink != stored:
                created = self._reindex(
                    session, name, incremental=False, action="sink", actor=actor,
                    version=after.version,
                )
            found = self._read(session, name)
        self._send(created)
        return found

    def rollback(
        self, name: str, actor: str, *, reason: str = "", expected_version: int | None = None
    ) -> AliasRead:
        """Undo the live change (see `AliasRepository.rollback_target`); 409 when none. An
        alias with a sink gets an incremental reindex of the model it goes back to: the sink
        most likely still holds that model's retired collection, whose unchanged vectors are
        copied instead of encoded again."""
        with self.db.transaction() as session:
            change = self.repo.rollback(
                session, name, actor=actor, reason=reason, expected_version=expected_version
            )
            created = self._reindex(
                session, name, incremental=True, action="rollback", actor=actor,
                version=change.version,
            )
            found = self._read(session, name)
        self._send(created)
        return found

    def get(self, name: str) -> AliasRead:
        with self.db.read() as session:
            return self._read(session, name)

    def page(self, *, offset: int, limit: int) -> tuple[list[tuple[Alias, Serving]], int]:
        with self.db.read() as session:
            page, total = self.repo.page(session, offset=offset, limit=limit)
            return [(alias, self._serving(session, alias)) for alias in page], total

    def history(self, name: str, limit: int = HISTORY_SHOWN) -> list[AliasChange]:
        """The newest `limit` changes, newest first."""
        with self.db.read() as session:
            if self.repo.get(session, name) is None:
                raise NotFound(f"alias {name!r} not found")
            return self.repo.history(session, name, limit)

    def resolve(self, model_id_or_alias: str) -> str:
        """The id of the model meant: a model with this id, else the model the alias of this
        name points at now. Model ids win, so an alias can never hide a model."""
        with self.db.read() as session:
            if self.models.get(session, model_id_or_alias) is not None:
                return model_id_or_alias
            alias = self.repo.get(session, model_id_or_alias)
        if alias is None:
            raise NotFound(f"no embedding model or alias named {model_id_or_alias!r}")
        return alias.model_id

    def _read(self, session: Session, name: str) -> AliasRead:
        alias = self.repo.get(session, name)
        if alias is None:
            raise NotFound(f"alias {name!r} not found")
        return AliasRead(
            alias,
            self.repo.history(session, name, HISTORY_SHOWN, up_to=alias.version),
            self._serving(session, alias),
        )

    # -- the alias's sink ---------------------------------------------------------------------
    def _stored(self, sink: Mapping[str, Any] | None) -> dict[str, Any] | None:
        """The sink config as the alias stores it (validated: a 422 naming `body.sink.<field>`;
        secrets never stored)."""
        if sink is None:
            return None
        from embtune.services.reindex import stored_sink  # imports this module

        return stored_sink(self.sinks.validate(sink, loc=SINK_LOC))

    def _reindex(
        self,
        session: Session,
        name: str,
        *,
        incremental: bool,
        action: str,
        actor: str,
        version: int,
    ) -> Task | None:
        """A reindex task of the alias's model into its sink, in this transaction; None when
        the alias names no sink."""
        alias = self.repo.get(session, name)  # after the change: its model and sink now
        if alias is None or alias.sink is None:
            return None
        from embtune.services.reindex import insert_reindex_task  # imports this module

        created, _ = insert_reindex_task(
            session, model_id=alias.model_id, sink=alias.sink, incremental=incremental,
            alias=name,
            metadata={"alias_action": action, "alias_version": version, "actor": actor},
        )
        return created

    def _send(self, created: Task | None) -> None:
        if created is not None and created.message_id is not None and self.send is not None:
            self.send(created.id, created.message_id)

    def _serving(self, session: Session, alias: Alias) -> Serving:
        newest = newest_reindex(session, alias.name)
        task_id = newest.task_id if newest is not None else None
        if alias.sink is None:
            return Serving(ServingState.no_sink, None, None, task_id,
                           "the alias names no sink: set one to serve it from a vector store")
        try:
            sink = self.sinks.open(alias.sink)
        except EmbtuneError as exc:  # a stored config no installed sink accepts any more
            return Serving(ServingState.failed, None, None, task_id,
                           f"the alias's sink config cannot be used: {exc.detail}")
        try:
            key = sink.key
        finally:
            sink.close()
        live = self.collections.live(session, key)
        model_id = live.model_id if live is not None else None
        collection = live.collection if live is not None else None
        state, detail = serving_state(alias, model_id, newest)
        return Serving(state, model_id, collection, task_id, detail)


def serving_state(
    alias: Alias, live_model_id: str | None, newest: AliasReindex | None
) -> tuple[ServingState, str]:
    """The state of an alias with a sink, and why, in words for its reader.

    The sink serving the alias's model is `live` whatever else runs: a rollback to a model
    still live in the sink, or a reindex of new items, serves the alias meanwhile."""
    serves = (f"the sink serves model {live_model_id}" if live_model_id
              else "the sink serves nothing yet")
    if live_model_id == alias.model_id:
        if newest is not None and newest.status in RUNNING:
            return ServingState.live, (
                f"the sink serves the alias's model; reindex task {newest.task_id} "
                f"({newest.status.value}) will replace its collection"
            )
        return ServingState.live, "the sink serves the alias's model"
    if newest is None:
        return ServingState.failed, (
            f"{serves}, not the alias's model {alias.model_id}, and no reindex task serves "
            "the alias: create one for it"
        )
    if newest.status in RUNNING:
        return ServingState.reindexing, (
            f"reindex task {newest.task_id} ({newest.status.value}) writes model "
            f"{newest.model_id} into the sink; meanwhile {serves}"
        )
    if newest.status is TaskStatus.done:
        return ServingState.failed, (
            f"{serves}, not the alias's model {alias.model_id}: a later reindex of the sink "
            f"replaced what reindex task {newest.task_id} wrote; reindex the alias again"
        )
    return ServingState.failed, (
        f"reindex task {newest.task_id} {newest.status.value}: "
        f"{newest.detail or 'no detail'}; {serves}"
    )
