"""Clickstream use cases: ingest sessions and events, release batches, and the read-only
training view a worker gets of one batch (the catalogue it reads is `services.catalogue`'s).

Every write owns one transaction, so a rejected request stores nothing. Size bounds come from
settings (they can be raised per deployment), hence are checked here rather than in the API
schemas; each violation names its field the way request validation does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session as DbSession

from embtune.clickstream.sessions import SearchSession
from embtune.config import Settings
from embtune.domain.clickstream import Batch, BatchStatus, SessionRecord
from embtune.domain.tasks import TaskEventKind, TaskStatus
from embtune.errors import Conflict, NotFound, TaskRefused, TaskStopped
from embtune.services.clickstream_checks import (
    event_key,
    repeated_event_errors,
    session_errors,
    session_fingerprint,
    stored_results,
)
from embtune.services.field_errors import field_error, raise_invalid, too_many
from embtune.storage.clickstream_repo import CLICK, ClickstreamRepository
from embtune.storage.db import Database, utcnow
from embtune.storage.items_repo import ItemRepository
from embtune.storage.tasks_repo import TaskRepository


@dataclass(frozen=True)
class BatchTrainingData:
    """`TrainingData` for one batch, read lazily: a plugin that needs only the sessions never
    pays for the catalogue."""

    batch_id: str
    db: Database
    clickstream: ClickstreamRepository
    items: ItemRepository

    def sessions(self) -> list[SearchSession]:
        with self.db.read() as session:
            return self.clickstream.training_sessions(session, self.batch_id)

    def item_texts(self, object_ids: Iterable[str] | None = None) -> dict[str, str]:
        with self.db.read() as session:
            if object_ids is not None:
                return self.items.texts(session, object_ids)
            texts: dict[str, str] = {}
            for chunk in self.items.all_texts(session):
                texts.update(chunk)
            return texts

    def deleted_shown_results(self) -> int:
        """Shown results of the batch that name an item deleted from the catalogue since
        (a tombstone): training skips them, having no text for them, and the task says so."""
        with self.db.read() as session:
            return self.items.deleted_shown_results(session, self.batch_id)


class ClickstreamService:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.items = ItemRepository()
        self.clickstream = ClickstreamRepository()
        self.tasks = TaskRepository()

    # -- sessions -------------------------------------------------------------------------------
    def ingest_session(
        self,
        *,
        session_id: str,
        search_query: str,
        search_results: Sequence[Mapping[str, Any]],
        user_id: str | None = None,
        created_at: datetime | None = None,
        search_meta: dict[str, Any] | None = None,
    ) -> tuple[SessionRecord, bool]:
        """Returns (session, created). The same id with the same body → the stored session;
        with another body → 409, since silently keeping either version would lose data."""
        raise_invalid(session_errors(self.settings, search_query, search_results))
        results = stored_results(search_results)
        fingerprint = session_fingerprint(
            search_query, results, user_id, created_at, search_meta
        )
        now = utcnow()
        with self.db.transaction() as session:
            inserted = False
            if self.clickstream.session_row(session, session_id) is None:
                batch_id = self.clickstream.join_open_batch(session, now)
                inserted = self.clickstream.insert_session(
                    session,
                    {
                        "session_id": session_id,
                        "batch_id": batch_id,
                        "query": search_query,
                        "user_id": user_id,
                        "search_meta": search_meta,
                        "irrelevant": False,
                        "request_hash": fingerprint,
                        "created_at": created_at or now,
                        "received_at": now,
                    },
                    results,
                )
            if not inserted:
                existing = self.clickstream.session_row(session, session_id)
                assert existing is not None
                if existing.request_hash != fingerprint:
                    raise Conflict(
                        f"session {session_id!r} was already posted with a different body"
                    )
            record = self.clickstream.get_session(session, session_id)
        assert record is not None
        return record, inserted

    def push_events(
        self, session_id: str, events: Sequence[Mapping[str, Any]]
    ) -> tuple[int, int]:
        """Record events; returns (received, new). An event id seen before is skipped, so a
        client may repeat a push after a timeout; an id reused for another event is a 409.

        Late events — the session's batch was released before they arrived — are normal in a
        clickstream and are kept "with the session": stored like any other, flagged `late` (the
        batch counts them), and trained on by any run that reads the batch afterwards. A new
        click on a session marked irrelevant is a 409: the two contradict each other."""
        if len(events) > self.settings.max_events_per_push:
            raise_invalid(
                [too_many(["events"], self.settings.max_events_per_push, len(events))]
            )
        unique, errors = repeated_event_errors(events)
        raise_invalid(errors)

        now = utcnow()
        with self.db.transaction() as session:
            row = self.clickstream.lock_session(session, session_id)
            if row is None:
                raise NotFound(f"session {session_id!r} not found")
            status = self.clickstream.lock_batch(session, row.batch_id)
            if status is BatchStatus.pruned:  # its deletion is under way (services.retention)
                raise NotFound(f"session {session_id!r} not found: its batch was pruned")
            shown = self.clickstream.shown_objects(
                session, session_id, (e["object_id"] for e in events)
            )
            raise_invalid(
                [
                    field_error(
                        ["events", index, "object_id"],
                        f"object {event['object_id']!r} is not among the results of session "
                        f"{session_id!r}",
                        "value_error",
                    )
                    for index, event in enumerate(events)
                    if event["object_id"] not in shown
                ]
            )
            known = self.clickstream.known_events(session, unique)
            for event_id, stored in known.items():
                if stored != (session_id, *event_key(unique[event_id])):
                    raise Conflict(
                        f"event_id {event_id!r} was already recorded for session {stored[0]!r}, "
                        f"object {stored[1]!r}, type {stored[2]!r}"
                    )
            fresh = [
                {
                    "event_id": event_id,
                    "session_id": session_id,
                    "object_id": event["object_id"],
                    "event_type": event.get("event_type") or "click",
                    "created_at": event.get("created_at") or now,
                    "received_at": now,
                    "late": status is BatchStatus.released,
                }
                for event_id, event in unique.items()
                if event_id not in known
            ]
            if row.irrelevant and any(e["event_type"] == CLICK for e in fresh):
                raise Conflict(
                    f"session {session_id!r} is marked irrelevant (nothing among its results "
                    "was relevant), so it cannot take a click"
                )
            added = self.clickstream.insert_events(session, fresh)
        return len(events), added

    def mark_irrelevant(self, session_id: str) -> SessionRecord:
        """Flag a session whose results held nothing relevant; repeating it changes nothing.

        A session with a click is a 409: a click says one of its results was relevant. A
        released batch's session may still be marked, like a late event ("with the session"):
        runs that read the batch afterwards see the mark."""
        with self.db.transaction() as session:
            row = self.clickstream.lock_session(session, session_id)
            if row is None:
                raise NotFound(f"session {session_id!r} not found")
            if not row.irrelevant:
                if self.clickstream.has_clicks(session, session_id):
                    raise Conflict(
                        f"session {session_id!r} has click events, so it cannot be marked "
                        "irrelevant (a click says one of its results was relevant)"
                    )
                self.clickstream.lock_batch(session, row.batch_id)
                self.clickstream.set_irrelevant(session, session_id)
            record = self.clickstream.get_session(session, session_id)
        assert record is not None
        return record

    def session(self, session_id: str) -> SessionRecord:
        with self.db.read() as session:
            record = self.clickstream.get_session(session, session_id)
        if record is None:
            raise NotFound(f"session {session_id!r} not found")
        return record

    # -- batches --------------------------------------------------------------------------------
    def release_open_batch(self) -> str | None:
        """Freeze the open batch and open a new one; None (nothing changed) when it is empty."""
        released = self._release()
        return released.id if released else None

    def release(self) -> Batch:
        """`release_open_batch` for the API: an empty batch is a 409, not a silent no-op."""
        released = self._release()
        if released is None:
            raise Conflict("batch is empty: no sessions arrived since the last release")
        return released

    def _release(self) -> Batch | None:
        with self.db.transaction() as session:
            return self._release_in(session, utcnow())

    def _release_in(self, session: DbSession, now: datetime) -> Batch | None:
        """Holds the open batch `FOR UPDATE`, so it waits for ingests writing into it and makes
        later ingests wait, then join the new batch (see `embtune.storage.clickstream_repo`).
        The batch is read back under that lock: the counts returned are the frozen ones."""
        batch_id = self.clickstream.open_batch_id(session, exclusive=True)
        if batch_id is None:
            # A concurrent release may have frozen the row we waited for; this second read
            # is a new statement and sees the batch it opened.
            batch_id = self.clickstream.open_batch_id(session, exclusive=True)
        if batch_id is None or self.clickstream.count_sessions(session, batch_id) == 0:
            return None
        self.clickstream.mark_released(session, batch_id, now)
        self.clickstream.create_open_batch(session, now)
        return self.clickstream.get_batch(session, batch_id)

    def release_for_task(self, task_id: str, message_id: str) -> str:
        """Release the open batch for a run and record it on the run's task, atomically.

        One transaction, guarded by the run still owning the task (processing under its
        message id, the row locked first): a cancel either comes before it — nothing is
        released, the sessions stay in the open batch for the next run — or after it, and
        the task names its batch, so a restart retrains on the same sessions. A released
        batch that no task names cannot come out of a run. Raises TaskStopped (the run no
        longer owns the task) or TaskRefused (the open batch is empty)."""
        with self.db.transaction() as session:
            task = self.tasks.get(session, task_id, lock=True)
            if (
                task is None
                or task.status is not TaskStatus.processing
                or task.message_id != message_id
            ):
                raise TaskStopped("task left processing before its batch was released")
            if task.batch_id is not None:  # recorded by an earlier call of this run
                return task.batch_id
            released = self._release_in(session, utcnow())
            if released is None:
                raise TaskRefused(
                    "no clickstream to train on: the open batch has no sessions "
                    "(POST /api/v1/clickstream/session first)"
                )
            self.tasks.update_live(session, task_id, message_id, {"batch_id": released.id})
            self.tasks.add_event(
                session, task_id, TaskEventKind.run, None, None, f"released batch {released.id}"
            )
            return released.id

    def batch(self, batch_id: str) -> Batch:
        with self.db.read() as session:
            batch = self.clickstream.get_batch(session, batch_id)
        if batch is None:
            raise NotFound(f"batch {batch_id!r} not found")
        return batch

    def hold_batch(self, session: DbSession, batch_id: str) -> None:
        """Lock a batch a new task names `FOR SHARE` in the task's transaction: retention's
        decision takes it `FOR UPDATE`, so it either pruned the batch before (409 here) or
        sees the task after. Unknown → 404."""
        status = self.clickstream.lock_batch(session, batch_id)
        if status is None:
            raise NotFound(f"batch {batch_id!r} not found")
        if status is BatchStatus.pruned:
            raise Conflict(f"batch {batch_id!r} was pruned by retention: its sessions are gone")

    def batches_page(self, *, offset: int, limit: int) -> tuple[list[Batch], int]:
        with self.db.read() as session:
            return self.clickstream.page_batches(session, offset=offset, limit=limit)

    def training_data(self, batch_id: str) -> BatchTrainingData:
        """The worker's view of a batch. An open batch is allowed (its data may still grow);
        the worker normally trains on one it released itself. A pruned batch is a 409: its
        sessions were deleted by retention, so there is nothing left to train on."""
        batch = self.batch(batch_id)  # NotFound early, before a run starts
        if batch.status is BatchStatus.pruned:
            raise Conflict(
                f"batch {batch_id} was pruned by retention (released batches older than "
                "EMBTUNE_CLICKSTREAM_RETENTION_DAYS lose their sessions): there is nothing left "
                "to train on; create a new task on newer sessions"
            )
        return BatchTrainingData(batch_id, self.db, self.clickstream, self.items)


    def open_training_data(self) -> BatchTrainingData | None:
        """What a task created now without `batch_id` would train on (for preflight)."""
        with self.db.read() as session:
            batch_id = self.clickstream.open_batch_id(session, exclusive=False)
        if batch_id is None:
            return None
        return BatchTrainingData(batch_id, self.db, self.clickstream, self.items)

    def data_for_run(
        self, task_id: str, message_id: str, batch_id: str | None
    ) -> BatchTrainingData:
        """The data a run trains on: its task's recorded batch, or the open batch released
        now and recorded on the task in the same transaction (`release_for_task`).

        Raises TaskRefused when there is nothing to train on — a deterministic outcome that
        must not be retried — and TaskStopped when the run no longer owns its task."""
        if batch_id is None:
            batch_id = self.release_for_task(task_id, message_id)
        try:
            return self.training_data(batch_id)
        except (NotFound, Conflict) as exc:
            raise TaskRefused(exc.detail) from None
