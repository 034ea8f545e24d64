"""Bulk clickstream ingestion: many sessions with their events and irrelevant marks in one
transaction, one outcome per row (`POST /clickstream/sessions:bulk` and import tasks).

Each row goes through the single-session checks (`services.clickstream_checks`) and the same
idempotency: a stored session id with the same body is a `duplicate` — a no-op, except that
events not seen before are still recorded, as a repeated push would — and with another body a
`conflict`. A bad row is `rejected` on its own: the good rows of the same request are stored.

The work is set-based: the rows are planned in memory against one read of what is stored
(sessions, their batches, clicks, event ids), then written with a statement per table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session as DbSession

from embtune.config import Settings
from embtune.domain.clickstream import BatchStatus
from embtune.schemas.clickstream_bulk import SESSION_ROW, default_event_id
from embtune.services.clickstream_checks import (
    CLICK,
    event_key,
    repeated_event_errors,
    session_errors,
    session_fingerprint,
    stored_results,
)
from embtune.services.field_errors import field_error, raise_invalid, too_many
from embtune.storage.clickstream_bulk_repo import ClickstreamBulkRepository, StoredSession
from embtune.storage.clickstream_repo import ClickstreamRepository
from embtune.storage.db import Database, utcnow

ACCEPTED, DUPLICATE, CONFLICT, REJECTED = "accepted", "duplicate", "conflict", "rejected"


@dataclass(frozen=True)
class RowOutcome:
    index: int  # position of the row in the request / chunk (0-based)
    key: str | None  # session_id (or object_id for items) when readable
    status: str  # "accepted" | "duplicate" | "conflict" | "rejected"
    new_events: int = 0  # events this row added (a duplicate session may add new ones)
    reason: str | None = None  # for conflict / rejected: one line naming the field
    errors: tuple[dict[str, Any], ...] = ()  # 422-style, loc = the field path in the row


def row_key(row: Any, name: str) -> str | None:
    value = row.get(name) if isinstance(row, Mapping) else None
    return value if isinstance(value, str) else None


def refused(index: int, key: str | None, status: str, errors: list[dict[str, Any]]) -> RowOutcome:
    """A rejected or conflicting row; `reason` names the first field, the errors name all."""
    first = errors[0]
    where = ".".join(map(str, first["loc"])) or "row"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return RowOutcome(index, key, status, reason=f"{where}: {first['msg']}{more}",
                      errors=tuple(errors))


def validation_errors(exc: ValidationError) -> list[dict[str, Any]]:
    return [
        {"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]}
        for e in exc.errors(include_url=False, include_context=False, include_input=False)
    ]


def in_row(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Service field errors (located in a request `body`) located in a row instead."""
    return [{**e, "loc": list(e["loc"][1:])} for e in errors]


@dataclass
class _Row:
    """A valid row, ready to plan: the session as stored and its events, one per id."""

    index: int
    session_id: str
    fingerprint: str
    session: dict[str, Any]
    results: list[dict[str, Any]]
    events: list[dict[str, Any]]
    locs: list[tuple[str, int]]  # where each of `events` was given in the row
    irrelevant: bool


@dataclass
class _Known:
    """A session as this request sees it: stored, or inserted by an earlier row."""

    fingerprint: str
    irrelevant: bool
    clicked: bool
    late: bool  # its batch is released: new events are flagged late
    pruned: bool  # its batch was pruned by retention: the session is being deleted
    pending: dict[str, Any] | None = None  # the insert of a session new in this request


@dataclass(frozen=True)
class Prepared:
    """Rows checked one by one, with no database: the refused rows' outcomes and the valid
    rows (`_Row` here, item dicts in `ItemsBulk`). An import prepares the next chunk while the
    database stores this one."""

    size: int
    refused: dict[int, RowOutcome]
    valid: Any


@dataclass
class _Plan:
    outcomes: dict[int, RowOutcome] = field(default_factory=dict)
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    results: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    irrelevant: set[str] = field(default_factory=set)
    events: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # (row, event)


class ClickstreamBulk:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.clickstream = ClickstreamRepository()
        self.bulk = ClickstreamBulkRepository()

    def ingest(self, rows: Sequence[Mapping[str, Any]]) -> list[RowOutcome]:
        """One request's rows in one transaction; more than `bulk_max_rows` is a 422."""
        if len(rows) > self.settings.bulk_max_rows:
            raise_invalid([too_many(["sessions"], self.settings.bulk_max_rows, len(rows))])
        with self.db.transaction() as session:
            return self.ingest_in(session, rows, utcnow())

    def ingest_in(
        self, session: DbSession, rows: Sequence[Mapping[str, Any]], now: datetime
    ) -> list[RowOutcome]:
        """Store the valid rows inside the caller's transaction; an outcome per row, in order."""
        return self.store_in(session, self.prepare(rows, now), now)

    def prepare(self, rows: Sequence[Mapping[str, Any]], now: datetime) -> Prepared:
        """Every row checked on its own (no database; safe on another thread)."""
        outcomes: dict[int, RowOutcome] = {}
        valid: list[_Row] = []
        for index, raw in enumerate(rows):
            parsed = self._parse(index, raw, now)
            if isinstance(parsed, RowOutcome):
                outcomes[index] = parsed
            else:
                valid.append(parsed)
        return Prepared(len(rows), outcomes, valid)

    def store_in(self, session: DbSession, prepared: Prepared, now: datetime) -> list[RowOutcome]:
        """The prepared rows' valid ones stored in the caller's transaction; every outcome."""
        outcomes = dict(prepared.refused)
        if prepared.valid:
            outcomes.update(self._store(session, prepared.valid, now))
        return [outcomes[index] for index in range(prepared.size)]

    # -- one row --------------------------------------------------------------------------------
    def _parse(self, index: int, raw: Any, now: datetime) -> _Row | RowOutcome:
        key = row_key(raw, "session_id")
        try:
            row = SESSION_ROW.validate_python(raw)
        except ValidationError as exc:
            return refused(index, key, REJECTED, validation_errors(exc))
        session_id = row.session_id
        body = row.model_dump()
        results = stored_results(body["search_results"])
        errors = session_errors(self.settings, row.search_query, body["search_results"])
        given = [("events", i) for i in range(len(body["events"]))]
        given += [("clicks", i) for i in range(len(body["clicks"]))]
        events = [*body["events"], *body["clicks"]]
        for (name, position), event in zip(given, events, strict=True):
            if event["event_id"] is None:
                event["event_id"] = default_event_id(session_id, position, name[0])
        limit = self.settings.max_events_per_push
        if len(events) > limit:
            where = "events" if len(body["events"]) > limit else "clicks"
            errors.append(too_many([where], limit, len(events)))
        unique, repeated = repeated_event_errors(events, given)
        errors += repeated
        shown = {result["object_id"] for result in results}
        errors += [
            field_error(
                [*given[position], "object_id"],
                f"object {event['object_id']!r} is not among the results of session "
                f"{session_id!r}",
                "value_error",
            )
            for position, event in enumerate(events)
            if event["object_id"] not in shown
        ]
        if row.irrelevant and any(event_key(e)[1] == CLICK for e in events):
            errors.append(
                field_error(
                    ["irrelevant"],
                    "a session with clicks cannot be irrelevant (a click says one of its "
                    "results was relevant)",
                    "value_error",
                )
            )
        if errors:
            return refused(index, session_id, REJECTED, in_row(errors))
        first = {id(event): position for position, event in enumerate(events)}
        kept = list(unique.values())
        fingerprint = session_fingerprint(
            row.search_query, results, row.user_id, row.created_at, body["search_meta"]
        )
        return _Row(
            index=index,
            session_id=session_id,
            fingerprint=fingerprint,
            session={
                "session_id": session_id,
                "request_hash": fingerprint,
                "query": row.search_query,
                "user_id": row.user_id,
                "search_meta": body["search_meta"],
                "irrelevant": row.irrelevant,
                "created_at": row.created_at or now,
                "received_at": now,
            },
            results=results,
            events=kept,
            locs=[given[first[id(event)]] for event in kept],
            irrelevant=row.irrelevant,
        )

    # -- the rows together ----------------------------------------------------------------------
    def _store(self, session: DbSession, rows: list[_Row], now: datetime) -> dict[int, RowOutcome]:
        plan = self._plan(session, rows)
        if plan.sessions:
            batch_id = self.clickstream.join_open_batch(session, now)
            for values in plan.sessions.values():
                values["batch_id"] = batch_id
            inserted = self.bulk.insert_sessions(session, list(plan.sessions.values()))
            lost = plan.sessions.keys() - inserted
            if lost:  # stored by a concurrent request since we looked: plan those rows again
                again = [row for row in rows if row.session_id in lost]
                redo = {row.index for row in again}
                plan.events = [(i, e) for i, e in plan.events if i not in redo]
                replan = self._plan(session, again)
                plan.outcomes.update(replan.outcomes)
                plan.irrelevant |= replan.irrelevant
                plan.events += replan.events
            self.bulk.insert_results(
                session,
                [
                    {"session_id": session_id, **result}
                    for session_id in sorted(inserted)
                    for result in plan.results[session_id]
                ],
            )
        self.bulk.set_irrelevant(session, plan.irrelevant)
        added = self.bulk.insert_events(session, [event for _, event in plan.events])
        counts: dict[int, int] = {}
        for index, event in plan.events:
            if event["event_id"] in added:
                counts[index] = counts.get(index, 0) + 1
        return {
            index: outcome if index not in counts else RowOutcome(
                outcome.index, outcome.key, outcome.status, new_events=counts[index]
            )
            for index, outcome in plan.outcomes.items()
        }

    def _plan(self, session: DbSession, rows: list[_Row]) -> _Plan:
        """Decide every row against what is stored (read once, set-wise) and what the earlier
        rows of this request do; nothing is written yet."""
        ids = {row.session_id for row in rows}
        stored = self.bulk.lock_sessions(session, ids)
        statuses = self.bulk.lock_batches(session, {s.batch_id for s in stored.values()})
        marking = {row.session_id for row in rows if row.irrelevant} & stored.keys()
        clicked = self.bulk.clicked_sessions(session, marking) if marking else set()
        recorded = self.clickstream.known_events(
            session, (e["event_id"] for row in rows for e in row.events)
        )
        known: dict[str, _Known] = {
            session_id: _known(s, session_id in clicked, statuses.get(s.batch_id))
            for session_id, s in stored.items()
        }
        plan = _Plan()
        for row in rows:
            outcome = self._decide(row, known, recorded, plan)
            plan.outcomes[row.index] = outcome
        return plan

    def _decide(
        self,
        row: _Row,
        known: dict[str, _Known],
        recorded: dict[str, tuple[str, str, str]],
        plan: _Plan,
    ) -> RowOutcome:
        """One row's outcome; an accepted or duplicate row adds its writes to `plan`, and
        `known` and `recorded` take them in, so later rows see them."""
        session_id = row.session_id
        state = known.get(session_id)

        def conflict(loc: list[str | int], msg: str) -> RowOutcome:
            return refused(row.index, session_id, CONFLICT, [
                {"loc": loc, "msg": msg, "type": "conflict"}
            ])

        if state is not None and state.pruned:  # as `push_events`' 404: it is being deleted
            return refused(row.index, session_id, REJECTED, [{
                "loc": ["session_id"], "type": "value_error",
                "msg": f"session {session_id!r} is gone: its batch was pruned by retention",
            }])
        if state is not None and state.fingerprint != row.fingerprint:
            when = "earlier in this request" if state.pending is not None else "before"
            return conflict(
                ["session_id"], f"session {session_id!r} was posted {when} with a different body"
            )
        fresh: list[dict[str, Any]] = []
        click_at: tuple[str, int] | None = None  # where the first new click was given
        for event, loc in zip(row.events, row.locs, strict=True):
            stored = recorded.get(event["event_id"])
            if stored is None:
                fresh.append(event)
                if click_at is None and event_key(event)[1] == CLICK:
                    click_at = loc
            elif stored != (session_id, *event_key(event)):
                return conflict(
                    [*loc, "event_id"],
                    f"event_id {event['event_id']!r} was already recorded for session "
                    f"{stored[0]!r}, object {stored[1]!r}, type {stored[2]!r}",
                )
        if state is not None and state.irrelevant and click_at is not None:
            return conflict(
                list(click_at),
                f"session {session_id!r} is marked irrelevant (nothing among its results was "
                "relevant), so it cannot take a click",
            )
        if state is not None and row.irrelevant and not state.irrelevant and state.clicked:
            return conflict(
                ["irrelevant"],
                f"session {session_id!r} has click events, so it cannot be marked irrelevant "
                "(a click says one of its results was relevant)",
            )
        status = DUPLICATE
        if state is None:
            status = ACCEPTED
            state = known[session_id] = _Known(
                row.fingerprint, row.irrelevant, False, False, False, pending=row.session
            )
            plan.sessions[session_id] = row.session
            plan.results[session_id] = row.results
        elif row.irrelevant and not state.irrelevant:
            state.irrelevant = True
            if state.pending is not None:
                state.pending["irrelevant"] = True
            else:
                plan.irrelevant.add(session_id)
        state.clicked = state.clicked or click_at is not None
        for event in fresh:
            recorded[event["event_id"]] = (session_id, *event_key(event))
            plan.events.append((row.index, {
                "event_id": event["event_id"],
                "session_id": session_id,
                "object_id": event["object_id"],
                "event_type": event["event_type"],
                "created_at": event["created_at"] or row.session["received_at"],
                "received_at": row.session["received_at"],
                "late": state.late,
            }))
        return RowOutcome(row.index, session_id, status)


def _known(stored: StoredSession, clicked: bool, status: BatchStatus | None) -> _Known:
    return _Known(stored.request_hash, stored.irrelevant, clicked,
                  status is BatchStatus.released, status is BatchStatus.pruned)
